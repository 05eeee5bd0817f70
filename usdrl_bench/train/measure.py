"""What one pretraining step costs, measured: FLOPs per sample and peak memory at two batch sizes.

:func:`measure_step` builds the :class:`~usdrl_bench.train.pretrain.TrainStep` the pretraining loop runs (the
objective's projectors, key encoders, queues and decoder included), makes the objective's views from random
data of the dataset's shape, and runs one step per batch size:

* **FLOPs per sample** of forward and backward (``torch.utils.flop_counter``: matrix products, convolutions
  and attention), as :func:`~usdrl_bench.train.pretrain.pretraining_flops` counts them, and of the encoder's
  forward alone in eval mode (what extracting features costs);
* **peak memory** of the step. On CUDA: ``torch.cuda.max_memory_allocated`` over a step after a warm-up
  one. On a CPU, where PyTorch keeps no allocator statistics: the weights, buffers and optimiser state
  (created first by an optimiser step with zero gradients) counted tensor by tensor, the step's input views,
  plus the peak of the bytes allocated during forward and backward, followed storage by storage with a
  ``TorchDispatchMode`` (each new storage counted once, subtracted when it is freed;
  :class:`LiveTensorBytes`). Allocator caching and fragmentation are not in it.

Memory grows linearly with the batch (activations are per sample), so two batch sizes give the line
:meth:`StepCost.memory_at` extrapolates to the paper's batch: measured, then scaled.
"""

from __future__ import annotations

import contextlib
import copy
import weakref
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from usdrl_bench.train.pretrain import TrainStep, random_views
from usdrl_bench.train.spec import PretrainSpec

__all__ = ["LiveTensorBytes", "StepCost", "measure_step", "tensor_bytes"]


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of the tensor storages created while active and still alive, and their peak.

    Every operator's outputs are looked at; a storage not seen before (and not in ``exclude``: storages that
    existed before, e.g. the weights) is added and watched with :func:`weakref.finalize`, which subtracts it
    when PyTorch frees it (a storage keeps its Python object while it lives). Views share their storage and
    count once; in-place results add nothing.
    """

    def __init__(self, exclude: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.live = 0
        self.peak = 0
        self._exclude = set(exclude)
        self._seen: dict[int, Any] = {}

    def _add(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self._exclude or ptr in self._seen:
            return
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)

        def release(ptr: int = ptr, size: int = size) -> None:
            self.live -= size
            self._seen.pop(ptr, None)

        self._seen[ptr] = weakref.finalize(storage, release)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for item in tree_flatten(out)[0]:
            if isinstance(item, Tensor) and item.device.type != "meta":
                self._add(item)
        return out

    def reset_peak(self) -> None:
        self.peak = self.live


def tensor_bytes(*modules: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> tuple[int, set[int]]:
    """Bytes of the distinct storages of the modules' parameters and buffers and the optimiser's state, and
    the set of their data pointers."""
    tensors: list[Tensor] = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    if optimizer is not None:
        tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen.setdefault(s.data_ptr(), s.nbytes())
    return sum(seen.values()), set(seen)


@dataclass
class StepCost:
    """One model configuration's measured step (:func:`measure_step`).

    Attributes:
        flops_per_sample: forward + backward FLOPs of a pretraining step, per sample.
        forward_flops_per_sample: the encoder's forward FLOPs in eval mode, per sample (feature extraction).
        memory: ``[[batch, peak bytes], ...]`` of a training step at each measured batch.
        static_bytes: weights, buffers and optimiser state (part of every peak).
        device, precision: where and how it was measured; method: ``cuda_allocator`` or ``cpu_storages``.
        params: the encoder's parameters.
        checkpoint_bytes: the encoder's and the objective's weights and buffers (their files on disk).
    """

    flops_per_sample: float
    forward_flops_per_sample: float
    memory: list[list[int]]
    static_bytes: int
    device: str
    precision: str
    method: str
    params: int = 0
    checkpoint_bytes: int = 0  # encoder and objective weights and buffers: encoder.pt + objective.pt on disk

    def memory_at(self, batch: int) -> float:
        """Peak bytes at ``batch``: the line through the measured points (the largest two), extrapolated."""
        points = sorted(self.memory)
        if len(points) == 1:
            return float(points[0][1])
        (b1, m1), (b2, m2) = points[-2], points[-1]
        slope = max(0.0, (m2 - m1) / (b2 - b1))
        return m2 + slope * (batch - b2)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StepCost":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def measure_step(encoder: nn.Module, objective: nn.Module, spec: PretrainSpec, shape: tuple[int, ...], layout: str, *,
                 stream: str = "joint", batches: tuple[int, ...] = (2, 4), device: torch.device | str = "cpu") -> StepCost:
    """Measure a pretraining step of copies of ``encoder`` and ``objective`` (module docstring).

    Args:
        spec: the schedule (optimiser, views, precision); its batch size is not used.
        shape: the data's ``(N, C, T, V, M)``; random samples of ``(C, T, V, M)`` with every frame valid.
        layout: the data's skeleton layout; stream: the row's stream.
        batches: the batch sizes to measure (at least 2 each; two or more give the memory line).
        device: where to measure (CUDA: the allocator's peak; a CPU: :class:`LiveTensorBytes`).
    Raises:
        ValueError: a batch below 2.
    """
    device = torch.device(device)
    if any(b < 2 for b in batches):
        raise ValueError(f"measure_step: batches must be >= 2 (batch statistics), got {batches}")
    enc, obj = copy.deepcopy(encoder).train(), copy.deepcopy(objective).train()
    step = TrainStep(enc, obj, spec, device)
    step.train()
    params = sum(p.numel() for p in enc.parameters())
    memory: list[list[int]] = []
    static, flops = 0, 0.0
    cuda = device.type == "cuda"
    if not cuda:  # the optimiser's state, created by a step with zero gradients (the copies' weights may move)
        for group in step.optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.zeros_like(p)
        step.optimizer_step()
        step.optimizer.zero_grad(set_to_none=True)
    for i, batch in enumerate(sorted(batches)):
        views = random_views(enc, obj, spec, shape, layout, stream, batch, device, i)
        counter = FlopCounterMode(display=False)
        if cuda:  # warm-up: the optimiser's state, CUDA's per-shape workspaces; FLOPs counted at the first batch
            with counter if i == 0 else contextlib.nullcontext():
                step(views)
            views = random_views(enc, obj, spec, shape, layout, stream, batch, device, i + 100)
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            step(views)
            torch.cuda.synchronize(device)
            memory.append([batch, int(torch.cuda.max_memory_allocated(device))])
        else:
            static, pointers = tensor_bytes(enc, obj, optimizer=step.optimizer)
            # the step's input lives throughout
            view_bytes = sum(t.untyped_storage().nbytes() for t in tree_flatten(views)[0] if isinstance(t, Tensor))
            tracker = LiveTensorBytes(exclude=pointers)
            with tracker, counter if i == 0 else contextlib.nullcontext():
                loss, _ = step.forward(views)
                step.backward(loss)
                del loss
            step.optimizer_step()
            memory.append([batch, int(static + view_bytes + tracker.peak)])
        if i == 0:
            flops = counter.get_total_flops() / batch
    static = tensor_bytes(enc, obj, optimizer=step.optimizer)[0]
    enc.eval()
    forward = FlopCounterMode(display=False)
    first = next(t for t in tree_flatten(views)[0] if isinstance(t, Tensor))  # the first view: the encoder's input
    with forward, torch.no_grad():
        enc(first[:2])
    return StepCost(flops_per_sample=float(flops), forward_flops_per_sample=float(forward.get_total_flops() / 2),
                    memory=memory, static_bytes=int(static), device=str(device), precision=step.precision,
                    method="cuda_allocator" if cuda else "cpu_storages", params=int(params),
                    checkpoint_bytes=int(tensor_bytes(enc, obj)[0]))
