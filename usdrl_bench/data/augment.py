"""Batched skeleton augmentations: temporal crop-resize, joint corruption, shear, and USDRL's views.

Every function works on a batch ``x`` of shape ``(N, C, T, V, M)`` (samples, xyz, frames, joints,
bodies) on whatever device ``x`` lives on, with no Python loop over samples (ARCHITECTURE.md: "views
are made on the training device, in batches"). Randomness comes only from an explicit
``torch.Generator``, which must live on the same device type as ``x`` (``torch.Generator(device=x.device)``);
the same generator state gives the same views.

What the official code does (FACTS §6, §7; USDRL's feeder, inherited from UmURL):

* downstream input: the whole valid sequence ``[0, num_frames)`` resized to 64 frames with
  ``F.interpolate(mode="bilinear", align_corners=False)`` along time (:func:`resize_valid`);
* pretraining: 4 views, each an independent random crop (scale ~ U[0.1, 1], length
  ``clip(floor(n * scale), 64, n)``, random start) resized to 64 frames, then per view either joint
  corruption or shear with probability 1/2 each (:func:`make_views`).

The official feeder draws with ``random``/``np.random`` per sample in worker processes; here the
same distributions are drawn per batch, so the random streams (not the distributions) differ from the
official code. Two sources of randomness are accepted:

* a ``torch.Generator`` (one stream for the whole batch: the views of a sample depend on the batch);
* :class:`SampleKeys` (pretraining): every sample's numbers are a counter-based hash of
  (seed, epoch, sample index, draw number), so a sample gets the same views whichever batch, rank or
  world size it is processed in (data-parallel runs on 1, 2 or 8 processes see the same views), and no
  generator state needs saving to resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Union

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SampleKeys",
    "ViewConfig",
    "resize_frames",
    "resize_valid",
    "random_crop_resize",
    "joint_corruption",
    "shear",
    "random_rotation",
    "make_views",
]


# --- helpers ------------------------------------------------------------------------------------


def _check_x(x: Tensor, where: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{where}: x must be (N, C, T, V, M); got shape {tuple(x.shape)}")


def _check_generator(generator: torch.Generator, x: Tensor, where: str) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{where}: generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"{where}: the generator lives on {generator.device} but x is on {x.device}; "
            f"create it with torch.Generator(device=x.device)"
        )


def _as_index(value: Tensor | int | list | tuple, n: int, device: torch.device, what: str, where: str) -> Tensor:
    """``value`` as an ``(N,)`` int64 tensor on ``device`` (a scalar is broadcast)."""
    t = torch.as_tensor(value, device=device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{where}: {what} must hold integers, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if t.ndim == 0:
        t = t.expand(n)
    if t.shape != (n,):
        raise ValueError(f"{where}: {what} must have shape ({n},); got {tuple(t.shape)}")
    return t


# --- randomness -----------------------------------------------------------------------------------

_M32 = 0xFFFFFFFF
_MIX = 0x45D9F3B  # < 2**27: products of 32-bit values stay below 2**59, exact in int64 on every device


def _mix32(h):
    """A 32-bit integer hash (two xor-shift-multiply rounds) of int64 tensors (or Python ints) holding values
    in [0, 2**32); the same numbers either way."""
    h = ((h >> 16) ^ h) * _MIX & _M32
    h = ((h >> 16) ^ h) * _MIX & _M32
    return (h >> 16) ^ h


@dataclass(frozen=True)
class SampleKeys:
    """Per-sample random streams keyed by (seed, epoch, sample index): world-size invariant views.

    Draw ``j`` of sample ``n`` is ``hash(seed, epoch, index[n], j)`` (counter-based, as Philox-style
    generators are), computed for the whole batch in a few integer tensor operations on the batch's
    device: no Python loop over samples and no host synchronisation. The same (seed, epoch, index) gives
    the same numbers on CPU and CUDA and in any batch composition.

    Attributes:
        seed: the run's seed.
        epoch: the epoch (0-based).
        index: ``(N,)`` integer dataset indices of the batch's samples (any device; moved to x's).
    """

    seed: int
    epoch: int
    index: Tensor

    def drawer(self, device: torch.device) -> "_Draw":
        index = torch.as_tensor(self.index, device=device).to(torch.int64)
        if index.ndim != 1:
            raise ValueError(f"SampleKeys.index must be 1-D (N,), got shape {tuple(index.shape)}")
        base = _mix32(_mix32(int(self.seed) & _M32) ^ (int(self.epoch) & _M32))  # on the host: no transfer
        keys = _mix32((index & _M32) ^ base)  # (N,)
        state = {"counter": 0}

        def draw(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> Tensor:
            if shape[0] != keys.shape[0]:
                raise ValueError(f"SampleKeys has {keys.shape[0]} samples, asked for shape {shape}")
            k = 1
            for s in shape[1:]:
                k *= int(s)
            counter = torch.arange(state["counter"], state["counter"] + k, device=device, dtype=torch.int64)
            state["counter"] += k
            h = _mix32(keys[:, None] ^ _mix32(counter[None, :] * 0x9E3779 & _M32))  # (N, k) in [0, 2**32)
            if dtype == torch.float64:
                u = h.to(torch.float64) * 2.0**-32
            else:
                u = (h >> 8).to(torch.float32) * 2.0**-24  # 24 random bits: exact in float32, < 1
            return u.reshape(shape).to(dtype)

        return draw


_Draw = Callable[..., Tensor]
Randomness = Union[torch.Generator, SampleKeys]


def _drawer(source: "Randomness | _Draw", x: Tensor, where: str) -> _Draw:
    """A ``draw(shape, dtype=float32) -> U[0, 1)`` function on x's device from a generator or keys."""
    if isinstance(source, SampleKeys):
        if len(source.index) != x.shape[0]:
            raise ValueError(f"{where}: SampleKeys has {len(source.index)} indices for a batch of {x.shape[0]}")
        return source.drawer(x.device)
    if isinstance(source, torch.Generator):
        _check_generator(source, x, where)
        return lambda shape, dtype=torch.float32: torch.rand(shape, generator=source, device=x.device, dtype=dtype)
    if callable(source):
        return source
    raise TypeError(f"{where}: generator must be a torch.Generator or SampleKeys, got {type(source).__name__}")


def _uniform(shape: tuple[int, ...], low: float, high: float, draw: _Draw, x: Tensor) -> Tensor:
    """U[low, high) of ``shape`` in float32 on x's device."""
    return low + (high - low) * draw(shape)


def _random_joint_mask(n: int, v: int, k: int, draw: _Draw, x: Tensor) -> Tensor:
    """``(N, V)`` bool, exactly ``k`` True per row, uniformly without replacement."""
    scores = draw((n, v))
    chosen = scores.argsort(dim=1)[:, :k]
    mask = torch.zeros((n, v), dtype=torch.bool, device=x.device)
    mask.scatter_(1, chosen, True)
    return mask


def _transform_joints(x: Tensor, matrix: Tensor, mask: Tensor | None = None) -> Tensor:
    """Right-multiply the xyz row vector of every (frame, joint, body) by ``matrix[n]``.

    ``out[n, :, t, v, m] = x[n, :, t, v, m] @ matrix[n]`` where ``mask[n, v]`` (all joints when
    ``mask`` is None), ``x`` elsewhere. Args: x ``(N, 3, T, V, M)``, matrix ``(N, 3, 3)``, mask ``(N, V)``.
    """
    # out_c' = sum_c x_c * A[c, c']  (the official np.dot(x.transpose(1, 2, 3, 0), A))
    y = torch.einsum("nctvm,ncd->ndtvm", x, matrix.to(x.dtype))
    if mask is None:
        return y
    return torch.where(mask[:, None, None, :, None], y, x)


def _check_xyz(x: Tensor, where: str) -> None:
    _check_x(x, where)
    if x.shape[1] != 3:
        raise ValueError(f"{where}: needs C = 3 coordinates (xyz); got x of shape {tuple(x.shape)}")


# --- temporal resampling ------------------------------------------------------------------------


def resize_frames(x: Tensor, start: Tensor, length: Tensor, out_frames: int) -> Tensor:
    """Crop frames ``[start[n], start[n] + length[n])`` of every sample and resample them to ``out_frames``.

    Linear interpolation along time exactly as the official feeder's
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` on the ``(C·V·M, length)`` slice:
    output frame ``j`` reads source position ``s = (j + 0.5) · length / out_frames - 0.5`` clamped to
    ``s >= 0``, mixing frames ``floor(s)`` and ``min(floor(s) + 1, length - 1)`` with weights
    ``1 - frac(s)`` and ``frac(s)``. Implemented with ``gather``: one call for the whole batch.

    Args:
        x: ``(N, C, T, V, M)`` skeletons.
        start: ``(N,)`` integer first frame of each crop (a scalar is broadcast).
        length: ``(N,)`` integer crop lengths, ``>= 1`` with ``start + length <= T``.
        out_frames: output length ``T'``.
    Returns:
        ``(N, C, T', V, M)`` with the dtype and device of ``x``.
    Raises:
        ValueError: bad shapes, ``out_frames < 1``, or a crop outside ``[0, T)``.
        TypeError: ``x`` is not floating point.
    """
    where = "resize_frames"
    _check_x(x, where)
    if not x.is_floating_point():
        raise TypeError(f"{where}: x must be a floating-point tensor, got {x.dtype}")
    if out_frames < 1:
        raise ValueError(f"{where}: out_frames must be >= 1, got {out_frames}")
    N, C, T, V, M = x.shape
    start = _as_index(start, N, x.device, "start", where)
    length = _as_index(length, N, x.device, "length", where)
    bad = (length < 1) | (start < 0) | (start + length > T)
    if bool(bad.any()):  # a host synchronisation: the views' hot path uses _resize (crops valid by construction)
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{where}: sample {i} asks for frames [{int(start[i])}, {int(start[i] + length[i])}) "
            f"but x has T = {T} frames (need length >= 1, start >= 0, start + length <= T)"
        )
    return _resize(x, start, length, out_frames)


def _resize(x: Tensor, start: Tensor, length: Tensor, out_frames: int) -> Tensor:
    """:func:`resize_frames` without the checks (no host synchronisation): ``start``/``length`` ``(N,)`` int64."""
    N, C, T, V, M = x.shape
    # Index arithmetic as PyTorch's upsample kernels (area_pixel_compute_source_index): the scale
    # length / out_frames in float32 ("opmath") for float32 / half / bfloat16 inputs (float64 for
    # float64), and scale * (j + 0.5) - 0.5 rounded once, as the kernel's fused multiply-add: the
    # exact product of two float32 numbers is computed in float64, then rounded to float32. Without
    # this the source position can be 1 ulp off and the result 1e-5 away from F.interpolate.
    opmath = torch.float64 if x.dtype == torch.float64 else torch.float32
    scale = length.to(opmath)[:, None] / out_frames  # (N, 1)
    j = torch.arange(out_frames, device=x.device, dtype=torch.float64)
    src = (scale.to(torch.float64) * (j[None, :] + 0.5) - 0.5).to(opmath).clamp_min(0.0)  # (N, T')
    lo = src.floor().to(torch.int64)
    lo = torch.minimum(lo, (length - 1)[:, None])
    hi = torch.minimum(lo + 1, (length - 1)[:, None])
    w1 = (src - lo.to(opmath)).clamp(0.0, 1.0)
    w0 = 1.0 - w1
    lo = lo + start[:, None]
    hi = hi + start[:, None]

    def take(idx: Tensor) -> Tensor:  # (N, T') -> (N, C, T', V, M)
        return x.gather(2, idx[:, None, :, None, None].expand(N, C, out_frames, V, M))

    w0, w1 = w0[:, None, :, None, None], w1[:, None, :, None, None]
    return (w0 * take(lo) + w1 * take(hi)).to(x.dtype)


def resize_valid(x: Tensor, num_frames: Tensor, out_frames: int = 64) -> Tensor:
    """The official downstream input (FACTS §6): the whole valid sequence ``[0, num_frames)`` resized.

    Args:
        x: ``(N, C, T, V, M)``, zero-padded beyond each sample's valid frames.
        num_frames: ``(N,)`` valid frames per sample, ``1 <= num_frames <= T``.
        out_frames: output length (64 in the official linear, kNN and fine-tuning protocols).
    Returns:
        ``(N, C, out_frames, V, M)``.
    """
    num_frames = _as_index(num_frames, x.shape[0], x.device, "num_frames", "resize_valid")
    return resize_frames(x, torch.zeros_like(num_frames), num_frames, out_frames)


def observed_frames(num_frames, ratio: float):
    """Frames observed at ratio ``r`` in early action prediction: the first ``max(3, floor(r · n))`` of each
    sample's ``n`` valid frames (FSM ``feeder_downstream.py:97``, ``observe_ratio``), at most ``n``.

    Args:
        num_frames: ``(N,)`` valid frames (numpy array or tensor; the result has the same type).
        ratio: observed fraction in ``(0, 1]``.
    Raises:
        ValueError: ``ratio`` outside ``(0, 1]``.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"observed ratio must be in (0, 1], got {ratio!r}")
    if isinstance(num_frames, Tensor):
        kept = torch.clamp(torch.floor(num_frames.to(torch.float64) * ratio).to(num_frames.dtype), min=3)
        return torch.minimum(kept, num_frames)

    n = np.asarray(num_frames)
    return np.minimum(np.maximum(np.floor(n * float(ratio)).astype(n.dtype), 3), n)


def centre_crop_resize(x: Tensor, num_frames: Tensor, ratio: float, out_frames: int = 64) -> Tensor:
    """The official deterministic crop (``crop_subsequence``'s test branch, FACTS §6): frames
    ``[s, n - s)`` with ``s = int((1 - ratio) · n / 2)`` of each sample's ``n`` valid frames, resized to
    ``out_frames`` (:func:`resize_frames`). ``ratio = 1`` is :func:`resize_valid`. The official PKU-MMD II
    linear training (``l_ratio = [0.5, 1.0]``) takes this branch with ratio 0.5: the middle half.

    Args:
        x: ``(N, C, T, V, M)``, zero-padded beyond each sample's valid frames.
        num_frames: ``(N,)`` valid frames, ``1 <= num_frames <= T``.
        ratio: in ``(0, 1]``.
        out_frames: output length.
    Returns:
        ``(N, C, out_frames, V, M)``.
    Raises:
        ValueError: ``ratio`` outside ``(0, 1]``, or bad frame counts.
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"centre_crop_resize: ratio must be in (0, 1], got {ratio!r}")
    num_frames = _as_index(num_frames, x.shape[0], x.device, "num_frames", "centre_crop_resize")
    # int() of a positive float64 is floor; the official computes it in Python floats (float64)
    start = torch.floor((1.0 - ratio) * num_frames.to(torch.float64) / 2).to(torch.int64)
    length = torch.clamp(num_frames - 2 * start, min=1)
    return resize_frames(x, start, length, out_frames)


def random_crop_resize(
    x: Tensor,
    num_frames: Tensor,
    out_frames: int,
    generator: Randomness,
    min_scale: float = 0.1,
    max_scale: float = 1.0,
    min_length: int | None = None,
    check: bool = True,
) -> Tensor:
    """Random temporal crop of each sample's valid frames, resized to ``out_frames`` (FACTS §7).

    As the official ``crop_subsequence`` with ``l_ratio = [0.1, 1]``: ``scale ~ U[min_scale, max_scale]``,
    ``length = clip(floor(n · scale), min_length, n)`` with ``n = num_frames``, start uniform in
    ``[0, n - length]``, then :func:`resize_frames`.

    Args:
        x: ``(N, C, T, V, M)``.
        num_frames: ``(N,)`` valid frames per sample.
        out_frames: output length ``T'`` (64 officially).
        generator: randomness: a ``torch.Generator`` on x's device type, or :class:`SampleKeys`.
        min_scale, max_scale: crop-scale range (official 0.1 and 1.0).
        min_length: shortest crop in frames; ``None`` = ``out_frames`` (official: 64). Samples with
            fewer valid frames are taken whole.
        check: validate ``num_frames`` (a host synchronisation on a GPU; an objective's own views in the
            training loop pass False: the loop checked the data set once).
    Returns:
        ``(N, C, T', V, M)``.
    """
    where = "random_crop_resize"
    _check_x(x, where)
    draw = _drawer(generator, x, where)
    if not 0.0 < min_scale <= max_scale:
        raise ValueError(f"{where}: need 0 < min_scale <= max_scale, got min_scale={min_scale}, max_scale={max_scale}")
    start, length = _random_crops(x, num_frames, out_frames, draw, min_scale, max_scale, min_length, where, check=check)
    return _resize(x, start, length, out_frames)


def check_num_frames(num_frames: Tensor, max_frames: int, where: str) -> None:
    """Raise ValueError unless every valid-frame count lies in ``[1, max_frames]`` (a host
    synchronisation when ``num_frames`` lives on a GPU: do it once per dataset, not per batch)."""
    n = torch.as_tensor(num_frames)
    if n.numel() and bool(((n < 1) | (n > max_frames)).any()):
        raise ValueError(f"{where}: num_frames must lie in [1, T={max_frames}]; got min {int(n.min())}, max {int(n.max())}")


def _random_crops(
    x: Tensor,
    num_frames: Tensor,
    out_frames: int,
    generator: "Randomness | _Draw",
    min_scale: float,
    max_scale: float,
    min_length: int | None,
    where: str,
    check: bool = True,
) -> tuple[Tensor, Tensor]:
    N = x.shape[0]
    draw = _drawer(generator, x, where)
    n = _as_index(num_frames, N, x.device, "num_frames", where)
    if check:
        check_num_frames(n, x.shape[2], where)
    min_length = out_frames if min_length is None else int(min_length)
    scale = _uniform((N,), min_scale, max_scale, draw, x).to(torch.float64)
    length = torch.floor(n.to(torch.float64) * scale).to(torch.int64)
    length = torch.minimum(length.clamp_min(min_length), n).clamp_min(1)
    u = draw((N,), torch.float64)
    span = (n - length + 1).to(torch.float64)
    start = torch.minimum(torch.floor(u * span).to(torch.int64), n - length)
    return start, length


# --- spatial augmentations ----------------------------------------------------------------------


def _corruption_params(
    x: Tensor, draw: _Draw, num_joints: int, p_zero: float, where: str
) -> tuple[Tensor, Tensor]:
    """Per-sample (matrix (N, 3, 3), joint mask (N, V)) of joint corruption."""
    N, _, _, V, _ = x.shape
    if not 0 <= num_joints <= V:
        raise ValueError(f"{where}: num_joints must lie in [0, V={V}], got {num_joints}")
    if not 0.0 <= p_zero <= 1.0:
        raise ValueError(f"{where}: p_zero must lie in [0, 1], got {p_zero}")
    zero = draw((N,)) < p_zero
    mask = _random_joint_mask(N, V, num_joints, draw, x)
    matrix = _uniform((N, 3, 3), -1.0, 1.0, draw, x)
    matrix = torch.where(zero[:, None, None], torch.zeros_like(matrix), matrix)
    return matrix, mask


def _shear_params(x: Tensor, draw: _Draw, magnitude: float) -> Tensor:
    """Per-sample shear matrices ``(N, 3, 3)``, diagonal 1, off-diagonals U(-magnitude, magnitude)."""
    N = x.shape[0]
    eye = torch.eye(3, device=x.device, dtype=torch.float32)
    off = _uniform((N, 3, 3), -magnitude, magnitude, draw, x) * (1 - eye)
    return eye + off


def joint_corruption(x: Tensor, generator: Randomness, num_joints: int = 15, p_zero: float = 0.5) -> Tensor:
    """Official joint corruption (FACTS §7; ``joint_courruption`` in the UmURL/USDRL feeder tools).

    Per sample, ``num_joints`` of the ``V`` joints are chosen uniformly without replacement (the same
    joints in every frame and both bodies). With probability ``p_zero`` they are set to zero;
    otherwise their xyz row vectors are right-multiplied by a random ``3 x 3`` matrix ``A`` with
    i.i.d. entries U(-1, 1), one ``A`` per sample (``x_new = x @ A``, as the official ``np.dot``).

    Args:
        x: ``(N, 3, T, V, M)``.
        generator: randomness; must live on x's device type.
        num_joints: joints corrupted per sample (official 15 of 25).
        p_zero: probability of zeroing rather than mixing (official 0.5).
    Returns:
        ``(N, 3, T, V, M)``, a new tensor.
    """
    where = "joint_corruption"
    _check_xyz(x, where)
    matrix, mask = _corruption_params(x, _drawer(generator, x, where), num_joints, p_zero, where)
    return _transform_joints(x, matrix, mask)


def shear(x: Tensor, generator: Randomness, magnitude: float = 1.0) -> Tensor:
    """Official shear (FACTS §7): per sample ``x_new = S x`` (column vectors) for every joint.

    ``S`` is ``3 x 3`` with ones on the diagonal and off-diagonal entries U(-magnitude, magnitude)
    (magnitude 1 in USDRL's pretraining feeder; the helper's default ``r = 0.5`` is overridden there).

    Args:
        x: ``(N, 3, T, V, M)``.
        generator: randomness; must live on x's device type.
        magnitude: half-width of the off-diagonal range.
    Returns:
        ``(N, 3, T, V, M)``.
    """
    where = "shear"
    _check_xyz(x, where)
    draw = _drawer(generator, x, where)
    if magnitude < 0:
        raise ValueError(f"{where}: magnitude must be >= 0, got {magnitude}")
    s = _shear_params(x, draw, magnitude)
    # column form S x  ==  row form x @ S^T (the official np.dot(x, R.transpose()))
    return _transform_joints(x, s.transpose(1, 2))


# --- USDRL views --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewConfig:
    """Hyper-parameters of USDRL's pretraining views; defaults are the official ones (FACTS §7).

    Attributes:
        num_views: views per sample (the code uses 4; the paper's Fig. 2 draws 2).
        out_frames: frames per view (64).
        min_scale, max_scale: temporal crop-scale range (``l_ratio = [0.1, 1]``).
        min_length: shortest crop in frames; ``None`` = ``out_frames``.
        p_shear: probability that a view gets shear rather than joint corruption (0.5).
        shear_magnitude: off-diagonal shear range U(-m, m) (1.0).
        num_corrupt_joints: joints hit by joint corruption (15 of 25).
        p_zero: probability that joint corruption zeroes rather than mixes (0.5).
        rotation: half-width in degrees of a random rotation of each view about the x and y axes, before
            shear or corruption (0: none, as USDRL's code; CTR-GCN's NW-UCLA feeder draws 60): see
            :func:`random_rotation`.
    """

    num_views: int = 4
    out_frames: int = 64
    min_scale: float = 0.1
    max_scale: float = 1.0
    min_length: int | None = None
    p_shear: float = 0.5
    shear_magnitude: float = 1.0
    num_corrupt_joints: int = 15
    p_zero: float = 0.5
    rotation: float = 0.0

    def __post_init__(self) -> None:
        if self.num_views < 1:
            raise ValueError(f"ViewConfig.num_views must be >= 1, got {self.num_views}")
        if self.out_frames < 1:
            raise ValueError(f"ViewConfig.out_frames must be >= 1, got {self.out_frames}")
        if not 0.0 < self.min_scale <= self.max_scale:
            raise ValueError(f"ViewConfig needs 0 < min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")
        for name in ("p_shear", "p_zero"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"ViewConfig.{name} must lie in [0, 1], got {p}")
        if self.shear_magnitude < 0:
            raise ValueError(f"ViewConfig.shear_magnitude must be >= 0, got {self.shear_magnitude}")
        if self.num_corrupt_joints < 0:
            raise ValueError(f"ViewConfig.num_corrupt_joints must be >= 0, got {self.num_corrupt_joints}")
        if not 0.0 <= self.rotation <= 180.0:
            raise ValueError(f"ViewConfig.rotation must lie in [0, 180] degrees, got {self.rotation}")

    def make_views(self, x: Tensor, num_frames: Tensor, generator: Randomness) -> list[Tensor]:
        """:func:`make_views` with these settings."""
        return make_views(x, num_frames, generator=generator, **asdict(self))


def make_views(
    x: Tensor,
    num_frames: Tensor,
    num_views: int = 4,
    out_frames: int = 64,
    *,
    generator: Randomness,
    min_scale: float = 0.1,
    max_scale: float = 1.0,
    min_length: int | None = None,
    p_shear: float = 0.5,
    shear_magnitude: float = 1.0,
    num_corrupt_joints: int = 15,
    p_zero: float = 0.5,
    rotation: float = 0.0,
    check: bool = True,
) -> list[Tensor]:
    """USDRL's pretraining views (FACTS §7, the official pretraining feeder).

    Each of the ``num_views`` views is an independent :func:`random_crop_resize` of the valid frames,
    followed, per sample and per view, by :func:`shear` with probability ``p_shear`` and otherwise by
    :func:`joint_corruption` (the official coin is 50/50). Both are applied in one batched matrix
    product: a shear is a corruption of all ``V`` joints by ``S^T``, and zeroing is a product with 0.

    Args:
        x: ``(N, 3, T, V, M)`` joints, zero-padded beyond ``num_frames``.
        num_frames: ``(N,)`` valid frames per sample.
        num_views: views per sample (4).
        out_frames: frames per view ``T'`` (64).
        generator: randomness: a ``torch.Generator`` on x's device type, or :class:`SampleKeys` (the
            pretraining loop's: each sample's views then depend on (seed, epoch, index) only).
        min_scale, max_scale, min_length: crop settings, see :func:`random_crop_resize`.
        p_shear: probability of shear (else joint corruption), per sample and view.
        shear_magnitude: see :func:`shear`.
        num_corrupt_joints, p_zero: see :func:`joint_corruption`.
        rotation: if > 0, each view is first rotated by :func:`random_rotation` with this half-width
            (degrees); its numbers are drawn after the others, so views with ``rotation=0`` are unchanged.
        check: validate ``num_frames`` (a host synchronisation on a GPU); the pretraining loop checks the
            whole dataset once and passes False.
    Returns:
        ``num_views`` tensors of shape ``(N, 3, T', V, M)``.
    """
    cfg = ViewConfig(num_views, out_frames, min_scale, max_scale, min_length, p_shear, shear_magnitude, num_corrupt_joints,
                     p_zero, rotation)
    where = "make_views"
    _check_xyz(x, where)
    draw = _drawer(generator, x, where)
    N, _, _, V, _ = x.shape
    views = []
    for _ in range(cfg.num_views):
        start, length = _random_crops(x, num_frames, cfg.out_frames, draw, cfg.min_scale, cfg.max_scale, cfg.min_length,
                                      where, check=check)
        view = _resize(x, start, length, cfg.out_frames)
        use_shear = draw((N,)) < cfg.p_shear
        corrupt, joints = _corruption_params(view, draw, cfg.num_corrupt_joints, cfg.p_zero, where)
        sheared = _shear_params(view, draw, cfg.shear_magnitude).transpose(1, 2)
        matrix = torch.where(use_shear[:, None, None], sheared, corrupt)
        mask = joints | use_shear[:, None]
        if cfg.rotation > 0:
            view = _transform_joints(view, _rotation_params(view, draw, cfg.rotation))
        views.append(_transform_joints(view, matrix, mask))
    return views


def _rotation_params(x: Tensor, draw: _Draw, degrees: float) -> Tensor:
    """Per-sample ``(N, 3, 3)`` row-form matrices ``Ry(b) @ Rx(a)``, a, b ~ U(-degrees, degrees)."""
    N = x.shape[0]
    a, b = (torch.deg2rad(_uniform((N,), -degrees, degrees, draw, x)) for _ in range(2))
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rx = torch.stack([one, zero, zero, zero, a.cos(), a.sin(), zero, -a.sin(), a.cos()], dim=1).view(N, 3, 3)
    ry = torch.stack([b.cos(), zero, -b.sin(), zero, one, zero, b.sin(), zero, b.cos()], dim=1).view(N, 3, 3)
    return ry @ rx


def random_rotation(x: Tensor, generator: Randomness, degrees: float = 60.0) -> Tensor:
    """Rotate each sample about the x and y axes by angles drawn from U(-degrees, degrees).

    As CTR-GCN's NW-UCLA training feeder (``rand_view_transform``, integer degrees in [-60, 60] there): row
    vectors are multiplied by ``Ry(b) Rx(a)`` with ``Rx = [[1, 0, 0], [0, cos a, sin a], [0, -sin a, cos a]]``
    and ``Ry = [[cos b, 0, -sin b], [0, 1, 0], [sin b, 0, cos b]]`` (its scaling is left out: the min-max
    normalisation after it cancels it). A change of camera viewpoint, for cross-view training.

    Args:
        x: ``(N, 3, T, V, M)``.
        generator: randomness (a ``torch.Generator`` on x's device type, or :class:`SampleKeys`).
        degrees: half-width of the angle range, in degrees.
    Returns:
        ``(N, 3, T, V, M)``, a new tensor.
    """
    where = "random_rotation"
    _check_xyz(x, where)
    if not 0.0 <= degrees <= 180.0:
        raise ValueError(f"{where}: degrees must lie in [0, 180], got {degrees}")
    return _transform_joints(x, _rotation_params(x, _drawer(generator, x, where), degrees))
