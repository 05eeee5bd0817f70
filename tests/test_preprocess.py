"""pre_normalization (2s-AGCN / UmURL, FACTS §3A item 6): hand-built cases, a loop-by-loop
reference written from the description, and the real NTU samples."""

from __future__ import annotations

import numpy as np
import pytest

from usdrl_bench.data.preprocess import Z_AXIS_JOINTS, pre_normalization, rotation_to_axis
from usdrl_bench.skeleton import KINECT20, NTU25


# --- a slow reference: the official loops, re-written from FACTS §3A --------------------------------


def _reference_rotation(v: np.ndarray, target: np.ndarray) -> np.ndarray:
    axis = np.cross(v, target)
    norm = np.linalg.norm(v)
    if norm == 0 or np.abs(axis).sum() < 1e-6:
        return np.eye(3)
    theta = np.arccos(np.clip(np.dot(v / norm, target), -1, 1))
    if abs(theta) < 1e-6:
        return np.eye(3)
    axis = axis / np.linalg.norm(axis)
    # Euler-Rodrigues parameters, as in 2s-AGCN rotation.py
    a = np.cos(theta / 2.0)
    b, c, d = -axis * np.sin(theta / 2.0)
    aa, bb, cc, dd = a * a, b * b, c * c, d * d
    bc, ad, ac, ab, bd, cd = b * c, a * d, a * c, a * b, b * d, c * d
    return np.array([
        [aa + bb - cc - dd, 2 * (bc + ad), 2 * (bd - ac)],
        [2 * (bc - ad), aa + cc - bb - dd, 2 * (cd + ab)],
        [2 * (bd + ac), 2 * (cd - ab), aa + dd - bb - cc],
    ])


def _reference(data: np.ndarray, center: int, xaxis: tuple[int, int], zaxis: tuple[int, int] | None) -> np.ndarray:
    s = np.transpose(data, (0, 4, 2, 3, 1)).copy()  # N M T V C
    T = s.shape[2]
    for i in range(len(s)):
        for p in range(s.shape[1]):
            person = s[i, p]
            if not person.any():
                continue
            if not person[0].any():
                keep = person[np.array([f.any() for f in person])].copy()
                person[:] = 0
                person[: len(keep)] = keep
            for f in range(T):
                if not person[f].any() and not person[f:].any():
                    rest = T - f
                    reps = int(np.ceil(rest / f))
                    person[f:] = np.concatenate([person[:f]] * reps, 0)[:rest]
                    break
    for i in range(len(s)):
        if not s[i].any():
            continue
        main = s[i, 0, :, center : center + 1].copy()
        for p in range(s.shape[1]):
            if not s[i, p].any():
                continue
            mask = np.any(s[i, p] != 0, axis=-1, keepdims=True)
            s[i, p] = (s[i, p] - main) * mask
    steps = ([(zaxis, np.array([0.0, 0, 1]))] if zaxis else []) + [((xaxis[1], xaxis[0]), np.array([1.0, 0, 0]))]
    for (j0, j1), target in steps:
        for i in range(len(s)):
            if not s[i].any():
                continue
            R = _reference_rotation(s[i, 0, 0, j1].astype(np.float64) - s[i, 0, 0, j0], target)
            for p in range(s.shape[1]):
                for f in range(T):
                    if not s[i, p, f].any():
                        continue
                    for j in range(s.shape[3]):
                        s[i, p, f, j] = R @ s[i, p, f, j]
    return np.transpose(s, (0, 4, 2, 3, 1))


def _random_batch(rng: np.random.Generator, V: int, M: int, N: int = 6, T: int = 20) -> np.ndarray:
    x = rng.normal(size=(N, 3, T, V, M)).astype(np.float32)
    x[0, :, 12:] = 0  # short sequence: padded by repetition
    x[1, :, :4, :, 0] = 0  # leading empty frames of body 0
    x[1, :, 9:] = 0
    if M > 1:
        x[2, ..., 1] = 0  # one body only
        x[3, :, :7, :, 1] = 0  # second body appears late
        x[3, :, 15:, :, 1] = 0
    x[4] = 0  # all-zero sample
    x[5, :, 5, 3] = 0  # one missing joint in one frame stays zero
    return x


# --- hand-built cases ----------------------------------------------------------------------------


def _hand_built() -> np.ndarray:
    """One sample, T=6, two bodies; body 0 valid in frames 0-2, body 1 in frames 2-3."""
    rng = np.random.default_rng(0)
    x = np.zeros((1, 3, 6, 25, 2), dtype=np.float32)
    x[0, :, :3, :, 0] = rng.normal(size=(3, 3, 25)) + np.array([0.5, 0.2, 3.0])[:, None, None]
    x[0, :, 2:4, :, 1] = rng.normal(size=(3, 2, 25)) + np.array([-0.5, 0.1, 3.2])[:, None, None]
    return x


def test_hand_built_center_shoulders_padding():
    x = _hand_built()
    before = x.copy()
    y = pre_normalization(x, NTU25)
    assert np.array_equal(x, before), "pre_normalization must not modify its input"
    assert y.dtype == np.float32 and y.shape == x.shape

    # (a) padding by repetition: body 0 frames 3-5 repeat frames 0-2; body 1 (frames 2-3) moves to
    # frames 0-1 and is repeated. Checked on the padding step alone: (b) subtracts body 0's centre
    # of the same frame, which differs between the repeats of body 1.
    padded = pre_normalization(x, NTU25, center=False, align_x=False)
    np.testing.assert_array_equal(padded[0, :, 3:6, :, 0], x[0, :, 0:3, :, 0])
    for start in (0, 2, 4):
        np.testing.assert_array_equal(padded[0, :, start : start + 2, :, 1], x[0, :, 2:4, :, 1])
    np.testing.assert_allclose(y[0, :, 3:6, :, 0], y[0, :, 0:3, :, 0], atol=1e-6)
    assert np.all(np.any(y != 0, axis=(1, 3))), "every frame of both bodies is filled"

    # (b) the middle of the spine of body 0 is the origin in every frame
    np.testing.assert_allclose(y[0, :, :, NTU25.center, 0], 0, atol=1e-6)

    # (d) frame 0 of body 0: left shoulder -> right shoulder along +x
    d = y[0, :, 0, NTU25.right_shoulder, 0] - y[0, :, 0, NTU25.left_shoulder, 0]
    assert d[0] > 0
    np.testing.assert_allclose(d[1:], 0, atol=1e-5)

    # rigid per sample: joint-to-joint distances within a frame are unchanged
    def dists(a):
        p = a.transpose(1, 0)  # V, C
        return np.linalg.norm(p[:, None] - p[None], axis=-1)

    np.testing.assert_allclose(dists(y[0, :, 1, :, 0]), dists(x[0, :, 1, :, 0]), atol=1e-5)
    # body 1's frame 0 is its original frame 2, measured from body 0's centre at frame 0 before
    # rotation: its norm is preserved
    rel = x[0, :, 2, :, 1] - x[0, :, 0, NTU25.center : NTU25.center + 1, 0]
    np.testing.assert_allclose(np.linalg.norm(y[0, :, 0, :, 1], axis=0), np.linalg.norm(rel, axis=0), rtol=1e-5)


def test_values_by_hand():
    """A 2-joint toy case computed by hand: centre joint 1, shoulders (0 -> 1) along +x."""
    from usdrl_bench.skeleton import Layout

    toy = Layout(name="toy", joint_names=("a", "b"), bones=(), center=1, left_shoulder=0, right_shoulder=1)
    x = np.zeros((1, 3, 3, 2, 1), dtype=np.float32)
    x[0, :, 0, 0, 0] = [1.0, 1.0, 0.0]  # a
    x[0, :, 0, 1, 0] = [1.0, 2.0, 0.0]  # b (centre); a -> b = +y
    x[0, :, 1, 0, 0] = [2.0, 0.0, 1.0]
    x[0, :, 1, 1, 0] = [1.0, 0.0, 1.0]
    y = pre_normalization(x, toy)
    # frame 0: a - b = (0, -1, 0); +y is turned to +x (a -90 degree turn about z), so (x, y) -> (y, -x)
    np.testing.assert_allclose(y[0, :, 0, 0, 0], [-1.0, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(y[0, :, 0, 1, 0], [0.0, 0.0, 0.0], atol=1e-6)
    # frame 1: a - b = (1, 0, 0) -> (0, -1, 0)
    np.testing.assert_allclose(y[0, :, 1, 0, 0], [0.0, -1.0, 0.0], atol=1e-6)
    # frame 2 (empty) repeats frame 0
    np.testing.assert_allclose(y[0, :, 2], y[0, :, 0], atol=1e-6)


@pytest.mark.parametrize("layout", [NTU25, KINECT20], ids=lambda lay: lay.name)
@pytest.mark.parametrize("align_z", [False, True])
def test_matches_loop_reference(layout, align_z):
    M = 2 if layout is NTU25 else 1
    x = _random_batch(np.random.default_rng(1), layout.num_joints, M)
    y = pre_normalization(x, layout, align_z=align_z)
    ref = _reference(x, layout.center, (layout.right_shoulder, layout.left_shoulder), Z_AXIS_JOINTS[layout.name] if align_z else None)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    assert not y[4].any(), "an all-zero sample stays zero"
    assert not y[5, :, 5, 3].any(), "a missing joint stays zero"
    if align_z:  # the z step alone puts the spine bone of frame 0, body 0 on +z
        bottom, top = Z_AXIS_JOINTS[layout.name]
        z_only = pre_normalization(x, layout, align_z=True, align_x=False)
        dz = z_only[:4, :, 0, top, 0] - z_only[:4, :, 0, bottom, 0]
        np.testing.assert_allclose(dz[:, :2], 0, atol=1e-5)
        assert np.all(dz[:, 2] > 0)


def test_steps_can_be_switched_off():
    x = _random_batch(np.random.default_rng(2), 25, 2)
    np.testing.assert_array_equal(pre_normalization(x, "ntu25", pad=False, center=False, align_x=False), x)


def test_rotation_to_axis_edge_cases():
    target = np.array([1.0, 0.0, 0.0])
    v = np.array([[0.3, -2.0, 0.7], [-2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    R = rotation_to_axis(v, target)
    for r in R:
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(r), 1.0)
    out = np.einsum("nij,nj->ni", R, v)
    np.testing.assert_allclose(out[[0, 1, 3], 1:], 0, atol=1e-12)
    assert np.all(out[[0, 1, 3], 0] > 0), "anti-parallel vectors are turned to +x too"
    np.testing.assert_array_equal(R[2], np.eye(3))  # zero vector: no rotation
    np.testing.assert_array_equal(R[3], np.eye(3))  # already aligned


def test_bad_shape_is_reported():
    with pytest.raises(ValueError, match=r"\(N, 3, T, 25, M\).*got shape \(2, 3, 10, 20, 2\)"):
        pre_normalization(np.zeros((2, 3, 10, 20, 2), np.float32), NTU25)


def test_real_ntu_samples_match_reference(shared_data):
    from usdrl_bench.data.readers.ntu_raw import read_ntu_sample

    files = sorted((shared_data / "ntu60_raw").glob("*A05[0-5].skeleton"))[:4] + sorted((shared_data / "ntu60_raw").glob("*P003*"))
    raw = np.stack([read_ntu_sample(f, max_frames=300)[0] for f in files])
    y = pre_normalization(raw, NTU25)
    ref = _reference(raw, NTU25.center, (NTU25.right_shoulder, NTU25.left_shoulder), None)
    np.testing.assert_allclose(y, ref, atol=1e-4)
    np.testing.assert_allclose(y[:, :, :, NTU25.center, 0], 0, atol=1e-5)
