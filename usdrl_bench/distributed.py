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

import datetime as dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "DistributedContext",
    "GlobalBatchNorm",
    "convert_global_batchnorm",
    "gather_with_grad",
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


class _GatherWithGrad(torch.autograd.Function):
    """``all_gather`` forward; backward: ``all_reduce`` (sum) of the full gradient, local slice returned."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rank, ctx.size = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.size:(ctx.rank + 1) * ctx.size]


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (local ``(n, ...)``) from every rank in rank order: ``(W·n, ...)``.

    The autograd graph reaches the local slice (see the module docstring for the gradient convention).
    Every rank must pass the same shape. Identity outside a process group.
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch of a data-parallel run (SyncBatchNorm semantics, any device).

    In training mode inside a process group, the inputs of all ranks are gathered with gradients, batch
    normalised together exactly as one process would normalise the whole batch (same mean, biased
    variance for normalising, unbiased for the running variance, same running-statistics update on every
    rank), and the local rows are returned. Otherwise it is ``F.batch_norm`` as ``nn.BatchNorm1d``/``2d``.
    Parameters, buffers and state-dict keys are those of ``nn.BatchNorm*``.

    Shapes: ``(n, C)`` or ``(n, C, *)``, the same ``n`` on every rank.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (N, C) or (N, C, *) input, got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed()):
            return super().forward(input)
        self._check_input_dim(input)
        full = gather_with_grad(input)
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.momentum is None and self.num_batches_tracked is not None:
            momentum = 1.0 / float(self.num_batches_tracked)  # cumulative average, as nn.BatchNorm
        out = F.batch_norm(full, self.running_mean if self.track_running_stats else None,
                           self.running_var if self.track_running_stats else None, self.weight, self.bias,
                           True, momentum, self.eps)
        n = input.shape[0]
        r = dist.get_rank()
        return out[r * n:(r + 1) * n]


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
