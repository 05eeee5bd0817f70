"""MoCo v2 pieces shared by the SkeletonCLR / AimCLR and CMD plug-ins: a momentum copy of a module, a queue
of keys, the logits of a query against its key and the queue.

As in the official code (CrosSCLR ``net/skeletonclr.py``, AimCLR ``net/aimclr.py``, CMD ``moco/builder_cmd.py``;
MoCo v2): the key encoder starts as a copy of the query encoder and follows it by
``theta_k <- m theta_k + (1 - m) theta_q`` before the keys of a step are computed; the queue holds the last
``K`` L2-normalised keys (initialised with normalised Gaussian noise) and is written after the loss.
Data-parallel runs gather the keys of every rank before writing them, in global sample order.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usdrl_bench.distributed import gather

__all__ = ["momentum_copy", "momentum_update", "KeyQueue", "moco_logits", "axis_rotations", "official_queue_transforms"]


def axis_rotations(angles: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(N, 3)`` angles (radians) -> the per-sample rotations ``(Rx, Ry, Rz)``, each ``(N, 3, 3)``, as the
    skeleton augmentations of AimCLR (``feeder/tools.py``) and MAMP (``random_rot``) write them (shared by
    both plug-ins; each composes them in its own order)."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])
    rx = torch.stack([one, zero, zero, zero, c[:, 0], s[:, 0], zero, -s[:, 0], c[:, 0]], 1).view(-1, 3, 3)
    ry = torch.stack([c[:, 1], zero, -s[:, 1], zero, one, zero, s[:, 1], zero, c[:, 1]], 1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], s[:, 2], zero, -s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return rx, ry, rz


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen deep copy of ``module`` (no gradient), the initial key network."""
    key = copy.deepcopy(module)
    for p in key.parameters():
        p.requires_grad_(False)
    return key


@torch.no_grad()
def momentum_update(query: nn.Module, key: nn.Module, momentum: float) -> None:
    """``theta_k <- m theta_k + (1 - m) theta_q`` over the parameters of two modules of the same structure.

    Raises:
        ValueError: the two modules' parameter shapes differ.
    """
    q_params, k_params = list(query.parameters()), list(key.parameters())
    if [p.shape for p in q_params] != [p.shape for p in k_params]:
        raise ValueError(f"momentum_update: {type(query).__name__} and its key copy differ in parameter shapes")
    for p_q, p_k in zip(q_params, k_params):
        p_k.mul_(momentum).add_(p_q.detach().to(p_k.dtype), alpha=1.0 - momentum)


class KeyQueue(nn.Module):
    """A ring buffer of ``size`` keys of width ``dim`` (buffers ``queue (size, dim)`` and ``ptr``), started
    with L2-normalised Gaussian noise as MoCo's ``register_buffer("queue", randn(dim, K))`` normalised.

    The pointer stays on the device: writing needs no host synchronisation. Unlike the official code, a
    batch size need not divide ``size`` (writes wrap around the end)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"KeyQueue: size and dim must be >= 1, got {size} and {dim}")
        self.size = int(size)
        self.register_buffer("queue", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: Tensor) -> None:
        """Write ``keys (N, dim)`` (this rank's; all ranks' are gathered first) at the pointer."""
        keys = gather(keys.detach().to(self.queue.dtype))
        n = keys.shape[0]
        if n == 0:
            return
        keep = min(n, self.size)
        slots = (self.ptr + torch.arange(n - keep, n, device=self.ptr.device)) % self.size
        self.queue.index_copy_(0, slots, keys[-keep:])
        self.ptr.copy_((self.ptr + n) % self.size)

    def snapshot(self) -> Tensor:
        """The queue's current content ``(size, dim)``, a copy (the loss's graph may use it after a push)."""
        return self.queue.clone()


def moco_logits(query: Tensor, key: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """``[q.k, q.queue^T] / T`` of L2-normalised ``query (N, D)``, ``key (N, D)`` and ``queue (K, D)``:
    ``(N, 1 + K)``, the positive in column 0 (MoCo's ``l_pos``, ``l_neg``)."""
    positive = (query * key).sum(dim=1, keepdim=True)
    return torch.cat([positive, query @ queue.T], dim=1) / temperature


def official_queue_transforms(*queues: str) -> tuple[dict, dict]:
    """``(to_suite, to_official)`` tensor transforms of :class:`KeyQueue` buffers named ``<queue>.queue`` and
    ``<queue>.ptr`` (suite state keys) for the official MoCo layout, shared by the SkeletonCLR / AimCLR and CMD
    formats: the official queue is ``(dim, K)`` (the suite's ``(K, dim)`` transposed) and its pointer a ``(1,)``
    tensor (the suite's a scalar)."""
    to_suite, to_official = {}, {}
    for q in queues:
        to_suite.update({f"{q}.queue": lambda t: t.T, f"{q}.ptr": lambda t: t.reshape(())})
        to_official.update({f"{q}.queue": lambda t: t.T.contiguous(), f"{q}.ptr": lambda t: t.reshape(1)})
    return to_suite, to_official
