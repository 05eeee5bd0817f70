"""Self-supervised pretraining loop: data-parallel, no host synchronisation per step, live logs, resumable.

Official setup (FACTS §7, ``pretrain.py``): Adam (lr 5e-4, weight decay 1e-5), batch 356, 451 epochs with
lr x0.1 from epoch 351, fp16 autocast with GradScaler, 4 views per sample, 2 GPUs with DataParallel. The
schedule comes from :class:`PretrainSpec`.

**Data parallel.** Inside a process group (``torchrun``, :mod:`usdrl_bench.distributed`) the global batch
is ``spec.batch_size``, split in contiguous slices across the ranks
(:func:`~usdrl_bench.distributed.shard_sizes`: when the process count does not divide a batch, as the
epoch's last, smaller one, the first ranks hold one sample more and a rank may hold none); the encoder and
objective are wrapped in ``DistributedDataParallel``, BatchNorm layers become
:class:`~usdrl_bench.distributed.GlobalBatchNorm` (``sync_batchnorm``), and objectives gather their
projections under :func:`~usdrl_bench.distributed.batch_shards`, so every batch statistic is the global
batch's for any split. The epoch's batches are those of one process (:func:`epoch_batch_sizes` does not
depend on the process count). Each sample's views are drawn from
:class:`~usdrl_bench.data.augment.SampleKeys` (seed, epoch, sample index): 1, 2 or 8 processes see the
same views, and with DropPath 0 train the same model up to float rounding. Rank 0 writes the state, logs
and checkpoint.

**Hot path.** Nothing in a step reads a device value on the host: views are drawn without validity
checks (frame counts are checked once per dataset), loss and logged terms stay on the device and are
read every ``log_every`` steps in one transfer (a non-finite loss is detected there), the MoCo queue
pointer lives on the device. On CUDA the training set is kept in device memory when it fits (batches are
indexed there), else the next batch is gathered into pinned memory by a thread and copied on a side stream.

**Precision** (``spec.precision``): ``bf16`` autocast (default on CUDA), ``fp16`` autocast with GradScaler
(the official code's), ``fp32`` (default on CPU; TF32 matmuls on CUDA). Adam is fused on CUDA (one kernel,
no synchronisation; on a CPU the fused kernel reads its scalars per parameter and is no faster than the
default). ``spec.compile`` wraps encoder and objective in ``torch.compile``.

**Resuming.** After every epoch, and inside an epoch every ``save_every_s`` seconds (5 minutes by default)
and on SIGINT / SIGTERM (Ctrl-C, a scheduler's stop: at the next step boundary, then ``KeyboardInterrupt``),
the full training state (encoder, objective, optimiser, scheduler, GradScaler, the sample-order generator
at the epoch's start, the global RNG, the steps done in the epoch and their losses, the loss history) is
written atomically to ``workdir/state.pt``; a later call with the same ``workdir`` continues from that step
and gives the same weights, bit for bit, as an uninterrupted run. The finished encoder is written to
``workdir/encoder.pt`` (suite format) last, so its presence means the run is complete.

**Live logs.** ``workdir/train_log.csv`` gets a header, then a row per step (epoch, step, loss, each loss
term, learning rate, samples/s, peak device memory), written while training; TensorBoard event files
go to ``workdir/tensorboard/`` when the ``tensorboard`` package is installed, and to Weights & Biases
when ``wandb_project`` is given.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime as dt
import inspect
import logging
import math
import queue
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.flop_counter import FlopCounterMode

from usdrl_bench import distributed as dist_utils
from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.augment import SampleKeys, ViewOptions, check_num_frames, make_views
from usdrl_bench.encoders.checkpoint import save_encoder
from usdrl_bench.io import torch_save_atomic, write_json_atomic
from usdrl_bench.objectives.base import Objective
from usdrl_bench.skeleton import Layout, get_layout, to_stream
from usdrl_bench.train.logs import StepLogger
from usdrl_bench.train.spec import PretrainSpec, Provenance

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
ENCODER_FILE = "encoder.pt"
HISTORY_FILE = "history.json"
OBJECTIVE_FILE = "objective.pt"
LOG_FILE = "train_log.csv"

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: steps between two reads of the device-side losses (one host synchronisation each)
DEFAULT_LOG_EVERY = 20
#: seconds between two saves of the resumable state inside an epoch (an interruption loses at most this)
DEFAULT_SAVE_EVERY_S = 300.0

#: progress callback: (epochs done, total epochs, mean loss of the last epoch)
ProgressFn = Callable[[int, int, float], None]
#: per-flush callback: (steps done, total steps, samples per second, last loss)
StepProgressFn = Callable[[int, int, float, float], None]


@dataclass
class PretrainResult:
    checkpoint: Path
    history: list[dict]
    wall_time_s: float
    resumed_from_epoch: int
    resumed_from_step: int = 0


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere.

    Raises:
        ValueError: an unknown precision, or ``fp16`` off CUDA (GradScaler's fp16 path needs a GPU).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 (autocast + GradScaler, the official code's) needs a CUDA device; "
                         "use fp32 or bf16 on the CPU")
    return precision


def _unique_trainable(*modules: nn.Module) -> list[nn.Parameter]:
    seen: set[int] = set()
    params = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def _fused_adam_available(device: torch.device) -> bool:
    try:
        p = nn.Parameter(torch.zeros(1, device=device))
        p.grad = torch.zeros_like(p)
        torch.optim.Adam([p], fused=True).step()
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


class _Pretrainer(nn.Module):
    """Encoder + objective as one module, so that DDP and ``torch.compile`` see the whole step."""

    def __init__(self, encoder: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.objective = objective

    def forward(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.objective(self.encoder, views)


class TrainStep:
    """One optimisation step of self-supervised pretraining: forward (autocast), backward, Adam.

    The pretraining loop and ``usdrl-bench bench`` both run this object, so what is benchmarked is what
    trains. Phases are separate methods so the benchmark can time them.

    Args:
        encoder, objective: as :func:`pretrain`.
        spec: optimiser, schedule, precision, compile, sync_batchnorm.
        device: training device (the modules are moved there).
        distributed: wrap in ``DistributedDataParallel`` (inside an initialised process group).
        steps_per_epoch: optimisation steps per epoch (the ``cosine`` schedule is stepped per iteration;
            the ``step`` schedule per epoch by the loop).
    """

    def __init__(self, encoder: nn.Module, objective: nn.Module, spec: PretrainSpec, device: torch.device, *,
                 distributed: bool = False, steps_per_epoch: int = 1) -> None:
        self.device = device
        self.precision = resolve_precision(spec.precision, device)
        if device.type == "cuda" and self.precision == "fp32":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        encoder.to(device)
        objective.to(device)
        self.encoder, self.objective = encoder, objective
        self.module: nn.Module = _Pretrainer(encoder, objective)
        if distributed:
            if spec.sync_batchnorm:
                dist_utils.convert_global_batchnorm(objective)
                dist_utils.convert_global_batchnorm(encoder)
            # buffers: identical on every rank with global BatchNorm; with per-process BatchNorm, rank 0's
            # running statistics are broadcast at every forward (what DataParallel keeps: device 0's)
            sync_key = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DDP).parameters \
                else "broadcast_buffers"
            device_ids = None
            if device.type == "cuda":
                device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
            self.module = DDP(self.module, device_ids=device_ids, **{sync_key: not spec.sync_batchnorm})
        self.forward_fn: Callable = torch.compile(self.module) if spec.compile else self.module
        self.optimizer, self.fused = build_optimizer(_unique_trainable(encoder, objective), spec, device)
        self.per_step = spec.schedule == "cosine"
        if self.per_step:
            total = max(1, spec.epochs * steps_per_epoch)
            warmup = spec.warmup_epochs * steps_per_epoch
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda step: cosine_factor(step, total, warmup, spec.min_lr / spec.lr if spec.lr else 0.0))
        else:
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones=list(spec.milestones),
                                                                  gamma=spec.gamma)
        self.scaler = torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def train(self) -> None:
        self.module.train()

    def forward(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            return self.forward_fn(views)

    def backward(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def __call__(self, views: list[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        loss, logs = self.forward(views)
        self.backward(loss)
        self.optimizer_step()
        if self.per_step:
            self.scheduler.step()
        return loss.detach(), logs

    def end_epoch(self) -> None:
        """Step an epoch-wise (``step``) schedule; a per-iteration one was stepped by each call."""
        if not self.per_step:
            self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict(), "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": _plain(self.scheduler.state_dict()),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler = dict(state["scheduler"])
        if isinstance(scheduler.get("milestones"), dict):
            scheduler["milestones"] = collections.Counter(scheduler["milestones"])
        self.scheduler.load_state_dict(scheduler)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def cosine_factor(step: int, total: int, warmup: float, floor: float) -> float:
    """The ``cosine`` schedule's lr factor at iteration ``step`` of ``total``: ``step / warmup`` during the
    warm-up, then ``floor + (1 - floor) * (1 + cos(pi * progress)) / 2`` with progress from 0 at the end of
    the warm-up to 1 at ``total`` (MAE ``util/lr_sched.py``, used per iteration by MAMP; ``floor`` is
    ``min_lr / lr``)."""
    if warmup > 0 and step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1e-12, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(params: list[nn.Parameter], spec: PretrainSpec,
                    device: torch.device) -> tuple[torch.optim.Optimizer, bool]:
    """The optimiser ``spec`` names over ``params`` (``no_decay_1d``: 1-D parameters in a group without
    weight decay) and whether it is the fused CUDA kernel.

    Raises:
        ValueError: a negative learning rate, weight decay, momentum or ``min_lr``, betas outside [0, 1).
    """
    if spec.lr < 0 or spec.weight_decay < 0 or spec.momentum < 0 or spec.min_lr < 0 or spec.warmup_epochs < 0:
        raise ValueError(f"pretrain: lr, weight_decay, momentum, min_lr and warmup_epochs must be >= 0; got {spec}")
    if not all(0 <= b < 1 for b in spec.betas):
        raise ValueError(f"pretrain: betas must lie in [0, 1), got {spec.betas}")
    groups: list[dict[str, Any]] = [{"params": params}]
    if spec.no_decay_1d:
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay,
                               nesterov=spec.nesterov), False
    fused = device.type == "cuda" and _fused_adam_available(device)
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=spec.lr, betas=tuple(spec.betas), weight_decay=spec.weight_decay,
               **({"fused": True} if fused else {})), fused


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler state with its ``Counter`` as a dict, so that ``weights_only`` loading accepts it."""
    return {k: dict(v) if isinstance(v, collections.Counter) else v for k, v in state.items()}


class BatchSource:
    """Batches of ``(x (n, C, T, V, M) float32, num_frames (n,) int64)`` on the training device.

    * CPU: gathered from the (memory-mapped) array per step.
    * CUDA, data fits in device memory (``resident``): the whole set is copied to the device once (in
      chunks) and batches are indexed there.
    * CUDA otherwise: a thread gathers the next batch into pinned memory while the current one trains;
      the copy runs on a side stream.

    Args:
        train: the training arrays.
        device: training device.
        resident: ``None`` = decide (the set takes at most half the free device memory), True / False.
    """

    def __init__(self, train: SkeletonArrays, device: torch.device, resident: bool | None = None) -> None:
        self.train, self.device = train, device
        self.num_frames = torch.as_tensor(np.asarray(train.num_frames), dtype=torch.int64)
        self.data_dev: Tensor | None = None
        self.stream = None
        if device.type == "cuda":
            nbytes = int(np.prod(train.data.shape)) * 4
            if resident is None:
                free, _ = torch.cuda.mem_get_info(device)
                resident = nbytes <= free // 2
            if resident:
                self.data_dev = torch.empty(tuple(train.data.shape), dtype=torch.float32, device=device)
                chunk = max(1, (256 << 20) // max(1, nbytes // max(1, len(train))))
                for i in range(0, len(train), chunk):
                    block = torch.from_numpy(np.asarray(train.data[i:i + chunk], dtype=np.float32))
                    self.data_dev[i:i + chunk].copy_(block)
            else:
                self.stream = torch.cuda.Stream(device)
            self.num_frames = self.num_frames.to(device)
        self.resident = self.data_dev is not None

    def _host_batch(self, index: np.ndarray) -> Tensor:
        batch = torch.from_numpy(np.asarray(self.train.data[index], dtype=np.float32))
        return batch.pin_memory() if self.device.type == "cuda" else batch

    def batches(self, indices: list[np.ndarray]):
        """Yield ``(x, num_frames, index_tensor)`` for each sorted index array, in order."""
        if self.device.type != "cuda":
            for index in indices:
                yield self._host_batch(index), self.num_frames[index], torch.from_numpy(index)
            return
        if self.resident:  # the epoch's indices go to the device in one copy; batches are gathered there
            all_idx = torch.from_numpy(np.concatenate(indices)).to(self.device)
            for idx in all_idx.split([len(i) for i in indices]):  # sizes known on the host: no synchronisation
                yield self.data_dev.index_select(0, idx), self.num_frames.index_select(0, idx), idx
            return
        # pinned host gather in a thread, one batch ahead; copy on a side stream
        ahead: queue.Queue = queue.Queue(maxsize=2)

        def produce() -> None:
            for index in indices:
                ahead.put((index, self._host_batch(index)))
            ahead.put(None)

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        current = torch.cuda.current_stream(self.device)
        while (item := ahead.get()) is not None:
            index, host = item
            with torch.cuda.stream(self.stream):
                x = host.to(self.device, non_blocking=True)
                idx = torch.from_numpy(index).to(self.device, non_blocking=True)
            current.wait_stream(self.stream)
            x.record_stream(current)
            idx.record_stream(current)
            yield x, self.num_frames.index_select(0, idx), idx
        thread.join()


def move_aside(path: Path, why: str) -> Path:
    """Rename an unreadable file to ``<name>.unreadable-<UTC time>`` (kept for inspection) and warn."""
    target = path.with_name(f"{path.name}.unreadable-{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S%f')}")
    path.replace(target)
    log.warning("%s is unreadable (%s): moved to %s; it is computed again", path, why, target.name)
    return target


def _load_state(path: Path, device: torch.device) -> dict[str, Any] | None:
    """The resumable state, loaded without executing code (``weights_only=True``: tensors and plain
    containers only). A truncated, empty or foreign file is moved aside with a warning (None returned: the
    checkpoint restarts from epoch 0); nothing in it runs."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or not {"epoch", "encoder", "objective", "optimizer"} <= set(state):
            raise ValueError("not a pretraining state")
        return state
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, it is not used
        if dist_utils.rank() == 0:
            move_aside(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        dist_utils.barrier()
        return None


@dataclass(frozen=True)
class TrainingOptions:
    """How a pretraining reports and saves (the same for every model of a run).

    Attributes:
        log_every: steps between reads of the device-side losses (each read is one host synchronisation).
        tensorboard: also write TensorBoard events (when the ``tensorboard`` package is installed).
        wandb_project: also log to this Weights & Biases project (needs ``wandb``).
        save_every_s: seconds between saves of the resumable state inside an epoch (None: at epoch ends only;
            0: after every step). A save reads the pending losses (one host synchronisation).
        save_objective: also write the objective's state (``objective.pt``: projectors, key encoders, queues;
            what ``export`` needs). A rehearsal does not: at the paper's size it is about 1 GB per model.

    Raises:
        ValueError: ``log_every`` below 1, a negative ``save_every_s``.
    """

    log_every: int = DEFAULT_LOG_EVERY
    tensorboard: bool = True
    wandb_project: str | None = None
    save_every_s: float | None = DEFAULT_SAVE_EVERY_S
    save_objective: bool = True

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.save_every_s is not None and not self.save_every_s >= 0:
            raise ValueError(f"save_every_s must be >= 0 seconds, got {self.save_every_s}")


@dataclass(frozen=True)
class PretrainTarget:
    """Where and as what one model trains.

    Attributes:
        workdir: directory for the resumable state, the live logs and the final checkpoint (shared by all ranks;
            only rank 0 writes).
        seed: seeds the sample order, the views (with the epoch and sample index) and DropPath.
        device: training device of this rank; views are made there.
        stream: ``joint``/``bone``/``motion``/``jmb``, derived from the augmented joints (as the official code).
        provenance: how it was trained, stored with the final checkpoint.
    """

    workdir: Path
    seed: int
    device: torch.device
    stream: str = "joint"
    provenance: Provenance | None = None


def pretrain(
    encoder: nn.Module,
    objective: nn.Module,
    train: SkeletonArrays,
    spec: PretrainSpec,
    target: PretrainTarget,
    options: TrainingOptions = TrainingOptions(),
    *,
    on_epoch: ProgressFn | None = None,
    on_step: StepProgressFn | None = None,
) -> PretrainResult:
    """Pretrain ``encoder`` with ``objective`` on ``train`` (labels unused), data-parallel inside a process group.

    Args:
        encoder: an encoder (``forward_features``; ``num_frames`` is the view length T).
        objective: ``forward(encoder, views) -> (loss, logs)``; owns its projectors. Logs may be floats or
            0-d tensors (kept on the device until the next log flush).
        train: training samples ``(N, C, T_max, V, M)`` with valid frame counts.
        spec: schedule (epochs, global batch size, optimiser, views, precision, compile, sync_batchnorm).
        target: where and as what this model trains (:class:`PretrainTarget`: folder, seed, device, stream,
            provenance).
        options: how it reports and saves (:class:`TrainingOptions`).
        on_epoch: called after each epoch with (epochs done, total, mean loss) (rank 0).
        on_step: called at each log flush with (steps done, total steps, samples/s, loss) (rank 0).
    Returns:
        the final checkpoint path, per-epoch history and wall time of this call.
    Raises:
        ValueError: fewer than 2 training samples (batch statistics need 2), frame counts outside
            ``[1, T]``, an unknown precision, a data-parallel run whose batches do not split evenly across the
            ranks with an objective that does not declare ``uneven_shards`` (:func:`check_uneven_shards`).
        FloatingPointError: the loss became NaN or infinite (the last completed epoch stays resumable).
    """
    # long: the epoch loop stays in one piece: the one host synchronisation per log block and the order of
    # the random draws (sample order, views by sample key, DropPath) that resuming and data-parallel
    # equivalence rest on are read in one place; setup and saving are in the helpers below
    start_time = time.perf_counter()
    workdir, seed, device, stream = Path(target.workdir), target.seed, target.device, target.stream
    log_every, save_every_s = options.log_every, options.save_every_s
    n = len(train)
    if n < 2:
        raise ValueError(f"pretraining needs at least 2 training samples, got {n}")
    world, rank = dist_utils.world_size(), dist_utils.rank()
    main = rank == 0
    batch_size = min(spec.batch_size, n)
    batch_sizes = epoch_batch_sizes(n, batch_size, spec.drop_last)
    check_uneven_shards(objective, batch_sizes, world)
    steps_per_epoch = len(batch_sizes)
    layout = get_layout(train.layout)
    check_num_frames(torch.as_tensor(np.asarray(train.num_frames)), train.data.shape[2], f"pretraining data {train.source}")
    if main:
        workdir.mkdir(parents=True, exist_ok=True)

    step_fn = TrainStep(encoder, objective, spec, device, distributed=dist_utils.is_distributed(),
                        steps_per_epoch=steps_per_epoch)
    order_gen = torch.Generator().manual_seed(seed)

    state_path = workdir / STATE_FILE
    # DropPath draws from the global generator: seed it here and keep its state in the resumable state
    torch.manual_seed(seed + 2)
    resumed = _resume(state_path, step_fn, order_gen, device)
    first_epoch = resumed.epoch
    history = resumed.history
    if resumed.epoch or resumed.step:
        log.info("resuming pretraining in %s from epoch %d/%d, step %d", workdir, resumed.epoch, spec.epochs, resumed.step)

    views_of = ViewMaker(objective, spec.views, encoder.num_frames, layout, stream)
    source = BatchSource(train, device)
    logger = StepLogger(workdir / LOG_FILE, resume_epoch=first_epoch, resume_step=resumed.step,
                        tensorboard_dir=workdir / "tensorboard" if options.tensorboard else None,
                        wandb_project=options.wandb_project,
                        wandb_name=workdir.name, device=device) if main else None
    total_steps = spec.epochs * steps_per_epoch
    stop = StopRequest(enabled=not dist_utils.is_distributed())
    last_save = time.perf_counter()
    try:
        stop.install()
        for epoch in range(first_epoch, spec.epochs):
            step_fn.train()
            if hasattr(objective, "start_epoch"):
                objective.start_epoch(epoch, spec.epochs)
            epoch_order = order_gen.get_state()  # the epoch's order is drawn again from this on a mid-epoch resume
            splits, shards = _epoch_shards(torch.randperm(n, generator=order_gen).numpy(), batch_sizes, world, rank)
            skip = resumed.step if epoch == first_epoch else 0
            # the epoch's lr as it started (a per-step schedule has moved it by a mid-epoch resume)
            lr = resumed.epoch_lr if skip and resumed.epoch_lr is not None else step_fn.optimizer.param_groups[0]["lr"]
            pending: list[tuple[int, Tensor, dict[str, Tensor]]] = []
            epoch_rows: list[dict[str, float]] = list(resumed.epoch_rows) if skip else []
            t_flush = time.perf_counter()
            for step, (x, nf, idx) in enumerate(source.batches(shards[skip:]), start=skip):
                views = views_of(x, nf, SampleKeys(seed, epoch, idx))
                with dist_utils.batch_shards(splits[step]):  # the gathers see the global batch, any split
                    loss, logs = step_fn(views)
                pending.append((step, loss, logs))
                now = time.perf_counter()
                last = step == steps_per_epoch - 1
                save_now = not last and (stop.requested or (save_every_s is not None and now - last_save >= save_every_s))
                if len(pending) >= log_every or last or save_now:
                    rows = _read_pending(pending, device)  # the one host synchronisation
                    rate = sum(batch_sizes[s] for s, _, _ in pending) / max(now - t_flush, 1e-9)
                    t_flush = now
                    _check_finite(rows, epoch, workdir)
                    epoch_rows.extend(v for _, v in rows)
                    if logger is not None:
                        logger.log(epoch + 1, rows, steps_per_epoch, lr=lr, samples_per_s=rate)
                        if on_step is not None:
                            on_step(epoch * steps_per_epoch + step + 1, total_steps, rate, rows[-1][1]["loss"])
                    pending = []
                if save_now:  # inside the epoch: the state after this step
                    if main:
                        _save_state(state_path, step_fn, epoch, epoch_order, device, history, step=step + 1,
                                    epoch_rows=epoch_rows, epoch_lr=lr)
                        if logger is not None:
                            logger.flush()
                    last_save = time.perf_counter()
                    if stop.requested:
                        raise KeyboardInterrupt(f"pretraining stopped by {stop.name} at epoch {epoch + 1} step "
                                                f"{step + 1}; its state is saved in {state_path}")
            step_fn.end_epoch()
            record = {"epoch": epoch + 1, "loss": float(np.mean([r["loss"] for r in epoch_rows])), "lr": lr}
            record.update({key: float(np.mean([r[key] for r in epoch_rows])) for key in epoch_rows[0] if key != "loss"})
            history.append(record)
            if main:
                _save_state(state_path, step_fn, epoch + 1, order_gen.get_state(), device, history)
                if logger is not None:
                    logger.flush()
                if on_epoch is not None:
                    on_epoch(epoch + 1, spec.epochs, record["loss"])
            last_save = time.perf_counter()
            if stop.requested and epoch + 1 < spec.epochs:
                raise KeyboardInterrupt(f"pretraining stopped by {stop.name} after epoch {epoch + 1}; its state is "
                                        f"saved in {state_path}")
    finally:
        stop.uninstall()
        if logger is not None:
            logger.close()

    checkpoint = _finish(workdir, encoder, objective, spec.epochs, history, target.provenance, main,
                         options.save_objective)
    if stop.requested:  # the signal came during the last epoch: the model is finished and saved; stop now
        raise KeyboardInterrupt(f"pretraining stopped by {stop.name} after its last epoch; {checkpoint} is complete")
    return PretrainResult(checkpoint=checkpoint, history=history, wall_time_s=time.perf_counter() - start_time,
                          resumed_from_epoch=first_epoch, resumed_from_step=resumed.step)


class ViewMaker:
    """The views of a batch: the objective's own (:meth:`Objective.make_views`: AimCLR's extreme
    augmentations, CMD's modalities), else the protocol's views (:func:`make_views` with ``spec.views``;
    ``num_views`` the protocol's, else what the objective consumes: MG-FD 4, InfoNCE 2) in the row's stream."""

    def __init__(self, objective: nn.Module, views: ViewOptions, out_frames: int, layout: Layout, stream: str) -> None:
        self.objective, self.out_frames, self.layout, self.stream = objective, out_frames, layout, stream
        self.options = views.options()
        self.num_views = int(getattr(objective, "num_views", 4)) if views.num_views is None else views.num_views
        self.own = getattr(type(objective), "make_views", Objective.make_views) is not Objective.make_views

    def __call__(self, x: Tensor, num_frames: Tensor, keys: SampleKeys) -> list[Tensor]:
        views = self.objective.make_views(x, num_frames, out_frames=self.out_frames, keys=keys, layout=self.layout,
                                          stream=self.stream) if self.own else None
        if views is None:
            views = make_views(x, num_frames, num_views=self.num_views, out_frames=self.out_frames, generator=keys,
                               check=False, **self.options)
            views = [to_stream(v, self.stream, self.layout) for v in views]
        return views


@dataclass
class Resumed:
    """Where a resumed pretraining continues: completed epochs, steps done in the next one (0: at its start)
    with their loss rows, and the history of the completed epochs."""

    epoch: int = 0
    step: int = 0
    epoch_rows: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)
    epoch_lr: float | None = None


def _resume(state_path: Path, step_fn: TrainStep, order_gen: torch.Generator, device: torch.device) -> Resumed:
    """The resumable state restored into ``step_fn``, ``order_gen`` (at the start of the epoch to continue)
    and the global RNGs; a fresh start when there is none."""
    state = _load_state(state_path, device) if state_path.exists() else None
    if state is None:
        return Resumed()
    step_fn.load_state_dict(state)
    order_gen.set_state(state["order_gen"].cpu())  # RNG states are CPU byte tensors
    torch.set_rng_state(state["torch_rng"].cpu())
    if device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    return Resumed(epoch=int(state["epoch"]), step=int(state.get("step") or 0),
                   epoch_rows=list(state.get("epoch_rows") or []), history=list(state["history"]),
                   epoch_lr=state.get("epoch_lr"))


def _save_state(state_path: Path, step_fn: TrainStep, epochs_done: int, epoch_order: Tensor, device: torch.device,
                history: list[dict], *, step: int = 0, epoch_rows: list[dict] | None = None,
                epoch_lr: float | None = None) -> None:
    """The resumable state atomically: after ``epochs_done`` epochs and ``step`` steps of the next (model,
    optimiser, scaler, the RNGs; ``epoch_order``: the sample-order generator's state at that epoch's start)."""
    state = step_fn.state_dict()
    state.update(epoch=epochs_done, step=step, epoch_rows=list(epoch_rows or []), epoch_lr=epoch_lr, order_gen=epoch_order,
                 torch_rng=torch.get_rng_state(),
                 cuda_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None, history=history)
    torch_save_atomic(state, state_path)


class StopRequest:
    """SIGINT and SIGTERM, caught during a pretraining so that it stops at the next step boundary with its
    state saved (a second signal stops at once). Installed in the main thread of a single process only (a
    torchrun rank is stopped by torchrun); the previous handlers come back afterwards."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def install(self) -> None:
        if self.enabled:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _epoch_shards(perm: np.ndarray, batch_sizes: list[int], world: int,
                  rank: int) -> tuple[list[list[int]], list[np.ndarray]]:
    """Per global batch of one epoch's order ``perm``: its split across the ranks (:func:`shard_sizes`) and
    this rank's sample indices (sorted within the batch: the same global batch whatever the world size)."""
    starts = np.cumsum([0, *batch_sizes])
    splits = [dist_utils.shard_sizes(size, world) for size in batch_sizes]
    shards = [np.sort(perm[a:a + size])[sum(split[:rank]):sum(split[:rank + 1])]
              for a, size, split in zip(starts, batch_sizes, splits)]
    return splits, shards


def _check_finite(rows: list[tuple[int, dict[str, float]]], epoch: int, workdir: Path) -> None:
    """Raise FloatingPointError at the first step whose loss is NaN or infinite."""
    for s, values in rows:
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"pretraining loss is {values['loss']} at epoch {epoch + 1} step "
                                     f"{s} ({workdir}); the resumable state after epoch {epoch} is kept")


def _finish(workdir: Path, encoder: nn.Module, objective: nn.Module, epochs: int, history: list[dict],
            provenance: Provenance | None, main: bool, save_objective: bool = True) -> Path:
    """The final checkpoint (rank 0 writes encoder, history and projectors, and drops the resumable state);
    every rank returns once it is there."""
    encoder.eval()
    checkpoint: Path | str | None = workdir / ENCODER_FILE
    if main:
        write_json_atomic(workdir / HISTORY_FILE, history)
        checkpoint = save_encoder(workdir / ENCODER_FILE, encoder, epochs=epochs, history=history, **(dataclasses.asdict(provenance) if provenance else {}))
        if save_objective:
            torch_save_atomic(objective.state_dict(), workdir / OBJECTIVE_FILE)  # projectors, for later analysis
        # the state file (optimiser moments included) is no longer needed once the encoder is final
        (workdir / STATE_FILE).unlink(missing_ok=True)
    dist_utils.barrier()  # every rank sees the finished checkpoint
    return Path(checkpoint) if checkpoint else workdir / ENCODER_FILE


def random_views(encoder: nn.Module, objective: nn.Module, spec: PretrainSpec, shape: tuple[int, ...], layout_name: str,
                 stream: str, batch: int, device: torch.device | str = "cpu", seed: int = 0) -> list[Tensor]:
    """The pretraining views (:class:`ViewMaker`: the objective's own, else ``spec.views``) of ``batch`` random
    samples of the data's ``shape`` ``(N, C, T, V, M)`` with every frame valid, drawn from ``seed``: the input
    of a step whose cost is counted (:func:`pretraining_flops`, :func:`usdrl_bench.train.measure.measure_step`)."""
    _, c, t, v, m = shape
    x = torch.randn((batch, c, t, v, m), generator=torch.Generator().manual_seed(seed)).to(device)
    nf = torch.full((batch,), t, dtype=torch.int64, device=device)
    keys = SampleKeys(seed, 0, torch.arange(batch, device=device))
    return ViewMaker(objective, spec.views, encoder.num_frames, get_layout(layout_name), stream)(x, nf, keys)


def pretraining_flops(encoder: nn.Module, objective: nn.Module, shape: tuple[int, ...], layout_name: str,
                      spec: PretrainSpec, stream: str = "joint", batch: int = 4) -> float:
    """FLOPs of one pretraining step per sample: the objective's forward and backward (its projectors,
    decoder, key encoders and extra modalities included) on a batch of ``batch`` random samples of the
    data's ``shape`` ``(N, C, T, V, M)``, counted by ``torch.utils.flop_counter`` (matrix products and
    convolutions), divided by ``batch``. Run on copies: the modules passed are not changed (no queue
    write, no momentum step). The optimiser's update is not counted."""

    enc, obj = copy.deepcopy(encoder).cpu().train(), copy.deepcopy(objective).cpu().train()
    views = random_views(enc, obj, spec, shape, layout_name, stream, batch)
    counter = FlopCounterMode(display=False)
    with counter:
        loss, _ = obj(enc, views)
        loss.backward()
    return float(counter.get_total_flops()) / batch


def epoch_batch_sizes(n: int, batch_size: int, drop_last: bool = False) -> list[int]:
    """Global batch sizes of one epoch over ``n`` samples: full batches of ``batch_size``, then the rest
    as a last, smaller batch, as the official loader does (``DataLoader`` without ``drop_last``).

    The last batch is left out when ``drop_last``, or when fewer than 2 samples remain: batch statistics
    (BatchNorm, MG-FD's variances) need 2. The sizes do not depend on the number of processes: a
    data-parallel run splits each batch across its ranks (:func:`usdrl_bench.distributed.shard_sizes`),
    unevenly where the process count does not divide it, so it trains on the batches of one process.

    Raises:
        ValueError: ``batch_size`` < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    full, rest = divmod(n, batch_size)
    sizes = [batch_size] * full
    if not drop_last and rest >= 2:
        sizes.append(rest)
    return sizes


def check_uneven_shards(objective: nn.Module, batch_sizes: list[int], world: int) -> None:
    """Refuse a data-parallel run in which some batch does not split evenly across the ``world`` ranks
    when ``objective`` does not declare ``uneven_shards = True`` (:class:`usdrl_bench.Objective`): its loss
    might then not be the global batch's, and the run would train another model than one process.

    Raises:
        ValueError: naming the objective, the uneven batches and the ways out.
    """
    if world <= 1 or getattr(objective, "uneven_shards", False):
        return
    uneven = sorted({b for b in batch_sizes if b % world})
    if uneven:
        name = type(objective).__name__
        raise ValueError(
            f"objective {name} does not declare uneven_shards = True, and {world} processes cannot split "
            f"batch(es) of {', '.join(map(str, uneven))} samples evenly: its loss might not be the global batch's. "
            f"Compute it from tensors gathered with usdrl_bench.distributed.gather_with_grad (per-sample means "
            f"with batch_mean) and set {name}.uneven_shards = True, or choose a batch size and process count "
            "that divide (pretrain: {drop_last: true} leaves the last, smaller batch out)")


def _read_pending(pending: list[tuple[int, Tensor, dict[str, Any]]], device: torch.device) -> list[tuple[int, dict[str, float]]]:
    """Read the losses and logged terms of several steps in one device-to-host transfer (averaged over the
    ranks of a data-parallel run: every rank calls this at the same steps)."""
    keys = [k for k in pending[0][2] if k != "loss"]
    stacked = torch.stack([torch.stack([loss.float().reshape(())] +
                                       [torch.as_tensor(logs[k], device=loss.device).float().reshape(()) for k in keys])
                           for _, loss, logs in pending])
    if dist_utils.is_distributed():  # a rank's share of a per-sample mean (InfoNCE) -> the global batch's

        dist.all_reduce(stacked)
        stacked = stacked / dist.get_world_size()
    values = stacked.cpu().tolist()
    return [(step, dict(zip(["loss", *keys], row))) for (step, _, _), row in zip(pending, values)]
