"""Tests of the embedded synthetic dataset: determinism, layout, splits, normalisation, difficulty."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usdrl_bench.data.augment import resize_valid
from usdrl_bench.data.preprocess import pre_normalization
from usdrl_bench.data.synthetic.generator import (
    CLASS_NAMES,
    INTERACTION_CLASSES,
    generate_synthetic,
    load_synthetic,
)
from usdrl_bench.registry import DATASETS
from usdrl_bench.skeleton import NTU25

SMALL = dict(num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)


@pytest.fixture(scope="module")
def full():
    """The default dataset, all samples (1,710)."""
    return generate_synthetic()


@pytest.fixture(scope="module")
def xsub():
    return load_synthetic(None, "xsub")


def valid_mask(arrays) -> np.ndarray:
    """``(N, T)`` True on valid frames."""
    return np.arange(arrays.data.shape[2])[None, :] < arrays.num_frames[:, None]


def test_deterministic_bit_for_bit():
    a = generate_synthetic(seed=3, **SMALL)
    b = generate_synthetic(seed=3, **SMALL)
    c = generate_synthetic(seed=4, **SMALL)
    assert a.data.tobytes() == b.data.tobytes()
    assert np.array_equal(a.num_frames, b.num_frames) and a.names == b.names
    assert not np.array_equal(a.data, c.data)
    # labels / metadata do not depend on the seed, the motions do
    assert np.array_equal(a.labels, c.labels) and a.meta.equals(c.meta)


def test_shapes_dtype_and_metadata(full):
    n = 19 * 10 * 3 * 3  # classes x subjects x cameras x samples per (class, subject, camera)
    assert full.data.shape == (n, 3, 80, 25, 2) and full.data.dtype == np.float32
    assert full.labels.dtype == np.int64 and full.num_frames.dtype == np.int64
    assert full.layout == "ntu25" and full.num_classes == 19
    assert full.class_names == list(CLASS_NAMES[:19]) and len(set(CLASS_NAMES)) == len(CLASS_NAMES) == 133
    assert set(full.meta["subject"]) == set(range(1, 11)) and set(full.meta["camera"]) == {1, 2, 3}
    assert set(full.meta["setup"]) == {1} and set(full.meta["repetition"]) == {1, 2}
    assert len(set(full.names)) == n
    assert np.isfinite(full.data).all()
    assert np.bincount(full.labels).tolist() == [90] * 19


def test_num_frames_and_zero_padding(full):
    assert full.num_frames.min() >= 30 and full.num_frames.max() <= 80
    assert full.num_frames.max() - full.num_frames.min() > 30  # lengths vary
    valid = valid_mask(full)
    assert not full.data.transpose(0, 2, 1, 3, 4)[~valid].any()  # zero beyond num_frames
    # body 0 is present in every valid frame (most joints non-zero)
    present = (full.data[:, :, :, :, 0] != 0).any(axis=1).sum(axis=-1)  # N, T: non-zero joints
    assert (present[valid] >= 20).all()


def test_second_body_only_for_interactions(full):
    has_b = (full.data[..., 1] != 0).reshape(len(full), -1).any(axis=1)
    interaction = np.isin(full.labels, INTERACTION_CLASSES)
    assert interaction.any()
    assert np.array_equal(has_b, interaction)
    assert [CLASS_NAMES[c] for c in INTERACTION_CLASSES[:2]] == ["walk towards each other", "walk apart from each other"]


def test_ntu_normalisation(full):
    d = full.data
    valid = valid_mask(full)
    # centred on joint 1 (middle of spine) of body 0 in every frame (where it was not dropped)
    centre = d[:, :, :, NTU25.center, 0].transpose(0, 2, 1)[valid]
    assert np.abs(centre).max() < 1e-5
    # shoulders of body 0 along +x in frame 0
    shoulders = d[:, :, 0, NTU25.right_shoulder, 0] - d[:, :, 0, NTU25.left_shoulder, 0]
    assert (shoulders[:, 0] > 0.1).all()
    assert np.abs(shoulders[:, 1:]).max() < 1e-5
    # equals the package's pre_normalization (without the repeat-padding) of the filmed data
    raw = generate_synthetic(normalize=False, **SMALL)
    ref = pre_normalization(raw.data, NTU25, pad=False)
    np.testing.assert_allclose(generate_synthetic(**SMALL).data, ref, atol=1e-5)


def test_plausible_bones(full):
    d = full.data[:, :, :, :, 0]
    valid = valid_mask(full)
    lengths = {}
    for child, parent in NTU25.bones:
        if child == parent:
            continue
        present = (d != 0).any(axis=1)  # N, T, V: not dropped out
        present[:, :, NTU25.center] = True  # joint 1 is the origin after centring
        both = present[:, :, child] & present[:, :, parent] & valid
        bone = np.linalg.norm(d[:, :, :, child] - d[:, :, :, parent], axis=1)  # N, T
        lengths[NTU25.joint_names[child]] = bone[both]
    assert 0.20 < np.median(lengths["left elbow"]) < 0.36  # upper arm
    assert 0.32 < np.median(lengths["right knee"]) < 0.52  # thigh
    assert 0.30 < np.median(lengths["left ankle"]) < 0.50  # shin
    for name, values in lengths.items():
        assert 0.02 < np.median(values) < 0.6, name
    # segment lengths are constant within a sequence: only the joint noise moves them
    clean = generate_synthetic(noise_std=0.0, missing_prob=0.0, **SMALL)
    for i in range(len(clean)):
        seq = clean.data[i, :, : clean.num_frames[i], :, 0]
        forearm = np.linalg.norm(seq[:, :, 10] - seq[:, :, 9], axis=0)
        assert forearm.std() < 1e-5 * forearm.mean()


def _energy(arrays, label: int, joint: int) -> float:
    """Median over samples of the summed per-axis std of ``joint`` of body 0 over valid frames."""
    out = []
    for i in np.flatnonzero(arrays.labels == label)[:40]:
        seq = arrays.data[i, :, : arrays.num_frames[i], joint, 0]
        seq = seq[:, (seq != 0).any(axis=0)]  # skip dropped-out frames
        out.append(seq.std(axis=1).sum())
    return float(np.median(out))


def test_classes_move_the_named_limbs():
    """Motion energy per joint (without sensor noise, which adds the same energy to every joint):
    waving moves the named hand, kicking the named foot."""
    r_hand, l_hand, r_foot, l_foot = 11, 7, 19, 15
    every = generate_synthetic(num_subjects=2, num_cameras=1, samples_per_class_subject_camera=4, noise_std=0.0)
    wave_r, wave_l = CLASS_NAMES.index("wave right hand"), CLASS_NAMES.index("wave left hand")
    assert _energy(every, wave_r, r_hand) > 3 * _energy(every, wave_r, l_hand)
    assert _energy(every, wave_l, l_hand) > 3 * _energy(every, wave_l, r_hand)
    kick_r, kick_l = CLASS_NAMES.index("kick with right leg"), CLASS_NAMES.index("kick with left leg")
    assert _energy(every, kick_r, r_foot) > 3 * _energy(every, kick_r, l_foot)
    assert _energy(every, kick_l, l_foot) > 3 * _energy(every, kick_l, r_foot)


def test_splits(full, xsub):
    for split, column, train_values, test_values in (
        ("xsub", "subject", {1, 3, 5, 7, 9}, {2, 4, 6, 8, 10}),
        ("xview", "camera", {2, 3}, {1}),
    ):
        train, test = xsub if split == "xsub" else load_synthetic(None, split)
        assert set(train.meta[column]) == train_values and set(test.meta[column]) == test_values
        assert not set(train.names) & set(test.names)
        assert len(train) + len(test) == len(full)
        assert set(train.labels) == set(test.labels) == set(range(19))
        assert train.source == test.source == "synthetic(seed=0)"


def test_setups_and_xset_split():
    kw = dict(num_classes=4, num_subjects=4, num_cameras=2, samples_per_class_subject_camera=2)
    one = generate_synthetic(**kw)
    two = generate_synthetic(num_setups=2, **kw)
    # sample i of (class c, subject p) is in setup 1 + (c + p + i) mod 2, and its name says so
    labels, subjects = two.labels, two.meta["subject"].to_numpy()
    within = np.array([int(n.rsplit("_", 1)[1]) for n in two.names])
    np.testing.assert_array_equal(two.meta["setup"].to_numpy(), 1 + (labels + subjects + within) % 2)
    assert all(n.startswith(f"S{s:03d}") for n, s in zip(two.names, two.meta["setup"]))
    assert set(one.meta["setup"]) == {1}
    # setup 1 is the reference rig and no other draw moves: its samples are those of the 1-setup data;
    # setup 2's rig turns the cameras, so its samples differ
    in_one = two.meta["setup"].to_numpy() == 1
    np.testing.assert_array_equal(two.data[in_one], one.data[in_one])
    assert not np.allclose(two.data[~in_one], one.data[~in_one], atol=1e-3)
    np.testing.assert_array_equal(two.num_frames, one.num_frames)
    # xset: even setups train, odd test; every class and subject on both sides
    train, test = load_synthetic(None, "xset", num_setups=2, **kw)
    assert set(train.meta["setup"]) == {2} and set(test.meta["setup"]) == {1}
    assert len(train) + len(test) == len(two)
    assert set(train.labels) == set(test.labels) == set(range(4))
    assert set(train.meta["subject"]) == set(test.meta["subject"]) == {1, 2, 3, 4}


def test_registry_and_errors():
    entry = DATASETS.entry("synthetic")
    assert entry.obj is load_synthetic
    assert entry.meta["splits"] == ("xsub", "xview", "xset") and entry.meta["needs_path"] is False
    assert entry.meta["default_split"] == "xsub"
    with pytest.raises(KeyError, match="available: xsub, xview, xset"):
        load_synthetic(None, "xsetup")
    with pytest.raises(ValueError, match="xset.*num_setups"):
        load_synthetic(None, "xset")  # one setup by default
    with pytest.raises(ValueError, match="num_setups"):
        generate_synthetic(num_setups=0)
    with pytest.raises(ValueError, match="num_classes"):
        generate_synthetic(num_classes=len(CLASS_NAMES) + 1)
    with pytest.raises(ValueError, match="xview"):
        load_synthetic(None, "xview", num_cameras=1)


def test_options_change_difficulty():
    clean = generate_synthetic(noise_std=0.0, nuisance=0.0, missing_prob=0.0, **SMALL)
    noisy = generate_synthetic(noise_std=0.05, missing_prob=1.0, **SMALL)

    def dropped_joints(arrays) -> int:
        zero = (arrays.data[:, :, :, :, 0] == 0).all(axis=1)  # N, T, V
        zero[:, :, NTU25.center] = False  # the origin after centring
        return int(zero[valid_mask(arrays)].sum())

    assert dropped_joints(clean) == 0 < dropped_joints(noisy)  # drop-outs only when asked for
    # nuisance 0: samples of one class, subject and camera differ only in their length
    same = np.flatnonzero((clean.labels == 2) & (clean.meta["subject"] == 1) & (clean.meta["camera"] == 1))
    pair = clean.subset(same[:2])
    assert pair.num_frames[0] != pair.num_frames[1]
    x = resize_valid(torch.from_numpy(pair.data), torch.from_numpy(pair.num_frames), 16).numpy()
    assert np.abs(x[0] - x[1]).max() < 0.05
    # ... whereas with the default nuisances they differ in their timing / amplitude
    default = generate_synthetic(**SMALL).subset(same[:2])
    x = resize_valid(torch.from_numpy(default.data), torch.from_numpy(default.num_frames), 16).numpy()
    assert np.abs(x[0] - x[1]).max() > 0.1


def _mean_pose(arrays) -> np.ndarray:
    m = valid_mask(arrays).astype(np.float32)
    total = (arrays.data * m[:, None, :, None, None]).sum(axis=2)
    return (total / arrays.num_frames[:, None, None, None]).reshape(len(arrays), -1)


def _temporal(arrays, frames: int = 16) -> np.ndarray:
    x = resize_valid(torch.from_numpy(arrays.data), torch.from_numpy(arrays.num_frames), frames)
    return x.reshape(len(arrays), -1).numpy()


def test_time_averaged_pose_does_not_solve_it(xsub):
    """A logistic regression on the time-averaged pose stays far below one on the (resized) sequence:
    the classes differ in motion, not in a static pose."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    train, test = xsub
    scores = {}
    with threadpool_limits(1):  # BLAS threads fight over 2 cores otherwise (10x slower)
        for name, features in (("time-averaged pose", _mean_pose), ("16-frame sequence", _temporal)):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000))
            clf.fit(features(train), train.labels)
            scores[name] = float((clf.predict(features(test)) == test.labels).mean())
    print(f"\nsynthetic xsub linear baselines: {scores}")
    mean_acc, seq_acc = scores["time-averaged pose"], scores["16-frame sequence"]
    assert mean_acc < 0.7  # 19 classes: chance is 0.05
    assert seq_acc > 0.72
    assert seq_acc - mean_acc > 0.12


def test_combined_classes_add_a_second_movement():
    """Labels past the 19 base actions add a movement of another body part: stepping moves the knees,
    nodding the head, while the base action's hand keeps moving; NTU-120-sized stand-ins exist."""
    every = generate_synthetic(num_classes=120, num_subjects=2, num_cameras=1, samples_per_class_subject_camera=1,
                               noise_std=0.0, missing_prob=0.0)
    assert every.num_classes == 120 and np.bincount(every.labels).tolist() == [2] * 120
    r_hand, r_knee, head = 11, 17, 3
    wave = CLASS_NAMES.index("wave right hand")
    stepping = CLASS_NAMES.index("wave right hand while stepping on the spot")
    nodding = CLASS_NAMES.index("wave right hand while nodding")
    assert stepping == 19 and nodding == 19 * 4
    assert _energy(every, stepping, r_knee) > 3 * _energy(every, wave, r_knee)
    assert _energy(every, nodding, head) > 2 * _energy(every, wave, head)
    assert _energy(every, stepping, r_hand) > 0.5 * _energy(every, wave, r_hand)
    assert set(INTERACTION_CLASSES) & set(range(19, 120))  # combined interactions keep their second body
