"""Cache keys from the code that computes them: an edit retrains or re-evaluates exactly what it affects."""

from __future__ import annotations

import sys

import pytest
import torch

from usdrl_bench.components import load_builtins
from usdrl_bench import code_identity, registry
from usdrl_bench.code_identity import module_closure, module_code

PROTOCOL = """\
name: code_identity
version: 1
paper_table: table5_ablation
rows:
  - {id: dste-mgfd, label: "DSTE MG-FD", encoder: dste, objective: mgfd}
  - {id: sttr-mgfd, label: "STTR MG-FD", encoder: sttr, objective: mgfd}
  - {id: dste-nce, label: "DSTE InfoNCE", encoder: dste, objective: negative_contrastive}
  - {id: dste-random, label: "DSTE random", encoder: dste, objective: null}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {num_classes: 4, samples_per_class_subject_camera: 1, min_frames: 16, max_frames: 20}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 8}
    evaluations: {knn: {k: 1}, linear: {epochs: 1}}
"""


@pytest.fixture
def keys(tmp_path, monkeypatch):
    """``keys(edits)``: {row id: checkpoint hash}, {(row id, evaluation): record path} with the source of
    the modules in ``edits`` (name -> text appended) changed as if edited on disk."""
    from usdrl_bench.protocols.runner import ProtocolRunner
    from usdrl_bench.protocols.spec import expand_cells, load_protocol

    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL)
    real_source = code_identity._source

    def compute(edits: dict[str, str] | None = None):
        edits = edits or {}
        monkeypatch.setattr(code_identity, "_source",
                            lambda name: (real_source(name) or "") + edits.get(name, ""))
        module_code.cache_clear()
        try:
            runner = ProtocolRunner(tmp_path / "results", torch.device("cpu"))
            cells = expand_cells(load_protocol(path), "demo")
            plans = {c.row.id: runner.plan(c) for c in cells}
            records = {(row, ev): p.records[ev].name
                       for row, p in plans.items() for ev in ("knn", "linear")}
            return {row: p.checkpoint_hash for row, p in plans.items()}, records
        finally:
            monkeypatch.setattr(code_identity, "_source", real_source)
            module_code.cache_clear()

    return compute


def test_closures_follow_imports_and_stop_at_what_cannot_change_a_result():
    load_builtins()
    dste = module_closure("usdrl_bench.encoders.dste")
    assert dste == {"usdrl_bench.encoders.dste", "usdrl_bench.encoders._blocks"}  # not sttr, not the registry
    mgfd = module_closure("usdrl_bench.objectives.mgfd")
    assert {"usdrl_bench.objectives.terms", "usdrl_bench.objectives.projector", "usdrl_bench.distributed"} <= mgfd
    assert "usdrl_bench.objectives.contrastive" not in mgfd
    train = module_closure("usdrl_bench.train.pretrain")
    assert {"usdrl_bench.data.augment.views", "usdrl_bench.data.augment.keys", "usdrl_bench.skeleton",
            "usdrl_bench.encoders.checkpoint"} <= train
    # the package __init__ reached through a lazy import counts, its re-exported submodules do not; the
    # protocol parser and the log writer never change a checkpoint
    assert "usdrl_bench.encoders" in train and "usdrl_bench.encoders.sttr" not in train
    assert not train & {"usdrl_bench.protocols.spec", "usdrl_bench.train.logs", "usdrl_bench.registry"}
    # lazy imports inside functions are followed
    assert "usdrl_bench.detection.metric" in module_closure("usdrl_bench.detection.evaluation")


def test_plugin_closure_covers_its_own_package_and_type_checking_imports_are_skipped(tmp_path, monkeypatch):
    pkg = tmp_path / "idplug"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("SCALE = 2.0\n")
    (pkg / "unused.py").write_text("X = 1\n")
    (pkg / "model.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .helpers import SCALE\n"
        "from usdrl_bench.objectives.terms import product_offdiag_sq_sum\n"
        "if TYPE_CHECKING:\n    from idplug import unused\n"
        "def f():\n    import usdrl_bench.skeleton\n    return SCALE\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        closure = module_closure("idplug.model")
        assert {"idplug.model", "idplug.helpers", "usdrl_bench.objectives.terms", "usdrl_bench.skeleton"} <= closure
        assert "idplug.unused" not in closure
        before = module_code("idplug.model")
        (pkg / "helpers.py").write_text("SCALE = 3.0\n")
        module_code.cache_clear()
        assert module_code("idplug.model") != before  # a helper the plug-in imports is part of its code
    finally:
        for name in [m for m in sys.modules if m == "idplug" or m.startswith("idplug.")]:
            del sys.modules[name]
        module_code.cache_clear()


@pytest.mark.slow
def test_an_edit_retrains_and_reevaluates_exactly_what_it_affects(keys):
    base, base_records = keys()
    assert len(set(base.values())) == 4

    ckpt, records = keys({"usdrl_bench.encoders.sttr": "\n# edited\n"})
    assert {r for r in base if ckpt[r] != base[r]} == {"sttr-mgfd"}

    ckpt, records = keys({"usdrl_bench.objectives.contrastive": "\n# edited\n"})
    assert {r for r in base if ckpt[r] != base[r]} == {"dste-nce"}

    ckpt, records = keys({"usdrl_bench.objectives.terms": "\n# edited\n"})  # used by MG-FD only
    assert {r for r in base if ckpt[r] != base[r]} == {"dste-mgfd", "sttr-mgfd"}

    ckpt, records = keys({"usdrl_bench.encoders._blocks": "\n# edited\n"})  # shared by both encoders
    assert ckpt.keys() == base.keys() and all(ckpt[r] != base[r] for r in base)

    ckpt, records = keys({"usdrl_bench.train.pretrain": "\n# edited\n"})  # random init trains nothing
    assert {r for r in base if ckpt[r] != base[r]} == {"dste-mgfd", "sttr-mgfd", "dste-nce"}

    # an evaluation's edit re-evaluates its own records and retrains nothing
    ckpt, records = keys({"usdrl_bench.evaluate.knn": "\n# edited\n"})
    assert ckpt == base
    assert {k for k in base_records if records[k] != base_records[k]} == {(r, "knn") for r in base}

    # unrelated code: the protocol parser, another evaluation, another reader, the CLI
    ckpt, records = keys({m: "\n# edited\n" for m in ("usdrl_bench.protocols.spec", "usdrl_bench.evaluate.semi",
                                                      "usdrl_bench.data.readers.msr_action3d", "usdrl_bench.cli")})
    assert ckpt == base and records == base_records
