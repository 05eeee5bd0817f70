"""The PKU-MMD detection metrics on hand-built cases whose AP is worked out by hand in the comments."""

from __future__ import annotations

import pytest

from usdrl_bench.detection.metric import (
    Segment,
    evaluate_detection,
    official_ap,
    overlap,
    score_folders,
    voc_ap,
    voc_map,
)

S = Segment
GT = [S(1, 0, 100)]


def test_overlap_has_no_plus_one_and_needs_same_label_and_video():
    assert overlap(S(1, 20, 120), S(1, 0, 100)) == pytest.approx(80 / 120)
    assert overlap(S(2, 0, 100), S(1, 0, 100)) == 0 and overlap(S(1, 0, 100, video="a"), S(1, 0, 100, video="b")) == 0


def test_perfect_detections():
    gt = {"v": [S(1, 0, 100), S(2, 200, 300)]}
    pred = {"v": [S(1, 0, 100, 0.9), S(2, 200, 300, 0.8)]}
    scores = evaluate_detection(pred, gt)
    # one proposal per class: start (P, R) = (1, 1); removing it leaves (0, 0): AP = 1 x 1
    assert scores.per_class[1] == scores.per_class[2] == 1.0
    assert scores.map_action == pytest.approx(2 / 51)  # the divisor is 51, absent classes count 0
    assert scores.map_video == 1.0 and scores.ap == 1.0 and scores.f1 == 1.0 and scores.ap_2d == 1.0
    assert voc_map(pred, gt) == 1.0


def test_shifted_proposal():
    assert official_ap([S(1, 40, 140, 0.9)], GT) == 0.0  # overlap 60/140 < 0.5
    assert official_ap([S(1, 20, 120, 0.9)], GT) == 1.0  # overlap 80/120 = 0.667
    # 2D-AP: matched for theta = 0.05 ... 0.65 (13 of 20 thresholds)
    scores = evaluate_detection({"v": [S(1, 20, 120, 0.9)]}, {"v": GT})
    assert scores.ap_2d == pytest.approx(13 / 20)
    # VOC-style IoU counts frames inclusively: 81 / 121
    assert voc_ap([S(1, 20, 120, 0.9)], GT, iou=0.669) == 1.0 and voc_ap([S(1, 20, 120, 0.9)], GT, iou=0.67) == 0.0


def test_split_detection():
    # (0, 60) overlaps 0.6 (matched), (60, 100) 0.4 (not). Start (P, R) = (1/2, 1). Ascending: removing the
    # unmatched 0.8 changes nothing (the script skips it); removing the matched 0.9 leaves (0, 0):
    # AP = max precision so far (1/2) x recall drop 1 = 0.5. VOC-style: TP then FP, AP = 1.
    pred = [S(1, 0, 60, 0.9), S(1, 60, 100, 0.8)]
    assert official_ap(pred, GT) == pytest.approx(0.5)
    assert voc_ap(pred, GT) == pytest.approx(1.0)


def test_duplicate_detections():
    # both match the one GT: start (1/2, 1); remove 0.8: GT still detected, (1/1, 1), max P = 1, no recall
    # drop; remove 0.9: (0, 0), AP += 1 x 1 -> 1. VOC-style: TP, FP -> 1.
    pred = [S(1, 0, 100, 0.9), S(1, 0, 100, 0.8)]
    assert official_ap(pred, GT) == 1.0
    assert voc_ap(pred, GT) == 1.0
    # three GTs, each found twice except one: positive 2 of 3 GTs, 4 proposals
    gt = [S(1, 0, 100), S(1, 200, 300), S(1, 400, 500)]
    pred = [S(1, 0, 100, 0.9), S(1, 0, 100, 0.1), S(1, 200, 300, 0.5), S(1, 200, 300, 0.2)]
    # start (2/4, 2/3); remove 0.1: (2/3, 2/3) maxP 2/3, no drop; 0.2: (2/2, 2/3) maxP 1, no drop;
    # 0.5: (1/1, 1/3) AP += 1 x 1/3; 0.9: (0, 0) AP += 1 x 1/3 -> 2/3
    assert official_ap(pred, gt) == pytest.approx(2 / 3)
    # VOC: 0.9 TP, 0.5 TP, 0.2 FP, 0.1 FP -> P = 1 up to R = 2/3 -> AP 2/3
    assert voc_ap(pred, gt) == pytest.approx(2 / 3)


def test_wrong_class_and_empty_predictions():
    scores = evaluate_detection({"v": [S(2, 0, 100, 0.9)]}, {"v": GT})
    assert scores.map_action == 0.0 and scores.map_video == 0.0 and scores.per_class[2] == 0.0
    assert voc_map({"v": [S(2, 0, 100, 0.9)]}, {"v": GT}) == 0.0  # the mean runs over class 1 only
    empty = evaluate_detection({"v": []}, {"v": GT})
    assert empty.map_action == 0.0 and empty.map_video == 0.0 and empty.ap == 0.0 and empty.f1 == 0.0
    assert official_ap([], []) == 0.0 and voc_ap([S(1, 0, 10, 1)], []) == 0.0
    # mAP_v runs over the videos scored (those with a proposal list): an unscored video does not count
    two = evaluate_detection({"a": [S(1, 0, 100, 0.9)]}, {"a": GT, "b": [S(3, 0, 50)]})
    assert two.map_video == 1.0 and two.per_class[3] == 0.0 and two.map_action == pytest.approx(1 / 51)
    with pytest.raises(KeyError, match="no ground truth"):
        evaluate_detection({"c": []}, {"a": GT})


def test_ties_in_confidence_keep_the_input_order():
    gt = [S(1, 0, 100), S(1, 200, 300)]
    a, b, c = S(1, 0, 100, 0.5), S(1, 500, 600, 0.5), S(1, 200, 300, 0.9)  # a TP, b FP, c TP
    # order a, b, c: start (2/3, 1); remove a: (1/2, 1/2), maxP 2/3, AP += 2/3 x 1/2; remove b: skipped;
    # remove c: (0, 0), AP += 2/3 x 1/2 -> 2/3
    assert official_ap([a, b, c], gt) == pytest.approx(2 / 3)
    # order b, a, c: remove b: skipped; remove a: (1/1, 1/2), maxP 1, AP += 1/2; remove c: AP += 1/2 -> 1
    assert official_ap([b, a, c], gt) == pytest.approx(1.0)
    # VOC-style (descending, stable): c, a, b -> TP TP FP -> 1; c, b, a -> TP FP TP -> 1/2 + 1/2 x 2/3
    assert voc_ap([a, b, c], gt) == pytest.approx(1.0)
    assert voc_ap([b, a, c], gt) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_score_folders_reads_the_official_format(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt" / "0291-L.txt").write_text("1,0,100,1\n2,200,300,2\n")
    (tmp_path / "gt" / "0292-L.txt").write_text("3,0,50,1\n")
    (tmp_path / "pred" / "0291-L.txt").write_text("1,0,100,0.9\n2,210,300,0.8\n")
    scores, voc, without = score_folders(tmp_path / "gt", tmp_path / "pred")
    assert scores.map_video == 1.0 and without == ["0292-L"] and voc == pytest.approx(1.0)
    (tmp_path / "pred" / "0291-L.txt").write_text("1,0,100\n")
    from usdrl_bench.data.errors import DataFormatError

    with pytest.raises(DataFormatError, match="0291-L.txt:1"):
        score_folders(tmp_path / "gt", tmp_path / "pred")
