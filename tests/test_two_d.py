"""2-D skeletons: the pyskl HRNet format (built here with its documented keys), the COCO-17 layout, the
synthetic 2-D stand-in, and a 17-joint DSTE that pretrains and evaluates end to end."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from usdrl_bench.cli import main
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.two_d import load_pyskl_2d, load_synthetic_2d, normalise_2d
from usdrl_bench.skeleton import COCO17, bone_stream

pytestmark = pytest.mark.usefixtures("one_thread")


def _annotation(name, label, m, t, rng, h=1080, w=1920):
    return {"frame_dir": name, "label": label, "img_shape": (h, w), "original_shape": (h, w), "total_frames": t,
            "keypoint": (rng.random((m, t, 17, 2)) * [w, h]).astype(np.float32),
            "keypoint_score": rng.random((m, t, 17)).astype(np.float32)}


def _pickle(path, annotations, split):
    path.write_bytes(pickle.dumps({"split": split, "annotations": annotations}))
    return path


def test_coco17_bones_form_a_tree_rooted_at_the_nose():
    children = [c for c, _ in COCO17.bones]
    assert sorted(children) == list(range(1, 17))  # every joint but the nose has exactly one parent
    for joint in range(17):  # following parents always reaches the nose
        seen = set()
        while joint != 0:
            assert joint not in seen
            seen.add(joint)
            joint = dict(COCO17.bones)[joint]
    x = torch.randn(1, 3, 4, 17, 2)
    b = bone_stream(x, COCO17)
    assert torch.equal(b[:, :, :, 9], x[:, :, :, 9] - x[:, :, :, 7])  # left wrist - left elbow
    assert torch.equal(b[:, :, :, 0], torch.zeros_like(b[:, :, :, 0]))


def test_normalise_2d_scales_x_by_width_and_y_by_height_for_every_joint():
    kp = np.zeros((1, 2, 17, 2), np.float32)
    kp[0, :, :, 0] = 960.0  # x
    kp[0, :, :, 1] = 270.0  # y
    score = np.full((1, 2, 17), 0.8, np.float32)
    out = normalise_2d(kp, score, (1080, 1920), "score", normalization="image")
    assert out.shape == (3, 2, 17, 2)
    np.testing.assert_allclose(out[0, :, :, 0], 0.5)   # every joint, not only joints 0 and 1 (FSM's bug)
    np.testing.assert_allclose(out[1, :, :, 0], 0.25)
    np.testing.assert_allclose(out[2, :, :, 0], 0.8)
    assert not out[:, :, :, 1].any()  # one body: a zero second body
    assert not normalise_2d(kp, score, (1080, 1920), "zero", normalization="image")[2].any()
    three = np.concatenate([kp, kp * 0.5, kp * 0.25])
    scores = np.stack([np.full((2, 17), s, np.float32) for s in (0.2, 0.9, 0.5)])
    kept = normalise_2d(three, scores, (1080, 1920), normalization="image")  # the two surest bodies, in their order
    np.testing.assert_allclose(kept[2, 0, 0], [0.9, 0.5])
    with pytest.raises(ValueError, match="img_shape"):
        normalise_2d(kp, score, (0, 1920))
    with pytest.raises(ValueError, match="normalization must be one of body, image"):
        normalise_2d(kp, score, (1080, 1920), normalization="pixels")


def test_body_normalization_centres_on_the_first_mid_hip_in_torso_units():
    """Hand-built: body 0 absent in frame 0; in frames 1 and 2 its hips are at (100, 400) and (120, 400),
    shoulders 200 px above (torso 200, then 200): origin the frame-1 mid-hip (110, 400), unit 200 px. A second
    body in the same units; frame 0 stays zero."""
    kp = np.zeros((2, 3, 17, 2), np.float32)
    for t in (1, 2):
        kp[0, t] = [300.0 + 10 * t, 250.0]  # every joint somewhere
        kp[0, t, 11], kp[0, t, 12] = [100.0 + 10 * (t - 1), 400.0], [120.0 + 10 * (t - 1), 400.0]  # hips
        kp[0, t, 5], kp[0, t, 6] = [100.0 + 10 * (t - 1), 200.0], [120.0 + 10 * (t - 1), 200.0]  # shoulders
    kp[1, 2] = [510.0, 600.0]
    out = normalise_2d(kp, None, (1080, 1920), "zero", normalization="body")
    assert not out[:, 0].any()  # no body in frame 0
    np.testing.assert_allclose(out[:2, 1, 11, 0], [(100 - 110) / 200, 0.0])
    np.testing.assert_allclose(out[:2, 2, 12, 0], [(130 - 110) / 200, 0.0])
    np.testing.assert_allclose(out[:2, 2, 5, 0], [(110 - 110) / 200, -1.0])  # the shoulders one unit above
    np.testing.assert_allclose(out[:2, 1, 0, 0], [(310 - 110) / 200, (250 - 400) / 200])
    np.testing.assert_allclose(out[:2, 2, 3, 1], [(510 - 110) / 200, (600 - 400) / 200])
    assert not out[:, 1, :, 1].any()  # the second body is absent in frame 1
    flat = np.zeros((1, 2, 17, 2), np.float32)
    flat[0] = [540.0, 270.0]  # every joint on one point: no torso, the image height is the unit
    np.testing.assert_allclose(normalise_2d(flat, None, (1080, 1920), normalization="body")[:2], 0.0)
    assert not normalise_2d(np.zeros((1, 2, 17, 2)), None, (1080, 1920))[:2].any()  # no body at all


def test_pyskl_2d_reader(tmp_path):
    rng = np.random.default_rng(0)
    anns = [_annotation(f"S001C001P00{i}R001A00{i % 3 + 1}", i % 3, 1 + i % 2, 20 + i, rng) for i in range(6)]
    split = {"xsub_train": [a["frame_dir"] for a in anns[:4]], "xsub_val": [a["frame_dir"] for a in anns[4:]]}
    path = _pickle(tmp_path / "ntu60_hrnet.pkl", anns, split)
    train, test = load_pyskl_2d(path, "xsub", cache_dir=tmp_path / "cache", normalization="image")
    assert train.data.shape == (4, 3, 25, 17, 2) and len(test) == 2 and train.layout == "coco17"
    assert train.num_frames.tolist() == [20, 21, 22, 23] and train.labels.tolist() == [0, 1, 2, 0]
    a = anns[1]  # two bodies
    np.testing.assert_allclose(train.data[1, 0, :21, :, 1], a["keypoint"][1, :, :, 0] / 1920, rtol=1e-6)
    np.testing.assert_allclose(train.data[1, 1, :21, :, 0], a["keypoint"][0, :, :, 1] / 1080, rtol=1e-6)
    np.testing.assert_allclose(train.data[1, 2, :21, :, 0], a["keypoint_score"][0], rtol=1e-6)
    zero, _ = load_pyskl_2d(path, "xsub", padding="zero", cache_dir=tmp_path / "cache", normalization="image")
    assert not np.asarray(zero.data[:, 2]).any()
    body, _ = load_pyskl_2d(path, "xsub", cache_dir=tmp_path / "cache")  # the default, cached apart
    np.testing.assert_allclose(body.data[1, :2, :21, :, 0],
                               normalise_2d(a["keypoint"], a["keypoint_score"], (1080, 1920))[:2, :21, :, 0], rtol=1e-6)
    assert not np.allclose(body.data[1, 0, :21, :, 0], train.data[1, 0, :21, :, 0])
    # format errors name the sample
    bad = [dict(a) for a in anns]
    bad[2]["keypoint"] = bad[2]["keypoint"][..., :1]
    with pytest.raises(DataFormatError, match=r"annotation 2 \(S001C001P002R001A003\): keypoint shape"):
        load_pyskl_2d(_pickle(tmp_path / "bad.pkl", bad, split), "xsub", cache_dir=tmp_path / "c2")
    with pytest.raises(DataFormatError, match="split keys"):
        load_pyskl_2d(path, "xset", cache_dir=tmp_path / "c3")


def test_synthetic_2d_projection():
    train, test = load_synthetic_2d(None, "xsub", num_classes=3, samples_per_class_subject_camera=1,
                                    normalization="image")
    assert train.data.shape[1:] == (3, 80, 17, 2) and train.layout == "coco17"
    x = np.asarray(train.data)
    valid = x[:, 2] > 0  # tracked joints: score 1
    assert valid.any() and np.all((x[:, 0][valid] > 0) & (x[:, 0][valid] < 1) & (x[:, 1][valid] > 0) & (x[:, 1][valid] < 1))
    head_above_ankles = x[:, 1, :, 0, 0] < x[:, 1, :, 15, 0]  # image y grows downwards
    assert head_above_ankles[valid[:, :, 0, 0] & valid[:, :, 15, 0]].mean() > 0.95


PROTOCOL = """\
name: twod_tiny
version: 1
paper_table: J-transfer
rows:
  - {id: D, label: "DSTE MG-FD", encoder: dste, objective: mgfd}
  - {id: S, label: "STTR MG-FD", encoder: sttr, objective: mgfd, stream: bone}
presets:
  demo:
    dataset: {name: synthetic_2d, split: xsub, options: {num_classes: 4, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations: {knn: {k: 1}, linear: {epochs: 3, batch_size: 32, lr: 1.0, milestones: [], eval_every: 1}}
"""


@pytest.mark.slow
def test_a_17_joint_dste_pretrains_and_evaluates_end_to_end(tmp_path):
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    results = tmp_path / "results"
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "r"),
                 "--device", "cpu", "--jobs", "1"]) == 0
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {(r["row_id"], r["metric"]) for r in rows} >= {("D", "knn1_top1"), ("D", "linear_top1"), ("S", "knn1_top1")}
    config = json.loads((results / "checkpoints" / rows[0]["checkpoint_hash"] / "config.json").read_text())
    encoder_config = config["encoder_config"]
    assert (encoder_config["num_joints"], encoder_config["num_bodies"], encoder_config["in_channels"]) == (17, 2, 3)


def test_synthetic_2d_body_normalization_by_default():
    train, _ = load_synthetic_2d(None, "xsub", num_classes=3, samples_per_class_subject_camera=1)
    x = np.asarray(train.data)
    first = x[:, :2, 0, [11, 12], 0].mean(axis=2)  # mid-hip of the first body in the first frame
    np.testing.assert_allclose(first, 0.0, atol=1e-5)
    torso = np.linalg.norm(x[:, :2, :, [5, 6], 0].mean(axis=-1) - x[:, :2, :, [11, 12], 0].mean(axis=-1), axis=1)
    frames = train.num_frames
    medians = [np.median(torso[i, :frames[i]]) for i in range(len(x))]
    np.testing.assert_allclose(medians, 1.0, rtol=1e-4)
