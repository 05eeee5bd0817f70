"""Released weights as protocol rows: an official USDRL checkpoint and a peer's official checkpoint evaluated by a
protocol with no pretraining, keyed by the file's content, recorded and reported as released weights."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import usdrl_bench
from usdrl_bench.protocols.schema import ProtocolError
from usdrl_bench.protocols.spec import load_protocol

FIXTURES = Path(__file__).parent / "fixtures"
MAMP_FILE = FIXTURES / "official_peers" / "mamp" / "official_pretrain.pt"
USDRL_FILE = FIXTURES / "official_usdrl" / "official_dste_h32.pth.tar"


def _protocol(tmp_path: Path, rows: str) -> Path:
    shutil.copy(MAMP_FILE, tmp_path / "mamp_released.pth")
    shutil.copy(USDRL_FILE, tmp_path / "usdrl_released.pth.tar")
    path = tmp_path / "released.yaml"
    path.write_text(
        "name: released\nversion: 1\nplugins: [baselines.mamp]\nrows:\n" + rows + "presets:\n  demo:\n"
        "    dataset: {name: synthetic, split: xsub, options: {seed: 0, num_classes: 3, samples_per_class_subject_camera: 1}}\n"
        "    encoder_preset: tiny\n    method_preset: cpu\n    pretrain: {epochs: 1, batch_size: 16}\n"
        "    evaluations: {knn: {k: 1}, linear: {epochs: 2, batch_size: 16, eval_every: 1}}\n")
    return path


ROWS = ("  - {id: MAMP-released, label: MAMP, method: mamp, checkpoint: mamp_released.pth}\n"
        "  - {id: USDRL-released, label: USDRL, method: usdrl, checkpoint: usdrl_released.pth.tar}\n"
        "  - {id: R-DSTE, label: 'DSTE, random init', encoder: dste, objective: null}\n")


@pytest.mark.slow
def test_released_rows_run_every_evaluation_and_are_marked(tmp_path, one_thread):
    path = _protocol(tmp_path, ROWS)
    records = usdrl_bench.run_protocol(path, results=tmp_path / "results")
    released = records[records.row_id.isin(["MAMP-released", "USDRL-released"])]
    assert set(released.evaluation) == {"knn", "linear"}
    assert (released.objective == "released weights").all()
    assert released.row_label.str.endswith("(released weights)").all()
    assert released.weights.str.startswith("released weights: ").all()
    assert (records[records.row_id == "R-DSTE"].weights == "random init").all()
    assert released.pretrain_wall_time_s.eq(0).all()
    # the MAMP row's encoder is the file's: its kNN features are the official checkpoint's
    mamp = usdrl_bench.load_encoder(MAMP_FILE, method="mamp")
    assert released[released.row_id == "MAMP-released"].encoder_params.iloc[0] == sum(p.numel() for p in mamp.parameters())
    # a second run reuses everything; a changed file (same name) is a new key and is evaluated again
    again = usdrl_bench.run_protocol(path, results=tmp_path / "results")
    assert set(again.checkpoint_hash) == set(records.checkpoint_hash)
    import torch

    obj = torch.load(tmp_path / "mamp_released.pth", weights_only=False)
    obj["model"]["norm.bias"] = obj["model"]["norm.bias"] + 0.5
    torch.save(obj, tmp_path / "mamp_released.pth")
    changed = usdrl_bench.run_protocol(path, results=tmp_path / "results", rows=["MAMP-released"])
    assert set(changed.checkpoint_hash).isdisjoint(set(records.checkpoint_hash))
    # the report marks them
    from usdrl_bench.records import load_records
    from usdrl_bench.report.writer import write_reports

    written = write_reports(load_records(tmp_path / "results"), tmp_path / "reports", tmp_path / "results")
    text = "\n".join(p.read_text() for p in written if p.suffix == ".md")
    assert "MAMP (released weights)" in text and "USDRL (released weights)" in text


def test_a_released_row_is_checked_when_the_protocol_loads(tmp_path):
    path = _protocol(tmp_path, "  - {id: X, label: X, method: mamp, checkpoint: nowhere.pth}\n")
    with pytest.raises(ProtocolError, match=r"rows\[0\].checkpoint.*no such file"):
        load_protocol(path)
    path = _protocol(tmp_path, "  - {id: X, label: X, method: cmd, checkpoint: mamp_released.pth}\n")
    path.write_text(path.read_text().replace("plugins: [baselines.mamp]", "plugins: [baselines.mamp, baselines.cmd]"))
    with pytest.raises(ProtocolError, match=r"rows\[0\].checkpoint.*does not load as cmd"):
        load_protocol(path)
    path = _protocol(tmp_path, "  - {id: X, label: X, method: mamp, objective: mamp, checkpoint: mamp_released.pth}\n")
    with pytest.raises(ProtocolError, match="give no objective"):
        load_protocol(path)
    protocol = load_protocol(_protocol(tmp_path, ROWS))
    row = protocol.rows[0]
    assert row.objective is None and row.encoder == "mamp_vit" and Path(row.checkpoint).is_absolute()
