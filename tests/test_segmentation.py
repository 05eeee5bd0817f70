"""Action segmentation metrics (DeST's Acc, Edit, F1@k) on hand-computed cases, and score-segmentation."""

from __future__ import annotations

import numpy as np
import pytest

from usdrl_bench.cli import main
from usdrl_bench.segmentation.metric import edit_score, get_segments, score_segmentation


def eps_f1(p: float, r: float) -> float:
    """DeST's F1 with its 1e-7 in the denominator."""
    return 200 * p * r / (p + r + 1e-7)


def test_segments_leave_background_out_and_keep_deests_end_quirk():
    s = get_segments([0, 0, 1, 1, 1, 0, 2, 2])
    assert s.labels.tolist() == [1, 2] and s.starts.tolist() == [2, 6]
    assert s.ends.tolist() == [5, 7]  # the first ends where the next run starts; the last at T - 1 = 7, not 8
    assert len(get_segments([0, 0, 0])) == 0
    with pytest.raises(ValueError, match="at least one frame"):
        get_segments([])


def test_edit_score_hand_computed():
    assert edit_score([1, 2, 3], [1, 2, 3]) == 100.0
    assert edit_score([1, 2, 1], [1]) == pytest.approx(100 / 3)  # two insertions over max(3, 1)
    assert edit_score([1, 3], [1, 2]) == 50.0  # one substitution over 2
    assert edit_score([], [1, 2]) == 0.0
    assert edit_score([], []) == 100.0  # nothing to segment, nothing predicted


def test_perfect_prediction():
    y = np.array([0, 0, 1, 1, 1, 0, 2, 2])
    s = score_segmentation({"v": y}, {"v": y})
    assert (s.acc, s.edit) == (100.0, 100.0)
    assert all(v == pytest.approx(eps_f1(1, 1)) for v in s.f1.values())
    assert s.counts[0.5] == (2, 0, 0)


def test_over_segmented_prediction():
    gt = np.ones(10, dtype=int)
    pred = np.array([1, 1, 1, 2, 2, 1, 1, 1, 1, 1])
    s = score_segmentation({"v": pred}, {"v": gt})
    assert s.acc == 80.0
    assert s.edit == pytest.approx(100 / 3)
    # predicted (1, 0-3), (2, 3-5), (1, 5-9) against the ground truth (1, 0-9): IoUs 3/9, 0, 4/9; the
    # third finds the only ground-truth segment already matched at 0.1 and 0.25
    assert s.counts[0.1] == (1, 2, 0) and s.counts[0.25] == (1, 2, 0)
    assert s.counts[0.5] == (0, 3, 1)
    assert s.f1[0.1] == pytest.approx(eps_f1(1 / 3, 1)) and s.f1[0.25] == pytest.approx(eps_f1(1 / 3, 1))
    assert s.f1[0.5] == 0.0


def test_shifted_boundaries():
    gt = np.array([0] * 4 + [1] * 8 + [0] * 4)
    pred = np.array([0] * 6 + [1] * 8 + [0] * 2)
    s = score_segmentation({"v": pred}, {"v": gt})
    assert s.acc == 75.0  # frames 4, 5, 12, 13 wrong
    assert s.edit == 100.0  # the same single segment
    # IoU (min(14, 12) - max(6, 4)) / (max(14, 12) - min(6, 4)) = 6 / 10
    assert s.counts[0.5] == (1, 0, 0)
    shifted_more = np.array([0] * 9 + [1] * 7)
    t = score_segmentation({"v": shifted_more}, {"v": gt})  # IoU (12 - 9) / (15 - 4) = 3 / 11
    assert t.counts[0.25] == (1, 0, 0) and t.counts[0.5] == (0, 1, 1)


def test_background_only_and_empty_predictions():
    bg = np.zeros(6, dtype=int)
    s = score_segmentation({"v": bg}, {"v": bg})
    assert (s.acc, s.edit) == (100.0, 100.0) and all(v == 0.0 for v in s.f1.values())  # nothing to find: no TP
    s = score_segmentation({"v": np.array([0, 3, 3, 0, 0, 0])}, {"v": bg})
    assert s.counts[0.1] == (0, 1, 0) and s.edit == 0.0  # a segment where there is none: a false positive
    gt = np.array([1, 1, 0, 2, 2, 2])
    s = score_segmentation({"v": bg}, {"v": gt})  # nothing predicted
    assert s.acc == pytest.approx(100 / 6) and s.edit == 0.0
    assert s.counts[0.1] == (0, 0, 2) and s.f1[0.1] == 0.0


def test_pooling_over_videos_and_ignored_frames():
    a_gt, a_pred = np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1])
    b_gt, b_pred = np.array([2] * 6 + [255] * 2), np.array([0] * 6 + [2] * 2)
    s = score_segmentation({"a": a_pred, "b": b_pred}, {"a": a_gt, "b": b_gt})
    assert s.num_frames == 10  # the 255 frames are left out
    assert s.acc == 40.0  # 4 of 10 frames, pooled (the per-video mean would be 50)
    assert s.edit == 50.0  # (100 + 0) / 2
    assert s.counts[0.1] == (1, 0, 1)  # counts summed over videos, then F1
    assert s.f1[0.1] == pytest.approx(eps_f1(1, 0.5))
    with pytest.raises(ValueError, match="video b: 3 predicted frames for 8"):
        score_segmentation({"a": a_pred, "b": b_pred[:3]}, {"a": a_gt, "b": b_gt})
    with pytest.raises(ValueError, match="no prediction for 1 video"):
        score_segmentation({"a": a_pred}, {"a": a_gt, "b": b_gt})


def _write(folder, videos):
    folder.mkdir()
    for name, labels in videos.items():
        (folder / f"{name}.txt").write_text("".join(f"{v}\n" for v in labels))


def test_score_segmentation_command_reproduces_the_cases(tmp_path, capsys):
    gt = {"over": [1] * 10, "shift": [0] * 4 + [1] * 8 + [0] * 4}
    pred = {"over": [1, 1, 1, 2, 2, 1, 1, 1, 1, 1], "shift": [0] * 6 + [1] * 8 + [0] * 2}
    _write(tmp_path / "gt", gt)
    _write(tmp_path / "pred", pred)
    assert main(["score-segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]) == 0
    text = capsys.readouterr().out
    expected = score_segmentation({k: np.array(v) for k, v in pred.items()}, {k: np.array(v) for k, v in gt.items()})
    assert expected.acc == pytest.approx(100 * 20 / 26)  # 8 of 10 and 12 of 16 frames, pooled
    for label, value in (("Acc", expected.acc), ("Edit", expected.edit), ("F1@10", expected.f1[0.1]),
                         ("F1@25", expected.f1[0.25]), ("F1@50", expected.f1[0.5])):
        assert f"{label}" in text and f"{value:.2f}" in text, label
    assert "2 videos, 26 frames" in text


@pytest.mark.slow
def test_score_segmentation_command_names_bad_input(tmp_path, capsys):
    _write(tmp_path / "gt", {"v1": [0, 1, 1], "v2": [2, 2]})
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "v1.txt").write_text("0\n1\nx\n")
    (tmp_path / "pred" / "v2.txt").write_text("2\n2\n")
    args = ["score-segmentation", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    assert main(args) == 2
    assert "v1.txt:3: expected one integer frame label per line, got 'x'" in capsys.readouterr().err
    (tmp_path / "pred" / "v1.txt").write_text("0\n1\n")
    assert main(args) == 2
    assert "video v1: 2 predicted frames for 3 ground-truth frames" in capsys.readouterr().err
    (tmp_path / "pred" / "v1.txt").unlink()
    assert main(args) == 2
    assert "no prediction for 1 video(s): v1" in capsys.readouterr().err
    (tmp_path / "pred" / "v1.txt").write_text("0\n1\n1\n")
    (tmp_path / "pred" / "v3.txt").write_text("1\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 prediction file(s)" in err and "have no ground truth" in err and "v3" in err
    (tmp_path / "pred" / "v3.txt").unlink()
    (tmp_path / "pred" / "v2.txt").write_text("2\n-1\n")
    assert main(args) == 2
    assert "v2.txt:2: frame label -1 is negative" in capsys.readouterr().err
