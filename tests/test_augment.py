"""Tests of the batched augmentations against F.interpolate, hand-computed values and invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from usdrl_bench.data.augment import (
    ViewConfig,
    joint_corruption,
    make_views,
    random_crop_resize,
    resize_frames,
    resize_valid,
    shear,
)
from usdrl_bench.data.augment.temporal import random_crops


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def official_resize(x: torch.Tensor, start: int, length: int, out_frames: int) -> torch.Tensor:
    """One sample ``(C, T, V, M)`` the way the official feeder does it: crop, flatten to
    ``(C·V·M, length)``, bilinear interpolate with align_corners False, reshape back."""
    C, _, V, M = x.shape
    crop = x[:, start:start + length].permute(0, 2, 3, 1).reshape(1, 1, C * V * M, length)
    out = F.interpolate(crop, size=(C * V * M, out_frames), mode="bilinear", align_corners=False)
    return out.reshape(C, V, M, out_frames).permute(0, 3, 1, 2)


def batch(n: int = 8, t: int = 50, v: int = 25, m: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, t, v, m, generator=gen(seed))


# --- resize -------------------------------------------------------------------------------------


@pytest.mark.parametrize("out_frames", [1, 7, 16, 64])
def test_resize_frames_matches_interpolate(out_frames):
    x = batch(n=12, t=90)
    start = torch.tensor([0, 3, 10, 0, 50, 89, 20, 0, 5, 1, 30, 60])
    length = torch.tensor([90, 1, 2, 64, 40, 1, 17, 33, 80, 7, 60, 30])
    out = resize_frames(x, start, length, out_frames)
    assert out.shape == (12, 3, out_frames, 25, 2)
    for i in range(12):
        ref = official_resize(x[i], int(start[i]), int(length[i]), out_frames)
        assert (out[i] - ref).abs().max() < 1e-6, f"sample {i}: start {int(start[i])} length {int(length[i])}"
    # random crops of long sequences (NTU's T = 300), in float32 and float64
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(40, 3, 300, 25, 2, generator=gen(out_frames), dtype=dtype)
        length = torch.randint(1, 301, (40,), generator=gen(1))
        start = (torch.rand(40, generator=gen(2)) * (301 - length)).long()
        out = resize_frames(x, start, length, out_frames)
        assert out.dtype == dtype
        for i in range(40):
            ref = official_resize(x[i], int(start[i]), int(length[i]), out_frames)
            assert (out[i] - ref).abs().max() < 1e-6, f"{dtype} sample {i}: start {int(start[i])} length {int(length[i])}"


def test_resize_frames_hand_computed():
    # x[t] = t: output j reads s = (j + 0.5) * L / out - 0.5 clamped to [0, L - 1], plus the start
    x = torch.arange(10, dtype=torch.float32).reshape(1, 1, 10, 1, 1).expand(1, 3, 10, 1, 1).contiguous()
    out = resize_frames(x, torch.tensor([2]), torch.tensor([4]), 8)[0, 0, :, 0, 0]
    expected = torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]) + 2  # upsample x2
    assert torch.allclose(out, expected)
    out = resize_frames(x, torch.tensor([0]), torch.tensor([10]), 4)[0, 0, :, 0, 0]
    assert torch.allclose(out, torch.tensor([0.75, 3.25, 5.75, 8.25]))  # downsample x2.5


def test_resize_frames_identity_when_length_equals_out():
    x = batch(n=4, t=80)
    start = torch.tensor([0, 5, 16, 10])
    out = resize_frames(x, start, torch.full((4,), 64), 64)
    for i in range(4):
        assert torch.equal(out[i], x[i, :, int(start[i]):int(start[i]) + 64])


def test_resize_valid_ignores_padding():
    x = batch(n=5, t=60)
    nf = torch.tensor([60, 30, 1, 64 - 10, 12])
    padded = x.clone()
    for i, n in enumerate(nf.tolist()):
        padded[i, :, n:] = float("nan")  # frames beyond num_frames must never be read
    out = resize_valid(padded, nf, 64)
    assert torch.isfinite(out).all()
    assert torch.equal(out, resize_frames(x, torch.zeros(5, dtype=torch.long), nf, 64))
    # a single valid frame is repeated
    assert torch.allclose(out[2], x[2, :, :1].expand(3, 64, 25, 2), atol=1e-6, rtol=0)


def test_resize_frames_rejects_bad_crops():
    x = batch(n=2, t=20)
    with pytest.raises(ValueError, match="sample 1"):
        resize_frames(x, torch.tensor([0, 15]), torch.tensor([10, 10]), 8)
    with pytest.raises(ValueError, match="length >= 1"):
        resize_frames(x, torch.tensor([0, 0]), torch.tensor([0, 10]), 8)
    with pytest.raises(ValueError, match=r"\(N, C, T, V, M\)"):
        resize_frames(x[0], torch.tensor([0]), torch.tensor([10]), 8)


# --- random crop --------------------------------------------------------------------------------


def test_crop_lengths_and_starts_within_bounds():
    n = 4000
    x = torch.zeros(1, 3, 300, 1, 1).expand(n, 3, 300, 1, 1)
    nf = torch.randint(1, 301, (n,), generator=gen(1))
    start, length = random_crops(x, nf, 64, gen(2), 0.1, 1.0, None, "test")
    lo = torch.minimum(torch.full_like(nf, 64), nf)
    assert (length >= lo).all() and (length <= nf).all()
    assert (start >= 0).all() and (start + length <= nf).all()
    # FACTS §7: length = clip(floor(n * U[0.1, 1]), 64, n); with n = 1000 and no floor, the mean
    # scale is 0.55 and the start is uniform over [0, n - length]
    nf = torch.full((n,), 1000)
    x = torch.zeros(1, 3, 1000, 1, 1).expand(n, 3, 1000, 1, 1)
    start, length = random_crops(x, nf, 64, gen(3), 0.1, 1.0, 1, "test")
    scale = length.double() / 1000
    assert abs(scale.mean().item() - 0.55) < 0.02
    assert scale.min() >= 0.1 and scale.max() <= 1.0
    rel = start.double() / (1000 - length + 1).double()
    assert abs(rel.mean().item() - 0.5) < 0.03


def test_random_crop_resize_reads_only_valid_frames():
    n, t = 64, 120
    frames = torch.arange(t, dtype=torch.float32)
    x = frames.reshape(1, 1, t, 1, 1).expand(n, 3, t, 2, 1).contiguous()
    nf = torch.randint(5, t + 1, (n,), generator=gen(4))
    for i, k in enumerate(nf.tolist()):
        x[i, :, k:] = float("nan")
    out = random_crop_resize(x, nf, 32, gen(5))
    assert out.shape == (n, 3, 32, 2, 1)
    assert torch.isfinite(out).all()
    assert (out.amin(dim=(1, 2, 3, 4)) >= 0).all()
    assert (out.amax(dim=(1, 2, 3, 4)) <= (nf - 1).float()).all()
    # the frame indices read are increasing (a crop, not a shuffle)
    assert (out[:, 0, 1:, 0, 0] >= out[:, 0, :-1, 0, 0]).all()


def test_random_crop_resize_deterministic():
    x, nf = batch(n=16, t=100), torch.randint(10, 101, (16,), generator=gen(6))
    a = random_crop_resize(x, nf, 64, gen(7))
    b = random_crop_resize(x, nf, 64, gen(7))
    c = random_crop_resize(x, nf, 64, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --- joint corruption and shear -----------------------------------------------------------------


def changed_joints(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(N, V)`` bool: the joints whose coordinates changed in any frame / body."""
    return (x != y).any(dim=1).any(dim=1).any(dim=-1)


def fit_matrix(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``A`` with ``y_row = x_row @ A`` from ``(3, ...)`` points; returns (A, max residual)."""
    X = x.reshape(3, -1).T.double()
    Y = y.reshape(3, -1).T.double()
    A = torch.linalg.lstsq(X, Y).solution
    return A, (X @ A - Y).abs().max()


def test_joint_corruption_changes_exactly_k_joints():
    n = 200
    x = batch(n=n, t=3, v=25, m=2) + 5.0  # no coordinate is (close to) zero
    y = joint_corruption(x, gen(9), num_joints=15, p_zero=0.5)
    changed = changed_joints(x, y)
    assert (changed.sum(dim=1) == 15).all()
    # unchanged joints are bit-identical; changed ones are either all zero or x @ A, A ~ U(-1, 1)
    zeroed = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        yi, xi = y[i][:, :, changed[i]], x[i][:, :, changed[i]]
        assert torch.equal(y[i][:, :, ~changed[i]], x[i][:, :, ~changed[i]])
        if (yi == 0).all():
            zeroed[i] = True
            continue
        A, residual = fit_matrix(xi, yi)
        assert residual < 1e-4
        assert A.abs().max() <= 1.0 + 1e-5
    # the zero/mix coin: p_zero = 0.5 over 200 samples (binomial std 0.035)
    assert abs(zeroed.double().mean().item() - 0.5) < 0.12


@pytest.mark.parametrize("p_zero", [0.0, 0.2, 1.0])
def test_joint_corruption_zero_proportion(p_zero):
    x = batch(n=3000, t=2, v=25, m=1) + 5.0
    y = joint_corruption(x, gen(10), num_joints=15, p_zero=p_zero)
    changed = changed_joints(x, y)
    per_sample_zero = ((y == 0) | ~changed[:, None, None, :, None]).all(dim=(1, 2, 3, 4)) & changed.any(dim=1)
    assert abs(per_sample_zero.double().mean().item() - p_zero) < 0.03
    # the corrupted joints are uniform over the 25 joints: each hit with probability 15/25
    assert (changed.double().mean(dim=0) - 0.6).abs().max() < 0.05


def test_shear_matrix_has_unit_diagonal():
    n = 200
    x = batch(n=n, t=4, v=25, m=2)
    y = shear(x, gen(11), magnitude=1.0)
    # batched least squares: y_row = x_row @ A with A = S^T, from the 200 points of each sample
    X = x.reshape(n, 3, -1).transpose(1, 2).double()
    Y = y.reshape(n, 3, -1).transpose(1, 2).double()
    A = torch.linalg.lstsq(X, Y).solution
    assert (X @ A - Y).abs().max() < 1e-4
    S = A.transpose(1, 2)
    assert torch.allclose(torch.diagonal(S, dim1=1, dim2=2), torch.ones(n, 3, dtype=S.dtype), atol=1e-5)
    off = S[:, ~torch.eye(3, dtype=torch.bool)]
    assert off.abs().max() <= 1.0 + 1e-5
    assert abs(off.abs().mean().item() - 0.5) < 0.05  # U(-1, 1) has mean |value| 1/2
    assert abs(off.mean().item()) < 0.05
    # magnitude 0 is the identity
    assert torch.equal(shear(x, gen(11), magnitude=0.0), x)


def test_shear_known_vector():
    # x = e_z: S e_z is S's third column = (s02, s12, 1); the z coordinate keeps its value
    x = torch.zeros(500, 3, 1, 1, 1)
    x[:, 2] = 1.0
    y = shear(x, gen(12), magnitude=0.3)[:, :, 0, 0, 0]
    assert torch.allclose(y[:, 2], torch.ones(500))
    assert y[:, :2].abs().max() <= 0.3 + 1e-6
    assert y[:, :2].abs().max() > 0.25  # the full range is used


def test_shear_and_corruption_with_known_matrices():
    """Pins the conventions with the matrices the generator yields (this also pins the draw order:
    shear draws one (N, 3, 3) uniform block; corruption draws the zero coin, the joint scores, then
    the matrix). Official feeder: shear is ``np.dot(x, R.T)`` (column form ``R x``), corruption is
    ``np.dot(x, A)`` (row form ``x A``)."""
    n = 6
    x = batch(n=n, t=2, v=25, m=1)
    U = torch.rand((n, 3, 3), generator=gen(21))
    S = torch.eye(3) + (-0.7 + 1.4 * U) * (1 - torch.eye(3))
    y = shear(x, gen(21), magnitude=0.7)
    expected = torch.einsum("nij,njtvm->nitvm", S, x)
    assert torch.allclose(y, expected, atol=1e-6)

    g = gen(22)
    zero = torch.rand((n,), generator=g) < 0.0  # p_zero = 0: always mix
    order = torch.rand((n, 25), generator=g).argsort(dim=1)[:, :15]
    A = -1 + 2 * torch.rand((n, 3, 3), generator=g)
    assert not zero.any()
    y = joint_corruption(x, gen(22), num_joints=15, p_zero=0.0)
    for i in range(n):
        hit = torch.zeros(25, dtype=torch.bool)
        hit[order[i]] = True
        expected = torch.einsum("ctvm,cd->dtvm", x[i], A[i])
        assert torch.allclose(y[i][:, :, hit], expected[:, :, hit], atol=1e-6)
        assert torch.equal(y[i][:, :, ~hit], x[i][:, :, ~hit])


# --- views --------------------------------------------------------------------------------------


def test_make_views_shapes_determinism_and_defaults():
    x, nf = batch(n=10, t=100), torch.randint(20, 101, (10,), generator=gen(13))
    views = make_views(x, nf, generator=gen(14))
    assert len(views) == 4 and all(v.shape == (10, 3, 64, 25, 2) for v in views)
    again = make_views(x, nf, generator=gen(14))
    assert all(torch.equal(a, b) for a, b in zip(views, again))
    other = make_views(x, nf, generator=gen(15))
    assert not any(torch.equal(a, b) for a, b in zip(views, other))
    assert not torch.equal(views[0], views[1])  # views are independent draws
    cfg = ViewConfig()
    assert (cfg.num_views, cfg.out_frames, cfg.min_scale, cfg.max_scale, cfg.min_length) == (4, 64, 0.1, 1.0, None)
    assert (cfg.p_shear, cfg.shear_magnitude, cfg.num_corrupt_joints, cfg.p_zero) == (0.5, 1.0, 15, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(cfg.make_views(x, nf, gen(14)), views))


def test_make_views_augmentation_mix():
    n = 2000
    x = batch(n=n, t=8, v=25, m=1) + 5.0
    nf = torch.full((n,), 8)
    # min_scale = max_scale = 1: every crop is the whole sequence and 8 -> 8 frames is the identity
    (view,) = make_views(x, nf, num_views=1, out_frames=8, generator=gen(16), min_scale=1.0)
    changed = changed_joints(x, view).sum(dim=1)
    assert set(changed.unique().tolist()) <= {15, 25}
    assert abs((changed == 25).double().mean().item() - 0.5) < 0.04  # shear vs corruption, 50/50
    (only_shear,) = make_views(x, nf, num_views=1, out_frames=8, generator=gen(16), min_scale=1.0, p_shear=1.0)
    assert (changed_joints(x, only_shear).sum(dim=1) == 25).all()
    (only_corrupt,) = make_views(x, nf, num_views=1, out_frames=8, generator=gen(16), min_scale=1.0, p_shear=0.0,
                                 num_corrupt_joints=7)
    assert (changed_joints(x, only_corrupt).sum(dim=1) == 7).all()


def test_make_views_reads_only_valid_frames():
    x, nf = batch(n=32, t=100), torch.randint(1, 101, (32,), generator=gen(17))
    for i, k in enumerate(nf.tolist()):
        x[i, :, k:] = float("nan")
    for v in make_views(x, nf, out_frames=16, generator=gen(18)):
        assert torch.isfinite(v).all()


def test_errors_name_the_problem():
    x, nf = batch(n=2, t=10), torch.tensor([10, 10])
    with pytest.raises(TypeError, match="torch.Generator"):
        make_views(x, nf, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_joints"):
        joint_corruption(x, gen(), num_joints=26)
    with pytest.raises(ValueError, match="num_frames"):
        random_crop_resize(x, torch.tensor([10, 11]), 8, gen())
    with pytest.raises(ValueError, match="p_shear"):
        ViewConfig(p_shear=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_generator_on_another_device_is_rejected():
    x = batch(n=2, t=10).cuda()
    with pytest.raises(ValueError, match="generator lives on"):
        shear(x, torch.Generator())
    views = make_views(x, torch.tensor([10, 10], device="cuda"), generator=torch.Generator(device="cuda").manual_seed(0))
    assert views[0].device.type == "cuda"


def test_sample_keys_views_depend_on_the_sample_not_the_batch():
    """World-size invariance: a sample's views are the same in a batch of 8, in a half batch (another rank's
    share) or in another order, and change with the epoch and the seed."""
    from usdrl_bench.data.augment import SampleKeys

    x, nf = batch(n=8, t=50), torch.tensor([50, 40, 30, 20, 50, 45, 12, 5])
    idx = torch.arange(100, 108)
    whole = make_views(x, nf, generator=SampleKeys(0, 3, idx))
    half = make_views(x[4:], nf[4:], generator=SampleKeys(0, 3, idx[4:]))
    order = torch.tensor([7, 2, 5, 0, 1, 6, 3, 4])
    shuffled = make_views(x[order], nf[order], generator=SampleKeys(0, 3, idx[order]))
    for a, b, c in zip(whole, half, shuffled):
        assert torch.equal(a[4:], b)
        assert torch.equal(a[order], c)
    for other in (SampleKeys(0, 4, idx), SampleKeys(1, 3, idx)):
        assert not torch.allclose(make_views(x, nf, generator=other)[0], whole[0])
    u = SampleKeys(0, 0, torch.arange(20000)).drawer(torch.device("cpu"))((20000, 3))
    assert u.min() >= 0 and u.max() < 1
    assert u.mean().item() == pytest.approx(0.5, abs=0.01) and u.std().item() == pytest.approx(12 ** -0.5, abs=0.01)
    assert abs(torch.corrcoef(u.T)[0, 1].item()) < 0.03  # draws of one sample are not correlated


def test_centre_crop_resize_is_the_official_test_branch():
    """``crop_subsequence`` with l_ratio[0] != 0.1 (FACTS §6): s = int((1 - r) · n / 2), frames [s, n - s),
    resized; hand-computed starts for n = 7, 100, 1 and r = 0.5, and r = 1 equals resize_valid."""
    from usdrl_bench.data.augment import centre_crop_resize

    x = batch(n=3, t=100)
    nf = torch.tensor([7, 100, 1])
    out = centre_crop_resize(x, nf, 0.5, 16)
    for i, (start, stop) in enumerate([(1, 6), (25, 75), (0, 1)]):  # int(1.75) = 1; int(25.0) = 25; int(0.25) = 0
        ref = official_resize(x[i], start, stop - start, 16)
        assert (out[i] - ref).abs().max() < 1e-6, i
    assert torch.equal(centre_crop_resize(x, nf, 1.0, 16), resize_valid(x, nf, 16))
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        centre_crop_resize(x, nf, 0.0, 16)
