"""Protocol validation as one mechanism (pydantic over the specs' type hints and declared ranges): every option
range-checked where the protocol loads, ``validate`` checking exactly what ``run`` checks (``--set`` included),
the published JSON Schema, and the errors a user meets before any data is loaded (a results folder that cannot
be written, a name only a shipped plug-in provides)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from usdrl_bench.components import unknown_name_message
from usdrl_bench import registry
from usdrl_bench.api import list_protocols, protocol_path
from usdrl_bench.cli import main
from usdrl_bench.data.augment import ViewOptions
from usdrl_bench.protocols import plan as plan_module
from usdrl_bench.protocols.spec import protocol_json_schema
from usdrl_bench.train.spec import PretrainSpec

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "docs" / "protocol.schema.json"


@pytest.fixture
def no_data_loads(monkeypatch):
    """Any attempt to load a dataset fails the test: what is checked here is checked before the data."""

    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded before the check")

    monkeypatch.setattr(plan_module.DataStore, "load", refuse)


def test_negative_epochs_is_refused_by_run_and_validate_with_the_key(tmp_path, capsys, no_data_loads):
    results = tmp_path / "results"
    assert main(["run", "table5_ablation", "--set", "presets.demo.pretrain.epochs=-1", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert "table5_ablation.yaml: presets.demo.pretrain.epochs: must be >= 1, got -1" in err, err
    assert not results.exists()  # nothing written
    assert main(["validate", "table5_ablation", "--set", "presets.demo.pretrain.epochs=-1"]) == 1
    assert "presets.demo.pretrain.epochs: must be >= 1, got -1" in capsys.readouterr().out
    assert main(["validate", "table5_ablation", "--set", "presets.demo.pretrain.epochs=2"]) == 0
    assert "with 1 --set" in capsys.readouterr().out


@pytest.mark.parametrize("override, key, message", [
    # checked on the cell (the encoder's configuration built from its preset): by run before any data, and by validate
    ("presets.demo.encoder_options={num_heads: 3}", "presets.demo.encoder_options", "is not divisible by num_heads 3"),
    ("presets.demo.pretrain.views={min_scale: 0.9, max_scale: 0.5}", "presets.demo.pretrain",
     "needs min_scale <= max_scale"),
    ("presets.demo.evaluations.knn={k: -2}", "presets.demo.evaluations.knn.k", "must be >= 1, got -2"),
])
def test_validate_checks_exactly_what_run_checks(tiny_protocol, tmp_path, capsys, no_data_loads, override, key, message):
    path = tmp_path / "p.yaml"
    path.write_text(tiny_protocol("v_tiny", ("7",)))
    assert main(["validate", str(path)]) == 0
    capsys.readouterr()
    assert main(["validate", str(path), "--set", override]) == 1
    out = capsys.readouterr().out
    assert str(path) in out and key in out and message in out, out
    assert main(["run", str(path), "--set", override, "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert key in err and message in err, err


def test_validate_takes_runs_selections(tiny_protocol, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(tiny_protocol("v_tiny", ("7", "R-DSTE")))
    assert main(["validate", str(path), "--rows", "7", "--seeds", "0", "1"]) == 0
    assert "preset demo: 2 cells" in capsys.readouterr().out
    assert main(["validate", str(path), "--rows", "nope"]) == 1
    assert "unknown row id(s) ['nope']" in capsys.readouterr().out


def test_ranges_hold_for_dataclasses_built_in_python():
    with pytest.raises(ValueError, match=r"PretrainSpec.epochs must be >= 1, got 0"):
        PretrainSpec(epochs=0, batch_size=8)
    with pytest.raises(ValueError, match=r"PretrainSpec.lr must be > 0"):
        PretrainSpec(epochs=1, batch_size=8, lr=0.0)
    with pytest.raises(ValueError, match=r"milestones must increase"):
        PretrainSpec(epochs=9, batch_size=8, milestones=(5, 3))
    with pytest.raises(ValueError, match=r"ViewOptions.p_shear must be <= 1"):
        ViewOptions(p_shear=1.5)
    assert PretrainSpec(epochs=1, batch_size=8, milestones=(3,)).milestones == (3,)  # at or past the end: no effect


def test_the_published_json_schema_is_the_generated_one():
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == protocol_json_schema(), "docs/protocol.schema.json is stale: run usdrl-bench schema -o docs/protocol.schema.json"


def _raw_files() -> list[Path]:
    files = [protocol_path(name) for name in list_protocols()]
    return files + sorted(protocol_path(list_protocols()[0]).parent.glob("include/*.yaml"))


@pytest.mark.parametrize("path", _raw_files(), ids=lambda p: p.name)
def test_every_shipped_protocol_file_validates_against_the_schema(path):
    validator = jsonschema.Draft202012Validator(protocol_json_schema())
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors, errors


def test_the_schema_states_ranges_and_keys(tmp_path, capsys):
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    validator = jsonschema.Draft202012Validator(json.loads((tmp_path / "s.json").read_text()))
    data = yaml.safe_load(protocol_path("table5_ablation").read_text())
    assert validator.is_valid(data)
    for bad in ({"epochs": -1}, {"lr": 0}, {"epohcs": 3}, {"views": {"p_shear": 2}}):
        broken = json.loads(json.dumps(data))
        broken["presets"]["demo"]["pretrain"] = {**broken["presets"]["demo"].get("pretrain", {}), **bad}
        assert not validator.is_valid(broken), bad


def test_a_results_folder_that_cannot_be_written_is_named_before_the_data(safety_file, tmp_path, capsys, no_data_loads):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["run", str(safety_file), "--results", str(blocker / "results")]) == 2
    err = capsys.readouterr().err
    assert f"results folder {blocker / 'results'} is not writable" in err and "--results" in err, err


def test_a_full_results_disk_is_named_before_the_data(safety_file, tmp_path, capsys, monkeypatch, no_data_loads):
    import shutil

    from usdrl_bench import api

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(api.shutil, "disk_usage", lambda path: usage._replace(free=10 * 2**20))
    assert main(["run", str(safety_file), "--results", str(tmp_path / "results")]) == 2
    err = capsys.readouterr().err
    assert "is on a full disk (10 MiB free" in err, err


@pytest.fixture
def safety_file(tiny_protocol, tmp_path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(tiny_protocol("v_tiny", ("7",)))
    return path


def test_unknown_names_list_what_list_lists_and_name_the_plugin(tiny_protocol, tmp_path, capsys):
    # (a protocol naming stgcn without its plug-in fails in a fresh process; once a plug-in is loaded in this
    # one, its names stay known, so the message is checked directly)
    assert unknown_name_message(registry.ENCODERS, "stgcn") == (
        "encoder 'stgcn' comes from the shipped plug-in baselines.stgcn: add `plugins: [baselines.stgcn]` to the "
        "protocol (usdrl-bench list shows every name)")
    path = tmp_path / "p.yaml"
    path.write_text(tiny_protocol("v_tiny", ("7",)).replace("encoder: dste", "encoder: nosuch"))
    assert main(["validate", str(path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    available = out.split("Available: ")[1].split(" (usdrl-bench list")[0].split(", ")
    assert "stgcn" in available and "dste" in available
    assert all(name in listed for name in available)
    assert set(available) == set(registry.ENCODERS.names())


def test_invalid_yaml_is_named_by_line_and_column(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nrows: [\n")
    assert main(["validate", str(path)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"{path}: not valid YAML: line 3, column 1: while parsing a flow node" in out and "<unicode string>" not in out, out
