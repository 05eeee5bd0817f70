"""Randomness of the augmentations: :class:`SampleKeys` (per-sample, world-size invariant streams) or a
``torch.Generator``, and the argument checks the augmentations share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor

# --- helpers ------------------------------------------------------------------------------------


def check_x(x: Tensor, where: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{where}: x must be (N, C, T, V, M); got shape {tuple(x.shape)}")


def check_generator(generator: torch.Generator, x: Tensor, where: str) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{where}: generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != x.device.type:
        raise ValueError(
            f"{where}: the generator lives on {generator.device} but x is on {x.device}; "
            f"create it with torch.Generator(device=x.device)"
        )


def as_index(value: Tensor | int | list | tuple, n: int, device: torch.device, what: str, where: str) -> Tensor:
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

    def drawer(self, device: torch.device) -> "Draw":
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


Draw = Callable[..., Tensor]
Randomness = Union[torch.Generator, SampleKeys]


def drawer(source: "Randomness | Draw", x: Tensor, where: str) -> Draw:
    """A ``draw(shape, dtype=float32) -> U[0, 1)`` function on x's device from a generator or keys."""
    if isinstance(source, SampleKeys):
        if len(source.index) != x.shape[0]:
            raise ValueError(f"{where}: SampleKeys has {len(source.index)} indices for a batch of {x.shape[0]}")
        return source.drawer(x.device)
    if isinstance(source, torch.Generator):
        check_generator(source, x, where)
        return lambda shape, dtype=torch.float32: torch.rand(shape, generator=source, device=x.device, dtype=dtype)
    if callable(source):
        return source
    raise TypeError(f"{where}: generator must be a torch.Generator or SampleKeys, got {type(source).__name__}")


def uniform(shape: tuple[int, ...], low: float, high: float, draw: Draw, x: Tensor) -> Tensor:
    """U[low, high) of ``shape`` in float32 on x's device."""
    return low + (high - low) * draw(shape)


def check_xyz(x: Tensor, where: str) -> None:
    check_x(x, where)
    if x.shape[1] != 3:
        raise ValueError(f"{where}: needs C = 3 coordinates (xyz); got x of shape {tuple(x.shape)}")
