"""Data-parallel helpers: process-group setup from torchrun's environment, gathering with gradients,
and BatchNorm whose statistics span the global batch.

The suite trains data-parallel with the engine users already have, ``torchrun`` +
``DistributedDataParallel``: every rank holds a contiguous slice of the global batch, and every
batch-statistic term of an objective (variance, auto-covariance, cross-correlation, the similarity
means, a MoCo queue) must see the *whole* global batch. :func:`gather_with_grad` concatenates a tensor
from every rank in rank order, keeping the autograd graph to the local slice (as solo-learn's and
lightly's ``GatherLayer`` for VICReg / Barlow Twins), and :class:`GlobalBatchNorm` normalises with the
statistics of the global batch (SyncBatchNorm semantics; PyTorch's ``nn.SyncBatchNorm`` runs on GPUs
only, this one on any device and backend, gloo included).

**Uneven shards.** A global batch of ``b`` samples is split as :func:`shard_sizes` says: the first
``b mod W`` ranks hold one sample more, and a rank may hold none (the last, smaller batch of an epoch).
The training loop declares the split with :func:`batch_shards`; inside it, the gathers pad each rank's
rows to the largest shard, exchange them, and keep the valid rows only, so a gathered tensor is exactly
the global batch's rows in global order whatever the process count. A per-sample loss computed on the
local shard becomes this rank's share of the global mean with :func:`batch_mean`. Hence 1, 2 or 8
processes train the same model for every dataset size, and the process count is not part of a
checkpoint's key.

Gradient convention: the backward of :func:`gather_with_grad` sums the incoming gradients over the
ranks (``all_reduce``) and returns the local slice. When every rank computes the same loss ``L`` from
gathered tensors, each rank's parameter gradient is then ``W`` times its share, and DDP's average over the
``W`` ranks gives exactly ``dL/dθ``; when each rank computes its own share ``L_r`` (a per-sample mean,
as InfoNCE), DDP's average gives the gradient of the mean of the shares. Both are the single-process
gradient of the global batch.

Outside an initialised process group (or with one process) every helper is the identity, so the same
code runs on one CPU, one GPU or many.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "DistributedContext",
    "GlobalBatchNorm",
    "batch_mean",
    "batch_shards",
    "convert_global_batchnorm",
    "gather",
    "gather_with_grad",
    "shard_sizes",
    "init_from_env",
    "is_distributed",
    "rank",
    "world_size",
    "barrier",
    "broadcast_object",
]

#: how long a rank waits for the others (a long pretraining on rank 0 while others wait on a file lock)
DEFAULT_TIMEOUT = dt.timedelta(hours=12)


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(value, src: int = 0):
    """``value`` of rank ``src`` on every rank (identity outside a process group)."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel run.

    Attributes:
        rank: global rank (0 writes checkpoints, logs, records and reports).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU: ``cuda:<local_rank>``).
        backend: ``nccl`` (CUDA) or ``gloo`` (CPU).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device_type: str, timeout: dt.timedelta = DEFAULT_TIMEOUT) -> DistributedContext | None:
    """Initialise the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), with NCCL on CUDA and gloo on CPU.

    Returns:
        the context, or None when the process was not started by torchrun (no ``WORLD_SIZE``) or the
        world has one process.
    Raises:
        RuntimeError: CUDA asked for but a rank's ``LOCAL_RANK`` has no GPU.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank with LOCAL_RANK={local_rank} has no GPU: {torch.cuda.device_count()} visible")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device("cuda", local_rank)} if device_type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timeout, **kwargs)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              backend=backend)


def shard_sizes(batch: int, world: int) -> tuple[int, ...]:
    """How a global batch of ``batch`` samples is split across ``world`` ranks: rank ``r`` holds the
    ``sizes[r]`` samples after the first ``sum(sizes[:r])`` of the (sorted) batch. The first
    ``batch mod world`` ranks hold one sample more; with ``batch < world`` the last ranks hold none.

    >>> shard_sizes(23, 2), shard_sizes(2, 3)
    ((12, 11), (1, 1, 0))

    Raises:
        ValueError: a negative batch or a world below 1.
    """
    if batch < 0 or world < 1:
        raise ValueError(f"shard_sizes needs batch >= 0 and world >= 1, got {batch}, {world}")
    base, extra = divmod(batch, world)
    return tuple(base + (1 if r < extra else 0) for r in range(world))


_SHARDS: tuple[int, ...] | None = None


@contextlib.contextmanager
def batch_shards(sizes: Sequence[int]) -> Iterator[None]:
    """Declare, for the code inside, how the current global batch is split across the ranks (``sizes[r]``
    samples on rank ``r``, every rank passing the same sizes): :func:`gather_with_grad`, :func:`gather`,
    :func:`batch_mean` and :class:`GlobalBatchNorm` then handle shards of different sizes exactly. The
    pretraining loop sets it around every step. Outside it, every rank is assumed to hold as many rows as
    this one (the only layout the gathers could take before)."""
    global _SHARDS
    before, _SHARDS = _SHARDS, tuple(int(s) for s in sizes)
    try:
        yield
    finally:
        _SHARDS = before


def _sizes_for(x: Tensor, rows_per_sample: int) -> tuple[int, ...]:
    """Rows of ``x`` on every rank: the declared shards (times ``rows_per_sample``), else this rank's count
    on every rank. Raises ValueError when this rank's rows do not match its declared shard."""
    world = dist.get_world_size()
    if _SHARDS is None:
        return (x.shape[0],) * world
    if len(_SHARDS) != world:
        raise ValueError(f"batch_shards declares {len(_SHARDS)} shards for {world} processes")
    sizes = tuple(rows_per_sample * s for s in _SHARDS)
    me = dist.get_rank()
    if x.shape[0] != sizes[me]:
        raise ValueError(f"rank {me} gathers {x.shape[0]} rows, but its shard of the batch holds {_SHARDS[me]} samples "
                         f"x {rows_per_sample} rows per sample: gather per-sample tensors of the batch (or pass "
                         "rows_per_sample)")
    return sizes


def _all_gather_rows(x: Tensor, sizes: tuple[int, ...]) -> Tensor:
    """Rows of every rank concatenated in rank order; shards of different sizes are padded to the largest
    for the exchange and cut back after it (the padding never reaches the result)."""
    width = max(sizes)
    x = x.contiguous()
    if x.shape[0] < width:
        x = torch.cat([x, x.new_zeros((width - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    if all(s == width for s in sizes):
        return torch.cat(parts, dim=0)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` forward; backward: ``all_reduce`` (sum) of the full gradient, local slice returned."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: tuple[int, ...]) -> Tensor:  # type: ignore[override]
        rank = dist.get_rank()
        ctx.start, ctx.stop = sum(sizes[:rank]), sum(sizes[:rank + 1])
        return _all_gather_rows(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.start:ctx.stop], None


def gather_with_grad(x: Tensor, *, rows_per_sample: int = 1) -> Tensor:
    """Concatenate ``x`` (local ``(n_r, ...)``) from every rank in rank order: ``(Σ n_r, ...)``.

    The autograd graph reaches the local slice (see the module docstring for the gradient convention).
    Inside :func:`batch_shards` the ranks may hold different numbers of rows (``rows_per_sample`` rows per
    sample of the shard, default 1); outside it every rank must pass the same shape. Identity outside a
    process group.

    Raises:
        ValueError: inside :func:`batch_shards`, this rank's rows do not match its shard.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x, _sizes_for(x, rows_per_sample))


@torch.no_grad()
def gather(x: Tensor, *, rows_per_sample: int = 1) -> Tensor:
    """:func:`gather_with_grad` without gradients (e.g. the keys a MoCo queue takes, in global order)."""
    if not is_distributed():
        return x
    return _all_gather_rows(x.detach(), _sizes_for(x, rows_per_sample))


def batch_mean(per_sample: Tensor) -> Tensor:
    """This rank's share of the mean over the global batch of ``per_sample`` values ``(n_r, ...)`` computed
    on the local shard: ``sum(per_sample) · W / N`` (``N`` the global batch, ``W`` the process count), so
    that DDP's average of the ranks' gradients, and the average of the logged shares, are those of the mean
    over the global batch, whatever the shard sizes (a rank with no samples contributes 0). In one process
    (or outside :func:`batch_shards` with equal shards) it is ``per_sample.mean(0)``."""
    if not is_distributed():
        return per_sample.mean(dim=0)
    world = dist.get_world_size()
    total = sum(_SHARDS) if _SHARDS is not None else per_sample.shape[0] * world
    if total == 0:
        raise ValueError("batch_mean of an empty global batch")
    return per_sample.sum(dim=0) * (world / total)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of a data-parallel run (SyncBatchNorm semantics, any device).

    In training mode inside a process group, the inputs of all ranks are gathered with gradients, batch
    normalised together exactly as one process would normalise the whole batch (same mean, biased
    variance for normalising, unbiased for the running variance, same running-statistics update on every
    rank), and the local rows are returned. Otherwise it is ``F.batch_norm`` as ``nn.BatchNorm1d``/``2d``.
    Parameters, buffers and state-dict keys are those of ``nn.BatchNorm*``.

    Shapes: ``(n, C)`` or ``(n, C, *)``; inside :func:`batch_shards` ``n`` is this rank's shard times
    ``rows_per_sample`` (an attribute, default 1; e.g. ``M`` for an input reshaped to ``(N·M, ...)``) and
    may differ between the ranks, a rank with no samples included; outside it, the same ``n`` on every rank.
    """

    #: rows of the input per sample of the batch (inside :func:`batch_shards`)
    rows_per_sample: int = 1

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C) or (N, C, *) input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        sizes = _sizes_for(input, self.rows_per_sample)
        full = _GatherWithGrad.apply(input, sizes)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.momentum is None and self.num_batches_tracked is not None:
            momentum = 1.0 / float(self.num_batches_tracked)  # cumulative average, as nn.BatchNorm
        out = F.batch_norm(full, self.running_mean if self.track_running_stats else None,
                           self.running_var if self.track_running_stats else None, self.weight, self.bias,
                           True, momentum, self.eps)
        start = sum(sizes[:dist.get_rank()])
        return out[start:start + input.shape[0]]


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d/2d/3d`` in ``module`` by a :class:`GlobalBatchNorm` holding the same
    parameters and buffers (as ``nn.SyncBatchNorm.convert_sync_batchnorm``). Returns the module."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        new = convert_global_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module
