"""Transfer: an encoder pretrained on one dataset and evaluated on another (the same checkpoint as the
column pretrained on that data), a clear error when the data do not fit, fine-tuning, and row_columns."""

from __future__ import annotations

import json

import pytest

from usdrl_bench.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

PROTOCOL = """\
name: transfer_tiny
version: 1
rows:
  - {id: D, label: "DSTE MG-FD", encoder: dste, objective: mgfd}
  - {id: R, label: "DSTE random", encoder: dste, objective: null}
presets:
  demo:
    datasets:
      - {id: source, name: synthetic, split: xsub, options: {num_classes: 4, samples_per_class_subject_camera: 1}}
      - {id: target, name: synthetic, split: xsub, options: {seed: 5, num_classes: 3, samples_per_class_subject_camera: 1},
         pretrain_on: {name: synthetic, split: xsub, options: {num_classes: 4, samples_per_class_subject_camera: 1}}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      knn: {k: 1}
      finetune: {epochs: 2, batch_size: 16, lr: 0.05, milestones: []}
    row_columns: {R: [target]}
"""


def _rows(results):
    return [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]


@pytest.mark.slow
def test_pretrained_on_one_dataset_evaluated_on_another(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    results = tmp_path / "results"
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "r"),
                 "--device", "cpu", "--jobs", "1"]) == 0
    rows = _rows(results)
    by = {(r["row_id"], r["column"], r["metric"]): r for r in rows}
    assert set(by) == {("D", "source", "knn1_top1"), ("D", "source", "finetune_top1"), ("D", "target", "knn1_top1"),
                       ("D", "target", "finetune_top1"), ("R", "target", "knn1_top1"), ("R", "target", "finetune_top1")}
    # the target column reuses the source column's checkpoint: pretrained once, on the source data
    assert by[("D", "target", "knn1_top1")]["checkpoint_hash"] == by[("D", "source", "knn1_top1")]["checkpoint_hash"]
    assert len(list((results / "checkpoints").glob("*/encoder.pt"))) == 2  # D and the random init R
    assert by[("D", "target", "knn1_top1")]["pretrain_data"] == "synthetic/xsub"
    assert by[("D", "source", "knn1_top1")]["pretrain_data"] is None
    assert by[("D", "target", "knn1_top1")]["test_samples"] != by[("D", "source", "knn1_top1")]["test_samples"]
    assert all(0 <= r["value"] <= 100 for r in rows)
    md = (tmp_path / "r" / "transfer_tiny__demo.md").read_text()
    assert "encoders pretrained on synthetic/xsub (transfer)" in md and "fine-tuned top-1" in md


@pytest.mark.slow
def test_transfer_to_data_the_encoder_cannot_read_is_refused(tmp_path, capsys):
    text = PROTOCOL.replace("{id: target, name: synthetic, split: xsub, options: {seed: 5, num_classes: 3, "
                            "samples_per_class_subject_camera: 1},",
                            "{id: target, name: synthetic_2d, split: xsub, options: {num_classes: 3, "
                            "samples_per_class_subject_camera: 1},")
    (tmp_path / "p.yaml").write_text(text)
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(tmp_path / "results"), "--device", "cpu",
                 "--jobs", "1", "--rows", "D"]) == 2
    err = capsys.readouterr().err
    assert "datasets.target.pretrain_on" in err and "(3, 25, 2)" in err and "(3, 17, 2)" in err
    (tmp_path / "q.yaml").write_text(PROTOCOL.replace("row_columns: {R: [target]}", "row_columns: {R: [targt]}"))
    assert main(["validate", str(tmp_path / "q.yaml")]) == 1
    assert "row_columns.R: unknown dataset column(s) ['targt']" in capsys.readouterr().out
