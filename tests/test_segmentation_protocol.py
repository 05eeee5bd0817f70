"""The segmentation evaluation end to end: a protocol on synthetic untrimmed videos writes records whose
numbers score-segmentation reproduces from the frame-label files beside them, and a timeline figure."""

from __future__ import annotations

import json

import pytest

from usdrl_bench.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

PROTOCOL = """\
name: seg_tiny
version: 1
paper_table: J-seg
rows:
  - {id: STTR, label: "STTR MG-FD", encoder: sttr, objective: mgfd, paper: {method: USDRL, encoder: STTR}}
  - {id: R, label: "DSTE random", encoder: dste, objective: null}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {num_classes: 4, samples_per_class_subject_camera: 1},
              paper_setting: pku2_xsub}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      segmentation:
        data: {name: synthetic_untrimmed, options: {seed: 3, num_classes: 3, num_videos: 6, actions_per_video: 3}}
        head: linear
        epochs: 3
        lr: 0.1
        batch_size: 8
"""


@pytest.mark.slow
def test_segmentation_protocol_records_reproduce_with_score_segmentation(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(reports),
                 "--device", "cpu", "--jobs", "1"]) == 0
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {r["metric"] for r in rows} == {"seg_acc", "seg_edit", "seg_f1@10", "seg_f1@25", "seg_f1@50"}
    assert all(0 <= r["value"] <= 100 for r in rows)
    sttr = {r["metric"]: r for r in rows if r["row_id"] == "STTR"}
    folder = results / sttr["seg_acc"]["artifact"]
    assert len(list((folder / "pred").glob("*.txt"))) == len(list((folder / "truth").glob("*.txt"))) == 3
    capsys.readouterr()
    assert main(["score-segmentation", "--gt", str(folder / "truth"), "--pred", str(folder / "pred")]) == 0
    printed = capsys.readouterr().out
    for metric, label in (("seg_acc", "Acc"), ("seg_edit", "Edit"), ("seg_f1@10", "F1@10"), ("seg_f1@50", "F1@50")):
        assert f"{sttr[metric]['value']:.2f}" in printed, (label, printed)
    # the report: the journal's number beside the STTR row, the timeline figure
    md = (reports / "seg_tiny__demo.md").read_text()
    assert "68.7" in md and "67.5" in md
    assert (reports / "seg_tiny__demo__timeline.png").stat().st_size > 0
    # options are checked when the protocol loads
    (tmp_path / "q.yaml").write_text(PROTOCOL.replace("head: linear", "head: mlp"))
    assert main(["validate", str(tmp_path / "q.yaml")]) == 1
    assert "segmentation.head: expected one of 'linear', 'finetune', got 'mlp'" in capsys.readouterr().out


def test_pku2_untrimmed_videos_are_prepared_and_loaded(tmp_path):
    from usdrl_bench.data.preparation.pku import prepare_pku
    from usdrl_bench.data.synthetic.raw import write_pku_release
    from usdrl_bench.detection.videos import load_videos

    videos = {"A01N01-L": [(3, 40, 1), (8, 30, 1)], "A01N04-M": [(3, 35, 1)], "A02N02-R": [(8, 50, 1), (12, 20, 1)]}
    write_pku_release(tmp_path / "raw", videos, train=["A01N01-L", "A01N04-M"], test=["A02N02-R"])
    prepare_pku("pku2", tmp_path / "raw", tmp_path / "out", workers=1, progress=False)
    assert (tmp_path / "out" / "untrimmed" / "val" / "A02N02-R.npy").is_file()
    vs = load_videos("pku2", str(tmp_path / "out"))
    assert [v.name for v in vs.train] == ["A01N01-L", "A01N04-M"] and [v.name for v in vs.test] == ["A02N02-R"]
    assert vs.num_classes == 52 and sorted(set(vs.test[0].labels.tolist())) == [0, 8, 12]
    assert (vs.test[0].labels > 0).sum() == 70
    with pytest.raises(FileNotFoundError, match="no PKU-MMD II videos"):
        load_videos("pku2", str(tmp_path / "nothing"))
