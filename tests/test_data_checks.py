"""Data too small or too odd to mean anything: refused before any training, or warned about in the run, the
records and the report, beside the number (:mod:`usdrl_bench.data.checks`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from usdrl_bench.cli import main
from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.checks import MIN_TEST_SAMPLES, check_pretraining, check_split
from usdrl_bench.records import load_records

REAL_NWUCLA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nwucla" / "all_sqe"


def _arrays(labels: list[int], frames: int = 20, num_classes: int | None = None) -> SkeletonArrays:
    n = len(labels)
    return SkeletonArrays(data=np.zeros((n, 3, frames, 25, 2), np.float32), labels=np.array(labels),
                          num_frames=np.full(n, frames), meta=pd.DataFrame({c: np.zeros(n, int) for c in ("subject", "camera", "setup", "repetition")}),
                          names=[f"s{i}" for i in range(n)], num_classes=num_classes or max(labels) + 1, layout="ntu25")


def test_check_split_refuses_what_cannot_mean_anything():
    with pytest.raises(ValueError, match=r"s: every training label is the same \(3 samples, class \[2\]\)"):
        check_split(_arrays([2, 2, 2]), _arrays([0, 1, 2] * 20), "s")
    with pytest.raises(ValueError, match=r"s: 1 test sample\(s\): a top-1 would be 0 or 100 %"):
        check_split(_arrays([0, 1]), _arrays([0]), "s")


def test_check_split_warns_by_hand_counted_thresholds():
    fine = check_split(_arrays([0, 1, 2] * 20), _arrays([0, 1, 2] * 10), "s")
    assert fine == []  # 30 test samples, every class in both parts
    small = check_split(_arrays([0, 1, 2] * 20), _arrays([0, 1, 2] * 9 + [0, 1]), "s")
    assert small == [f"only 29 test samples (each moves top-1 by {100 / 29:.1f} points)"]
    assert MIN_TEST_SAMPLES == 30
    odd = check_split(_arrays([0, 1], num_classes=5), _arrays([0, 1, 3] * 10, num_classes=5), "s")
    assert odd == ["fewer training samples (2) than classes (5)",
                   "1 test class(es) never seen in training (3): they cannot be predicted"]
    untested = check_split(_arrays([0, 1, 2] * 5), _arrays([0, 1] * 15), "s")
    assert untested == ["1 class(es) missing from the test part (2)"]


def test_check_pretraining_warns_on_odd_schedules():
    data = _arrays([0, 1] * 5, frames=10)
    assert check_pretraining(data, "p", batch_size=16, view_frames=None) == [
        "the pretraining batch (16) is larger than the training part (10 samples): each epoch is one batch of all of it"]
    assert check_pretraining(data, "p", batch_size=4, view_frames=40) == []  # 10 >= 40 / 4
    assert check_pretraining(data, "p", batch_size=4, view_frames=41) == [
        "the median sequence (10 frames) is under 25% of the 41-frame views: each frame is stretched over several"]


@pytest.mark.skipif(not REAL_NWUCLA.is_dir(), reason="NW-UCLA is not under ../shared/data/nwucla")
def test_a_two_file_nwucla_folder_is_refused_not_scored_100(tmp_path, capsys):
    folder = tmp_path / "nwucla" / "all_sqe"
    folder.mkdir(parents=True)
    for name in ("a01_s01_e00_v01.json", "a01_s01_e00_v03.json"):  # one training view, one test view
        shutil.copy(REAL_NWUCLA / name, folder / name)
    results = tmp_path / "results"
    assert main(["run", "nwucla", "--data-root", str(tmp_path), "--results", str(results), "--rows", "R-DSTE"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "dataset nwucla_xview/xview (" in err and str(tmp_path) in err, err
    assert "every training label is the same (1 sample, class [0]): there is nothing to classify" in err, err
    assert not (results / "records").exists()  # no record of any number


def test_a_small_test_set_is_warned_about_in_the_run_the_records_and_the_report(tiny_protocol, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    # 3 classes x 4 subjects x 3 cameras, one sample each: 18 training and 18 test samples
    path.write_text(tiny_protocol("warned", ("R-DSTE",), dataset="seed: 0, num_classes: 3, num_subjects: 4, "
                                                                 "samples_per_class_subject_camera: 1"))
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(path), "--results", str(results), "--reports", str(reports), "--jobs", "1"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning: only 18 test samples (each moves top-1 by 5.6 points)" in err, err
    records = load_records(results)
    assert set(records["data_warnings"]) == {"only 18 test samples (each moves top-1 by 5.6 points)"}
    report = next(reports.rglob("warned__demo.md")).read_text()
    assert "⚠ Data warnings" in report and "only 18 test samples" in report
    knn_line = next(line for line in report.splitlines() if line.startswith("| R-DSTE"))
    assert "⚠" in knn_line, knn_line
