"""Detection pipeline: windows, frame-probability merging, dense features, proposals, untrimmed videos,
and the detection protocol end to end (records, proposal files, the score-detection CLI, the timeline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from usdrl_bench.detection.frames import (
    activity_proposals,
    dense_frame_features,
    make_windows,
    merge_windows,
    moving_mean,
    per_class_proposals,
    segments_from_labels,
    window_starts,
)
from usdrl_bench.detection.videos import Video, generate_untrimmed


def test_windows_tile_every_frame_in_order():
    assert window_starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]  # the last one ends at frame 100
    assert window_starts(20, 32, 8) == [0]
    with pytest.raises(ValueError):
        window_starts(10, 0, 1)
    video = Video("v", np.random.default_rng(0).standard_normal((3, 40, 25, 2)).astype(np.float32), np.arange(40) % 3)
    x, y, where = make_windows([video], 16, 12)
    assert [s for _, s in where] == [0, 12, 24] and x.shape == (3, 3, 16, 25, 2)
    np.testing.assert_array_equal(x[2], video.joints[:, 24:40])
    np.testing.assert_array_equal(y[1], video.labels[12:28])
    short, ys, _ = make_windows([Video("s", video.joints[:, :10], video.labels[:10])], 16, 8)
    assert (ys[0, 10:] == -1).all() and not short[0, :, 10:].any()  # padding is labelled -1


def test_merge_averages_overlapping_windows():
    probs = np.zeros((2, 4, 2), dtype=np.float32)
    probs[0, :, 0] = 1.0  # window at 0 says class 0
    probs[1, :, 1] = 1.0  # window at 2 says class 1
    merged = merge_windows(6, [0, 2], probs)
    np.testing.assert_allclose(merged[:, 0], [1, 1, 0.5, 0.5, 0, 0])
    with pytest.raises(ValueError, match="no window"):
        merge_windows(8, [0, 2], probs)


def test_dense_frame_features_concatenate_pooled_spatial_tokens():
    from usdrl_bench.encoders import create_encoder

    enc = create_encoder("dste", "tiny").eval()
    x = torch.randn(2, 3, enc.num_frames, 25, 2)
    with torch.no_grad():
        f = dense_frame_features(enc, x)
        t, s = enc.forward_dense(x)
    assert f.shape == (2, enc.num_frames, 2 * enc.hidden_size)
    torch.testing.assert_close(f[..., : enc.hidden_size], t)
    # M·V = 50 spatial tokens pooled to T = 16 frames: adaptive pooling windows [floor(i·50/16), ceil((i+1)·50/16))
    i = 5
    lo, hi = (i * 50) // 16, -(-((i + 1) * 50) // 16)
    torch.testing.assert_close(f[:, i, enc.hidden_size:], s[:, lo:hi].mean(dim=1))


def test_activity_proposals_by_hand():
    probs = np.zeros((12, 3), dtype=np.float32)
    probs[:, 0] = 1.0
    probs[3:7] = [0.1, 0.7, 0.2]  # an action of class 1 on frames 3-6
    probs[9:11] = [0.3, 0.1, 0.6]  # class 2 on frames 9-10
    (a, b) = activity_proposals(probs, smooth=0, threshold=0.5)
    assert (a.label, a.start, a.end) == (1, 3, 7) and a.confidence == pytest.approx(0.7)
    assert (b.label, b.start, b.end) == (2, 9, 11) and b.confidence == pytest.approx(0.6)
    # smoothing over 3 frames spreads the activity: frame 2 gets (0 + 0 + 0.9) / 3 = 0.3 < 0.5, frame 3 0.6
    smoothed = moving_mean(1 - probs[:, :1], 1)[:, 0]
    assert smoothed[2] == pytest.approx(0.3) and smoothed[3] == pytest.approx(0.6)
    assert smoothed[0] == pytest.approx(0.0) and smoothed[11] == pytest.approx((0.7 + 0.0) / 2)  # shrunk at the ends


def test_per_class_proposals_by_hand():
    probs = np.full((8, 3), 0.01, dtype=np.float32)
    probs[1:3, 1] = [0.5, 0.3]
    probs[5, 1] = 0.04
    probs[2:6, 2] = 0.1
    props = per_class_proposals(probs, threshold=0.02)
    assert [(p.label, p.start, p.end) for p in props] == [(1, 1, 3), (1, 5, 6), (2, 2, 6)]
    assert props[0].confidence == pytest.approx(0.4)


def test_ground_truth_from_frame_labels():
    labels = np.array([0, 0, 3, 3, 3, 0, 5, 5, 2])
    assert [(s.label, s.start, s.end) for s in segments_from_labels(labels)] == [(3, 2, 5), (5, 6, 8), (2, 8, 9)]


def test_synthetic_untrimmed_videos():
    videos = generate_untrimmed(seed=1, num_classes=4, num_videos=4, actions_per_video=3)
    again = generate_untrimmed(seed=1, num_classes=4, num_videos=4, actions_per_video=3)
    assert len(videos.train) == len(videos.test) == 2 and videos.num_classes == 5
    for v, w in zip(videos.train + videos.test, again.train + again.test):
        np.testing.assert_array_equal(v.joints, w.joints)
        segments = segments_from_labels(v.labels)
        assert len(segments) == 3 and v.labels[0] == 0 and v.labels[-1] == 0  # background opens and closes
        assert set(v.labels) <= set(range(5))
        np.testing.assert_allclose(v.joints[:, :, 1, 0], 0, atol=1e-5)  # centred on the spine joint per frame


TINY_DETECTION = """\
name: tiny_detection
version: 1
paper_table: "4"
rows:
  - {id: DSTE, label: "USDRL (DSTE)", encoder: dste, objective: mgfd, paper: {method: USDRL, encoder: DSTE}}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {seed: 0, num_classes: 3, samples_per_class_subject_camera: 1},
              paper_setting: pku1_xsub}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      detection:
        data: {name: synthetic_untrimmed, options: {seed: 0, num_classes: 3, num_videos: 4, actions_per_video: 2}}
        head: {head}
        epochs: 3
        lr: 0.1
        proposals: {proposals}
        threshold: 0.3
"""


@pytest.mark.slow
@pytest.mark.parametrize("head,proposals", [("linear", "activity"), ("finetune", "per_class")])
def test_detection_protocol_end_to_end(tmp_path, capsys, head, proposals):
    from usdrl_bench.cli import main
    from usdrl_bench.detection.metric import evaluate_detection, read_segments

    path = tmp_path / "det.yaml"
    path.write_text(TINY_DETECTION.replace("{head}", head).replace("{proposals}", proposals))
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(path), "--results", str(results), "--reports", str(reports), "--device", "cpu"]) == 0
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    values = {r["metric"]: r["value"] for r in rows}
    assert {"map_action@0.5", "map_video@0.5", "voc_map_action@0.5", "ap_2d", "frame_top1"} <= set(values)
    assert all(0 <= v <= 100 for v in values.values())
    folder = results / rows[0]["artifact"]
    truth = {p.stem: read_segments(p) for p in (folder / "truth").glob("*.txt")}
    preds = {p.stem: read_segments(p) for p in (folder / "proposals").glob("*.txt")}
    assert len(truth) == 2 and all(len(t) == 2 for t in truth.values())
    # the proposal files score to the recorded numbers (mAP_a over the 3 classes)
    scores = evaluate_detection(preds, truth, num_actions=3)
    assert 100 * scores.map_action == pytest.approx(values["map_action@0.5"], abs=1e-3)
    assert 100 * scores.map_video == pytest.approx(values["map_video@0.5"], abs=1e-3)
    capsys.readouterr()
    assert main(["score-detection", "--gt", str(folder / "truth"), "--pred", str(folder / "proposals"), "--num-actions", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"{values['map_video@0.5']:.2f}" in printed and "VOC-style" in printed
    assert (reports / "tiny_detection__demo__timeline.png").is_file()
    md = (reports / "tiny_detection__demo.md").read_text()
    assert "75.7 (" in md  # the paper's DSTE mAP_a beside ours
