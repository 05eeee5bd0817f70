"""A rerun computes nothing: every shipped protocol's demo, run a second time with its checkpoints and
records present, loads no data, trains, extracts and evaluates nothing; it reads the records only.

The first run goes through the whole runner (plans, keys, locks, records, ensembles) with the arithmetic
replaced: pretraining saves the initial encoder and every evaluation returns a fixed metric (the linear
one also writes the test scores the ensembles read), so the test takes seconds. What it checks is what a
run does when its work is already done: the keys it computes are the keys the first run wrote under, and
nothing is recomputed, for every protocol the package ships.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from usdrl_bench.components import load_builtins
from usdrl_bench import registry
from usdrl_bench.api import list_protocols, run_protocols
from usdrl_bench.encoders.checkpoint import save_encoder
from usdrl_bench.evaluate import features as features_module
from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.linear import BEST_PROBS_FILE, PROBS_FILE
from usdrl_bench.io import save_npy_atomic
from usdrl_bench.protocols import plan as plan_module
from usdrl_bench.protocols import training as training_module
from usdrl_bench.train.pretrain import ENCODER_FILE, PretrainResult


@pytest.fixture
def counted(monkeypatch) -> Counter:
    """Pretraining, feature extraction, data loading and every evaluation, counted and made instant."""
    calls: Counter = Counter()

    def pretrain(encoder, objective, train, spec, target, options=None, **_):
        calls["pretrain"] += 1
        workdir, provenance = Path(target.workdir), target.provenance
        workdir.mkdir(parents=True, exist_ok=True)
        path = save_encoder(workdir / ENCODER_FILE, encoder.eval(), epochs=spec.epochs, history=[],
                            **(dataclasses.asdict(provenance) if provenance else {}))
        return PretrainResult(checkpoint=Path(path), history=[], wall_time_s=0.0, resumed_from_epoch=0)

    def extract(*args, **kwargs):
        calls["extract"] += 1
        raise AssertionError("features extracted: every evaluation here is replaced")

    real_load = plan_module.read_dataset

    def read_dataset(*args, **kwargs):
        calls["load data"] += 1
        return real_load(*args, **kwargs)

    monkeypatch.setattr(training_module, "pretrain", pretrain)
    monkeypatch.setattr(plan_module, "read_dataset", read_dataset)
    monkeypatch.setattr(features_module, "extract", extract)
    load_builtins()
    for name, entry in list(registry.EVALUATIONS._entries.items()):
        def evaluation(ctx, *, _name=name, **options):
            calls[_name] += 1
            if _name == "linear" and ctx.artifact_dir is not None:  # the scores the ensembles fuse
                scores = np.full((len(ctx.test), ctx.num_classes), 1.0 / ctx.num_classes, dtype=np.float32)
                save_npy_atomic(Path(ctx.artifact_dir) / BEST_PROBS_FILE, scores)
                ctx.artifacts["linear"] = save_npy_atomic(Path(ctx.artifact_dir) / PROBS_FILE, scores)
            return [Metric(f"{_name}_top1", 50.0)]

        evaluation.__module__ = entry.obj.__module__  # the records keep the real evaluation's code identity
        monkeypatch.setitem(registry.EVALUATIONS._entries, name, dataclasses.replace(entry, obj=evaluation))
    return calls


def _small_nwucla(root: Path) -> None:
    """A few NW-UCLA-format files (every class, two subjects, the three views) under ``root/nwucla/all_sqe``:
    the nwucla protocol's demo runs on them without the real release."""
    import json

    from usdrl_bench.data.readers.nwucla import ACTIONS

    folder = root / "nwucla" / "all_sqe"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for label, action in enumerate(ACTIONS, start=1):
        for subject in (1, 2):
            for view in (1, 2, 3):
                name = f"a{action:02d}_s{subject:02d}_e00_v{view:02d}"
                x = rng.normal(0, 0.3, (int(rng.integers(1, 30)), 20, 3)).tolist()
                (folder / f"{name}.json").write_text(json.dumps({"file_name": name, "label": label, "skeletons": x}))


@pytest.mark.slow
def test_a_second_run_of_every_shipped_demo_computes_nothing(tmp_path, counted):
    protocols = list_protocols()
    assert len(protocols) >= 11 and "nwucla" in protocols
    _small_nwucla(tmp_path / "data")
    first = run_protocols(protocols, preset="demo", results=tmp_path / "results", jobs=1, tensorboard=False,
                          data_root=tmp_path / "data")
    assert counted["pretrain"] > 20 and counted["linear"] > 20 and counted["load data"] > 5
    evaluations = {name for name in counted if name not in ("pretrain", "load data", "extract")}
    assert {"linear", "knn", "semi", "finetune", "early", "embedding", "detection", "segmentation"} <= evaluations
    counted.clear()
    second = run_protocols(protocols, preset="demo", results=tmp_path / "results", jobs=1, tensorboard=False,
                           data_root=tmp_path / "data")
    assert dict(counted) == {}  # no data loaded, nothing trained, extracted or evaluated
    for (protocol, a), (_, b) in zip(first, second):
        columns = ["row_id", "column", "seed", "evaluation", "metric", "value", "checkpoint_hash"]
        assert a[columns].sort_values(columns[:5]).values.tolist() == b[columns].sort_values(columns[:5]).values.tolist(), protocol.name
