"""The "Adding a method" walkthrough of docs/extending.md, word for word, from an empty temporary folder; the checks
the registration decorators make; and the plug-in's source in the cache key."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _walkthrough() -> tuple[str, str, list[str]]:
    """(my_method.py, my_protocol.yaml, the command) as the documentation's "Adding a method" (docs/extending.md) gives them."""
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text[text.index("## Adding a method"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    python = re.search(r"```python\n(.*?)```", section, re.S)[1]
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S)[1]
    command = re.search(r"\n    (usdrl-bench run \S+)\n", section)[1]
    assert "write `my_method.py`" in section and "`my_protocol.yaml` beside it" in section
    return python, yaml, shlex.split(command)


def _run(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    assert command[0] == "usdrl-bench"  # the console script is `python -m usdrl_bench`
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([sys.executable, "-m", "usdrl_bench", *command[1:]], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _checkpoints(folder: Path) -> dict[str, set[str]]:
    """row id -> the checkpoint hashes of its records under ``folder/results``."""
    out: dict[str, set[str]] = {}
    for f in (folder / "results" / "records").rglob("*.json"):
        for row in json.loads(f.read_text())["rows"]:
            out.setdefault(row["row_id"], set()).add(row["checkpoint_hash"])
    return out


@pytest.mark.slow
def test_the_readme_walkthrough_runs_word_for_word(tmp_path):
    python, yaml, command = _walkthrough()
    (tmp_path / "my_method.py").write_text(python)
    (tmp_path / "my_protocol.yaml").write_text(yaml)
    result = _run(tmp_path, command)
    for label in ("GRU, VICReg", "DSTE, VICReg", "GRU, MG-FD", "GRU, random init"):
        assert label in result.stdout, label
    records = [r for f in (tmp_path / "results" / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {r["row_id"] for r in records} == {"gru-vicreg", "dste-vicreg", "gru-mgfd", "gru-random", "dste-mgfd",
                                              "gru-vicreg-method"}
    assert {r["method"] for r in records if r["row_id"] == "gru-vicreg-method"} == {"gru_vicreg"}
    assert all(0 <= r["value"] <= 100 for r in records)
    logs = list((tmp_path / "results" / "checkpoints").glob("*/train_log.csv"))
    assert any("std" in p.read_text().splitlines()[0] for p in logs)  # VICReg's own terms are logged
    before = _checkpoints(tmp_path)
    assert before["gru-vicreg-method"] == before["gru-vicreg"]  # the method's empty preset: the same model

    # editing the plug-in retrains its rows, and only those
    # the plug-in's declared ranges are checked where the protocol loads, as the documentation says
    validate = subprocess.run([sys.executable, "-m", "usdrl_bench", "validate", "my_protocol.yaml", "--set",
                               "rows.1.objective_options.sim_weight=-1"], cwd=tmp_path, capture_output=True, text=True)
    assert validate.returncode == 1 and "rows[1].objective_options.sim_weight: must be >= 0.0, got -1" in validate.stdout, \
        validate.stdout + validate.stderr
    (tmp_path / "my_method.py").write_text(python.replace("sim_weight: NonNegativeFloat = 25.0",
                                                          "sim_weight: NonNegativeFloat = 20.0"))
    _run(tmp_path, command)
    after = _checkpoints(tmp_path)
    assert all(len(hashes) == 1 for hashes in before.values())
    assert after["dste-mgfd"] == before["dste-mgfd"]  # built-in encoder and objective: reused
    for row in ("gru-vicreg", "dste-vicreg", "gru-mgfd", "gru-random", "gru-vicreg-method"):
        assert len(after[row] - before[row]) == 1, row  # a new checkpoint (and records) for the edited code


def test_registrations_are_checked():
    import torch
    from torch import nn

    from usdrl_bench import EncoderConfig, Objective, SkeletonEncoder, register_encoder, register_objective

    with pytest.raises(TypeError, match="subclass of usdrl_bench.Objective"):
        register_objective("not_an_objective")(nn.Module)

    class NoEncoder(Objective):
        def __init__(self, *, weight: float = 1.0):
            super().__init__(None)

    with pytest.raises(TypeError, match="encoder as its first argument"):
        register_objective("no_encoder")(NoEncoder)

    @dataclass(frozen=True)
    class Config(EncoderConfig):
        width: int = 3

    with pytest.raises(TypeError, match="subclass of usdrl_bench.SkeletonEncoder"):
        register_encoder("bad_encoder", Config)(nn.Linear)
    with pytest.raises(TypeError, match="derived from usdrl_bench.EncoderConfig"):
        register_encoder("bad_config", dict)
    with pytest.raises(ValueError, match="unknown field"):
        register_encoder("bad_preset", Config, presets={"tiny": {"widht": 3}})
    with pytest.raises(ValueError, match="already registered"):
        register_objective("mgfd")(type("Other", (Objective,), {"__init__": lambda self, encoder: None}))

    @register_encoder("contract_test_linear", Config, presets={"tiny": {"hidden_size": 8, "num_frames": 8}})
    class Linear(SkeletonEncoder):
        def __init__(self, config):
            super().__init__(config)
            self.t = nn.Linear(config.temporal_input_size, config.hidden_size)
            self.s = nn.Linear(config.spatial_input_size, config.hidden_size)

        def forward_tokens(self, x_t, x_s):
            return self.t(x_t), self.s(x_s)

    from usdrl_bench.encoders import create_encoder, list_presets

    assert list_presets("contract_test_linear") == ["tiny"]  # one preset store
    encoder = create_encoder("contract_test_linear", "tiny")
    assert encoder.encoder_name == "contract_test_linear" and encoder(torch.randn(2, 3, 8, 25, 2)).shape == (2, 16)


@pytest.mark.slow
def test_the_baseline_plugin_uses_only_the_public_api(tmp_path):
    source = (ROOT / "baselines" / "mlp_encoder.py").read_text()
    imports = re.findall(r"^from (usdrl_bench\S*) import", source, re.M)
    assert imports == ["usdrl_bench"], imports
    (tmp_path / "p.yaml").write_text(
        "name: mlp_demo\nversion: 1\nplugins: [baselines.mlp_encoder]\nrows:\n"
        "  - {id: mlp, label: MLP, encoder: mlp, objective: mgfd}\npresets:\n  demo:\n"
        "    dataset: {name: synthetic, split: xsub, options: {num_classes: 3, samples_per_class_subject_camera: 1}}\n"
        "    encoder_preset: tiny\n    pretrain: {epochs: 1, batch_size: 16}\n    evaluations: {knn: {k: 1}}\n")
    result = subprocess.run([sys.executable, "-m", "usdrl_bench", "run", str(tmp_path / "p.yaml"), "--results",
                             str(tmp_path / "results"), "--reports", str(tmp_path / "rep"), "--jobs", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| mlp " in result.stdout


def _dataset_walkthrough() -> tuple[str, str, list[list[str]]]:
    """(my_dataset.py, my_data.yaml, the commands) as docs/extending.md's "Adding a dataset" gives them."""
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text[text.index("## Adding a dataset"):]
    section = section[:section.index("\n## ", 5)] if "\n## " in section[5:] else section
    python = re.search(r"```python\n(.*?)```", section, re.S)[1]
    yaml = re.search(r"```yaml\n(.*?)```", section, re.S)[1]
    commands = [shlex.split(c) for c in re.findall(r"\n    ((?:python|usdrl-bench) [^\n]+)", section)]
    assert "write `my_dataset.py`" in section and "`my_data.yaml` beside it" in section
    return python, yaml, commands


@pytest.mark.slow
def test_the_readme_dataset_walkthrough_runs_word_for_word(tmp_path):
    python, yaml, commands = _dataset_walkthrough()
    assert [c[:2] for c in commands] == [["python", "my_dataset.py"], ["usdrl-bench", "run"]]
    (tmp_path / "my_dataset.py").write_text(python)
    (tmp_path / "my_data.yaml").write_text(yaml)
    made = subprocess.run([sys.executable, *commands[0][1:]], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr[-2000:]
    assert len(list((tmp_path / "stick_data").glob("*.csv"))) == 90
    result = _run(tmp_path, commands[1])
    assert "DSTE, MG-FD" in result.stdout and "DSTE, random init" in result.stdout
    assert "`stick5_xsub`: dataset **stick5**, split xsub, stream joint, 54 train / 36 test samples" in result.stdout
    records = [r for f in (tmp_path / "results" / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {r["row_id"] for r in records} == {"dste-mgfd", "dste-random"}
    assert {r["dataset"] for r in records} == {"stick5"} and {r["paper_setting"] for r in records} == {None}
    # a paper protocol on the user's data set: its own column name, no paper number, no difference
    paper = _run(tmp_path, ["usdrl-bench", "run", "table5_ablation", "--rows", "R-DSTE", "--dataset", "stick5:stick_data",
                            "--set", "plugins=[my_dataset]"])
    table = (tmp_path / "reports" / "table5_ablation__demo.md").read_text()
    assert "stick5_xsub" in table and "paper (Δ)" not in table and "paper column" not in table, table
    assert "Δ" not in table and "ntu60_xsub" not in table and "stands in" not in table
    assert "ntu60_xsub" not in paper.stdout
    # a malformed file of the user's data is named by the reader's DataFormatError
    (tmp_path / "stick_data" / "wave_s1_0.csv").write_text("1,2\n")
    bad = subprocess.run([sys.executable, "-m", "usdrl_bench", "run", "my_data.yaml", "--results", "fresh"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "wave_s1_0.csv" in bad.stderr and "expected rows x,y,z" in bad.stderr


def test_the_public_contract_is_importable_documented_and_checked(tmp_path, monkeypatch):
    import usdrl_bench
    from usdrl_bench import Layout, SkeletonArrays, register_dataset, register_layout
    from usdrl_bench.data.loading import load_dataset

    for name in usdrl_bench.__all__:
        obj = getattr(usdrl_bench, name)
        assert name == "__version__" or (obj.__doc__ or "").strip(), f"usdrl_bench.{name} has no docstring"
    with pytest.raises(ValueError, match="at least one split"):
        register_dataset("empty_splits", splits=())
    with pytest.raises(ValueError, match="default_split 'xsub' is not one of"):
        register_dataset("bad_default", splits=("xview",), default_split="xsub")
    with pytest.raises(TypeError, match=r"must take \(path, split, \*\*options\)"):
        register_dataset("one_argument", splits=("xsub",))(lambda path: None)
    with pytest.raises(ValueError, match=r"bones\[0\] = 5 is outside \[0, 2\)"):
        Layout("broken", ("a", "b"), ((5, 0),), 0, 0, 1)
    register_layout(Layout("pair2", ("a", "b"), ((1, 0),), 0, 0, 1))
    with pytest.raises(ValueError, match="'pair2' is already registered"):
        register_layout(Layout("pair2", ("a", "c"), ((1, 0),), 0, 0, 1))

    def arrays(layout: str, v: int) -> SkeletonArrays:
        return SkeletonArrays(data=np.zeros((2, 3, 4, v, 1), np.float32), labels=np.array([0, 1]),
                              num_frames=np.array([4, 4]), meta=pd.DataFrame({"subject": [1, 2], "camera": -1, "setup": -1,
                                                                              "repetition": -1}),
                              names=["a", "b"], num_classes=2, layout=layout)

    @register_dataset("two_samples", splits=("xsub",), locate=lambda root: root / "two")
    def two(path, split, *, layout: str = "pair2", v: int = 2):
        """Two samples found under the data root."""
        assert path == str(tmp_path / "two")
        return arrays(layout, v), arrays(layout, v)

    monkeypatch.setenv("USDRL_DATA", str(tmp_path))
    train, _ = load_dataset("two_samples", None, "xsub")
    assert train.layout == "pair2" and len(train) == 2
    with pytest.raises(ValueError, match="layout 'nope' is not registered"):
        load_dataset("two_samples", None, "xsub", layout="nope")
    with pytest.raises(ValueError, match="V = 3 joints but layout 'pair2' has 2"):
        load_dataset("two_samples", None, "xsub", v=3)


def test_the_official_format_example_runs_and_round_trips(tmp_path, monkeypatch):
    """docs/extending.md's "Its official checkpoints" example, word for word, on the walkthrough's GRU encoder: a
    format built from the public helpers exports a checkpoint and reads it back, and a missing key is named."""
    import importlib
    import torch
    from usdrl_bench import CheckpointMismatchError, OfficialFormat, create_encoder

    python, _, _ = _walkthrough()
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text[text.index("### Its official checkpoints"):]
    example = re.search(r"```python\n(.*?)```", section, re.S)[1]
    (tmp_path / "ext_method_fmt.py").write_text(python.replace('"gru"', '"gru_fmt"').replace('"vicreg"', '"vicreg_fmt"')
                                                .replace('"gru_vicreg"', '"gru_vicreg_fmt"'))
    (tmp_path / "ext_official_fmt.py").write_text("import ext_method_fmt  # noqa: F401\n"
                                                  + example.replace('"gru"', '"gru_fmt"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("ext_official_fmt")
    assert isinstance(module.GRU_FORMAT, OfficialFormat)
    torch.manual_seed(0)
    encoder = create_encoder("gru_fmt", "tiny")
    exported = module.GRU_FORMAT.export(encoder, None)
    assert any(k.startswith("encoder.gru.") for k in exported["state_dict"])
    back = module.GRU_FORMAT.load(exported, {})
    assert all(torch.equal(v, back.encoder.state_dict()[k]) for k, v in encoder.state_dict().items())
    del exported["state_dict"]["encoder.gru.bias_hh_l0"]
    with pytest.raises(CheckpointMismatchError, match="encoder.gru.bias_hh_l0"):
        module.GRU_FORMAT.load(exported, {})
