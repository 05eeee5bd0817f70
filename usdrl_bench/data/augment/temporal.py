"""Temporal resampling: a sequence's valid frames, or a random crop of them, resized to a fixed length
(bilinear along time, as the official feeder)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from usdrl_bench.data.augment.keys import Draw, Randomness, as_index, check_x, drawer, uniform


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
    check_x(x, where)
    if not x.is_floating_point():
        raise TypeError(f"{where}: x must be a floating-point tensor, got {x.dtype}")
    if out_frames < 1:
        raise ValueError(f"{where}: out_frames must be >= 1, got {out_frames}")
    N, C, T, V, M = x.shape
    start = as_index(start, N, x.device, "start", where)
    length = as_index(length, N, x.device, "length", where)
    bad = (length < 1) | (start < 0) | (start + length > T)
    if bool(bad.any()):  # a host synchronisation: the views' hot path uses resize (crops valid by construction)
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{where}: sample {i} asks for frames [{int(start[i])}, {int(start[i] + length[i])}) "
            f"but x has T = {T} frames (need length >= 1, start >= 0, start + length <= T)"
        )
    return resize_unchecked(x, start, length, out_frames)


def resize_unchecked(x: Tensor, start: Tensor, length: Tensor, out_frames: int) -> Tensor:
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
    num_frames = as_index(num_frames, x.shape[0], x.device, "num_frames", "resize_valid")
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
    num_frames = as_index(num_frames, x.shape[0], x.device, "num_frames", "centre_crop_resize")
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
    check_x(x, where)
    draw = drawer(generator, x, where)
    if not 0.0 < min_scale <= max_scale:
        raise ValueError(f"{where}: need 0 < min_scale <= max_scale, got min_scale={min_scale}, max_scale={max_scale}")
    start, length = random_crops(x, num_frames, out_frames, draw, min_scale, max_scale, min_length, where, check=check)
    return resize_unchecked(x, start, length, out_frames)


def check_num_frames(num_frames: Tensor, max_frames: int, where: str) -> None:
    """Raise ValueError unless every valid-frame count lies in ``[1, max_frames]`` (a host
    synchronisation when ``num_frames`` lives on a GPU: do it once per dataset, not per batch)."""
    n = torch.as_tensor(num_frames)
    if n.numel() and bool(((n < 1) | (n > max_frames)).any()):
        raise ValueError(f"{where}: num_frames must lie in [1, T={max_frames}]; got min {int(n.min())}, max {int(n.max())}")


def random_crops(
    x: Tensor,
    num_frames: Tensor,
    out_frames: int,
    generator: "Randomness | Draw",
    min_scale: float,
    max_scale: float,
    min_length: int | None,
    where: str,
    check: bool = True,
) -> tuple[Tensor, Tensor]:
    N = x.shape[0]
    draw = drawer(generator, x, where)
    n = as_index(num_frames, N, x.device, "num_frames", where)
    if check:
        check_num_frames(n, x.shape[2], where)
    min_length = out_frames if min_length is None else int(min_length)
    scale = uniform((N,), min_scale, max_scale, draw, x).to(torch.float64)
    length = torch.floor(n.to(torch.float64) * scale).to(torch.int64)
    length = torch.minimum(length.clamp_min(min_length), n).clamp_min(1)
    u = draw((N,), torch.float64)
    span = (n - length + 1).to(torch.float64)
    start = torch.minimum(torch.floor(u * span).to(torch.int64), n - length)
    return start, length
