"""The Python API (``usdrl_bench.run_protocol``, ``load_encoder``, ``embed``) and the shipped protocols as
package data: what a script gets is what the command line records."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import usdrl_bench
from usdrl_bench.cli import main
from usdrl_bench.records import RECORD_COLUMNS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_run_protocol_returns_the_records(tmp_path, tiny_protocol):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_protocol("api_tiny"))
    results = tmp_path / "results"
    records = usdrl_bench.run_protocol(path, results=results, device="cpu")
    assert list(records.columns) == list(RECORD_COLUMNS)
    assert sorted(records["row_id"]) == ["7", "R-DSTE"] and set(records["metric"]) == {"knn1_top1"}
    on_disk = {(r["row_id"], r["metric"]): r["value"] for f in (results / "records").rglob("*.json")
               for r in json.loads(f.read_text())["rows"]}
    assert {(r.row_id, r.metric): r.value for r in records.itertuples()} == on_disk
    ckpts = sorted((results / "checkpoints").glob("*/encoder.pt"))
    mtimes = [c.stat().st_mtime_ns for c in ckpts]
    again = usdrl_bench.run_protocol(str(path), results=results, device="cpu", rows=["7"])
    assert list(again["row_id"]) == ["7"] and [c.stat().st_mtime_ns for c in ckpts] == mtimes  # cached


@pytest.mark.slow
def test_shipped_protocols_run_by_name_from_any_directory(tmp_path, monkeypatch, capsys):
    shipped = {p.stem for p in (Path(usdrl_bench.__file__).parent / "protocols" / "shipped").glob("*.yaml")}
    assert "table5_ablation" in usdrl_bench.list_protocols() and set(usdrl_bench.list_protocols()) == shipped
    assert len(shipped) == 14
    monkeypatch.chdir(tmp_path)  # no protocols/ folder here
    assert main(["run", "table5_ablation", "--rows", "R-DSTE", "--jobs", "1"]) == 0
    assert "R-DSTE" in capsys.readouterr().out
    assert list((tmp_path / "results" / "records" / "table5_ablation").rglob("*.json"))
    with pytest.raises(FileNotFoundError, match="no shipped protocol named 'table9'.*table5_ablation"):
        usdrl_bench.protocol_path("table9")
    assert main(["validate", "table1_linear", "fig5_embedding"]) == 0


def test_embed_and_load_encoder_reproduce_the_official_features(official_fixtures):
    encoder = usdrl_bench.load_encoder(official_fixtures / "official_dste_h32.pth.tar")
    x = np.load(official_fixtures / "parity_input.npy")
    features = usdrl_bench.embed(encoder, x)
    np.testing.assert_allclose(features, np.load(official_fixtures / "expected_dste_features.npy"), atol=1e-6)
    dense = usdrl_bench.embed(encoder, x, dense=True)
    assert dense["temporal"].shape == (4, 64, 32) and dense["spatial"].shape == (4, 50, 32)
    with pytest.raises(ValueError, match=r"\(N, C, T, V, M\)"):
        usdrl_bench.embed(encoder, x[0])
    with pytest.raises(ValueError, match="3 frame counts for 4 samples"):
        usdrl_bench.embed(encoder, x, num_frames=[64, 64, 64])
    with pytest.raises(ValueError, match=r"sample 2 has 0 valid frames, outside \[1, 64\]"):
        usdrl_bench.embed(encoder, x, num_frames=[64, 64, 0, 64])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        usdrl_bench.embed(encoder, x, batch_size=0)


def test_embed_file_makes_every_check_of_the_embed_command_before_loading(tmp_path, official_fixtures, monkeypatch):
    """`usdrl-bench embed` is a call to usdrl_bench.embed_file: each check it makes is the API's, before the
    encoder loads; and the file it writes holds embed()'s features."""
    import usdrl_bench.api as api

    ckpt = official_fixtures / "official_dste_h32.pth.tar"
    x = np.load(official_fixtures / "parity_input.npy")
    np.save(tmp_path / "x.npy", x)
    done = usdrl_bench.embed_file(ckpt, tmp_path / "x.npy", tmp_path / "out" / "f.npy")
    assert done.shapes == {"features": (4, 64)} and "last non-zero frame" in done.frames
    np.testing.assert_allclose(np.load(done.path), usdrl_bench.embed(usdrl_bench.load_encoder(ckpt), x), atol=1e-6)

    def fail(*args, **kwargs):
        raise AssertionError("the encoder was loaded before the inputs were checked")

    monkeypatch.setattr(api, "load_encoder", fail)
    np.save(tmp_path / "x4.npy", x[0])
    np.save(tmp_path / "three.npy", np.full(3, 40))
    np.save(tmp_path / "zero.npy", np.array([40, 0, 40, 40]))
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for kwargs, error, message in (
            (dict(data=tmp_path / "none.npy"), FileNotFoundError, "data file not found"),
            (dict(out=tmp_path), ValueError, "is a folder"),
            (dict(out=blocker / "f.npy"), ValueError, "cannot write there"),
            (dict(data=tmp_path / "x4.npy"), ValueError, r"expected an \(N, C, T, V, M\) array"),
            (dict(num_frames=tmp_path / "none.npy"), FileNotFoundError, "frame-count file not found"),
            (dict(num_frames=tmp_path / "three.npy"), ValueError, "3 frame counts for 4 samples"),
            (dict(num_frames=tmp_path / "zero.npy"), ValueError, r"sample 1 has 0 valid frames, outside \[1, 64\]"),
            (dict(batch_size=0), ValueError, "batch_size must be >= 1")):
        call = {"checkpoint": ckpt, "data": tmp_path / "x.npy", "out": tmp_path / "g.npy", **kwargs}
        with pytest.raises(error, match=message):
            usdrl_bench.embed_file(call.pop("checkpoint"), call.pop("data"), call.pop("out"), **call)


@pytest.mark.slow
def test_the_wheel_ships_the_protocols(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                             "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"cannot build a wheel here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("usdrl_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in usdrl_bench.list_protocols():
        assert f"usdrl_bench/protocols/shipped/{name}.yaml" in names
    assert "usdrl_bench/protocols/shipped/include/presets.yaml" in names


@pytest.mark.slow
def test_set_overrides_any_key_and_is_recorded(tmp_path, capsys, tiny_protocol):
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_protocol("api_tiny"))
    results = tmp_path / "results"
    sets = ["presets.demo.pretrain.epochs=2", "rows.0.label=My DSTE", "presets.demo.evaluations.knn={k: 3}"]
    args = ["run", str(path), "--results", str(results), "--reports", str(tmp_path / "rep"), "--rows", "7", "--jobs", "1"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    assert "My DSTE" in capsys.readouterr().out
    (record,) = (results / "records").rglob("*.json")
    row = json.loads(record.read_text())["rows"][0]
    assert row["overrides"] == sets and row["protocol_version"] == 1 and row["row_label"] == "My DSTE"
    (config,) = (results / "checkpoints").glob("*/config.json")
    assert json.loads(config.read_text())["pretrain"]["epochs"] == 2
    for bad, message in (("presets.demo.pretrain.epohcs=2", "epohcs: unknown key (did you mean 'epochs'?)"),
                         ("presets.demo.pretrain.epochs=abc", "presets.demo.pretrain.epochs: expected an integer"),
                         ("rows.9.label=x", "rows.9: --set: '9' is not an index"),
                         ("epochs", "--set: expected KEY.PATH=VALUE")):
        assert main(args + ["--set", bad]) == 2
        assert message in capsys.readouterr().err, bad


def test_embed_uses_the_official_frame_counts_beside_agcn_data(tmp_path, official_fixtures, capsys):
    """AGCN arrays repeat each sequence up to 300 frames: the last non-zero frame is not the last valid one.
    `embed` reads `<prefix>_num_frame.npy` beside `<prefix>_data_joint.npy` (or --num-frames), as the official
    downstream code uses the frame counts."""
    x = np.load(official_fixtures / "parity_input.npy")[:, :, :40]  # 40 valid frames
    padded = np.concatenate([x, x, x], axis=2)[:, :, :100]  # repeat-padded to 100 frames, as the AGCN layout
    np.save(tmp_path / "val_data_joint.npy", padded)
    np.save(tmp_path / "val_num_frame.npy", np.full(4, 40))
    ckpt = str(official_fixtures / "official_dste_h32.pth.tar")
    assert main(["embed", "--checkpoint", ckpt, "--data", str(tmp_path / "val_data_joint.npy"),
                 "--out", str(tmp_path / "f.npy")]) == 0
    assert "val_num_frame.npy" in capsys.readouterr().err
    encoder = usdrl_bench.load_encoder(ckpt)
    expected = usdrl_bench.embed(encoder, x)  # the 40 valid frames alone
    np.testing.assert_allclose(np.load(tmp_path / "f.npy"), expected, atol=1e-6)
    assert np.abs(usdrl_bench.embed(encoder, padded) - expected).max() > 1e-3  # the last non-zero frame: wrong
    np.save(tmp_path / "counts.npy", np.full(3, 40))
    assert main(["embed", "--checkpoint", ckpt, "--data", str(tmp_path / "val_data_joint.npy"), "--num-frames",
                 str(tmp_path / "counts.npy"), "--out", str(tmp_path / "g.npy")]) == 2
    assert "3 frame counts for 4 samples" in capsys.readouterr().err
