"""Scheduling the planned pretrainings: ``--jobs`` worker processes, or data-parallel torchrun ranks.

Both take the checkpoints a :class:`~usdrl_bench.protocols.plan.RunPlan` still needs and train them under
the plan's keys (a worker or a rank never recomputes a key). Cluster jobs (submitit) are in
:mod:`usdrl_bench.protocols.launch`.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.flop_counter import FlopCounterMode

from usdrl_bench import distributed as dist_utils
from usdrl_bench import registry
from usdrl_bench.components import load_builtins
from usdrl_bench.data.root import Location
from usdrl_bench.io import die_with_parent, stable_hash
from usdrl_bench.protocols.plan import CellPlan, DataStore, RunPlan, build_encoder
from usdrl_bench.protocols.training import CheckpointTrainer
from usdrl_bench.train.pretrain import TrainingOptions

__all__ = ["pretrain_cost", "pretrain_distributed", "pretrain_in_workers", "threads_per_job"]


def pretrain_cost(plan: CellPlan, store: DataStore, flops_cache: dict[str, float] | None = None) -> float:
    """An estimate of a checkpoint's pretraining work, to schedule the longest first: the encoder's
    forward FLOPs on one sample (``torch.utils.flop_counter``) x training samples x epochs x views."""
    cell = plan.cell
    shape = store.train_shape(cell.pretrain_dataset)
    cache = {} if flops_cache is None else flops_cache
    key = stable_hash({"encoder": cell.row.encoder, "config": plan.encoder_config})
    if key not in cache:  # one count per encoder configuration
        encoder = build_encoder(cell, shape).eval()
        cfg = encoder.config
        x = torch.zeros((1, cfg.in_channels, encoder.num_frames, cfg.num_joints, cfg.num_bodies))
        counter = FlopCounterMode(display=False)
        try:
            with counter, torch.no_grad():
                encoder(x)
            cache[key] = float(counter.get_total_flops())
        except Exception:  # noqa: BLE001 - an estimate only: an encoder that cannot run on zeros sorts last
            cache[key] = 0.0
    views = 4 if cell.schedule.views.num_views is None else cell.schedule.views.num_views
    return cache[key] * shape[0] * cell.schedule.epochs * views


def pretrain_in_workers(trainer: CheckpointTrainer, run: RunPlan, jobs: int, progress: Progress | None = None) -> int:
    """Pretrain, in ``jobs`` worker processes, every checkpoint ``run`` still needs (each once), so that the
    evaluations that follow find them cached. On a CPU each worker gets :func:`threads_per_job` threads: small
    models run faster as several single-threaded trainings than as one multi-threaded one. Each worker's
    pretraining shows in ``progress`` (its loss, samples/s and time left, at least once an epoch).
    On CUDA each worker trains on its own GPU (``cuda:0`` ... ``cuda:<jobs-1>``). The longest pretrainings
    start first (:func:`pretrain_cost`). Returns the number of checkpoints trained (0 with ``jobs == 1``:
    the evaluation loop then trains them in this process).

    Raises:
        ValueError: ``jobs`` < 1, or more jobs than visible GPUs on CUDA.
    """
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    todo = run.missing_checkpoints()
    if not todo or jobs == 1:
        return 0
    device = trainer.device
    devices: list[str] = ["cpu"]
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if jobs > count:
            raise ValueError(f"--jobs {jobs} on CUDA trains one model per GPU, but {count} GPU(s) are visible")
        devices = [f"cuda:{i}" for i in range(jobs)]
    threads = threads_per_job(jobs) if device.type == "cpu" else torch.get_num_threads()
    global _PARENT_DATA
    if device.type != "cuda":  # loaded once here, inherited by the forked workers
        for plan in todo.values():
            trainer.store.load(plan.cell.pretrain_dataset)
    _PARENT_DATA = trainer.store.loaded
    # CPU: forked workers inherit the registries (plug-ins included) and the loaded data; CUDA cannot be
    # used in a child forked after the parent touched the driver, so GPU workers start fresh (spawn),
    # import the protocol's plug-ins and load the data themselves
    context = multiprocessing.get_context("spawn" if device.type == "cuda" else "fork")
    slots = context.Queue()
    for i in range(jobs):
        slots.put(devices[i % len(devices)])
    task = progress.add_task(f"pretrain {len(todo)} models, {jobs} at a time", total=len(todo)) if progress else None
    flops: dict[str, float] = {}
    order = sorted(todo.values(), key=lambda p: pretrain_cost(p, trainer.store, flops), reverse=True)
    updates = context.Queue()  # the workers' progress lines (RemoteProgress), drawn here
    init = (str(run.results_dir), run.locations, threads, slots, trainer.options, updates)
    lines = ProgressRelay(progress)
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=init)
    try:
        pending = {pool.submit(_pretrain_in_worker, plan) for plan in order}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            lines.drain(updates)
            for future in done:
                key, seconds = future.result()
                trainer.trained[key] = seconds
                if progress is not None and task is not None:
                    progress.advance(task)
    except BaseException:
        # Ctrl-C (the workers got it too: each running pretraining saves its state at its next step and
        # stops), or a failure: start nothing more, wait for the running ones, then say it once, above
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)
        lines.drain(updates)
        lines.close()
    if progress is not None and task is not None:
        progress.remove_task(task)
    return len(todo)


def threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` concurrent trainings: the cores this process may use
    (``sched_getaffinity``) less those other processes keep busy now (:func:`busy_cores`), shared out, at
    least 1. ``OMP_NUM_THREADS``, when set, is taken as given. On a loaded machine, more threads than free
    cores make every OpenMP barrier wait on a descheduled thread: an epoch took over 50 s with 2 threads on a
    busy 2-core machine, 5 s with 1."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    free = max(1, min(cores, int(cores - busy_cores() + 0.5)))
    return max(1, free // max(1, jobs))


_BUSY: tuple[float, float] | None = None  # (when measured, busy cores): one measurement serves a run's start


def busy_cores(window_s: float = 0.3) -> float:
    """Cores kept busy by other processes now: the machine's non-idle CPU time over ``window_s`` seconds
    while this process sleeps (``/proc/stat``), else the 1-minute load average (which lags a load that just
    started by up to a minute). Measured once per 10 seconds."""
    global _BUSY
    now = time.monotonic()
    if _BUSY is not None and now - _BUSY[0] < 10:
        return _BUSY[1]
    try:
        first = _cpu_times()
        time.sleep(window_s)
        second = _cpu_times()
        total = sum(second) - sum(first)
        idle = (second[3] + second[4]) - (first[3] + first[4])  # idle and iowait
        busy = (total - idle) / total * (os.cpu_count() or 1) if total > 0 else 0.0
    except (OSError, ValueError, IndexError):
        try:
            busy = os.getloadavg()[0]
        except OSError:
            busy = 0.0
    _BUSY = (time.monotonic(), max(0.0, busy))
    return _BUSY[1]


def _cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of ``/proc/stat``: user, nice, system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as f:
        return [int(v) for v in f.readline().split()[1:9]]


class RemoteProgress:
    """The part of rich's ``Progress`` a trainer uses (``add_task``, ``update``, ``advance``,
    ``remove_task``), sent from a worker process to the parent's bar through a queue (:class:`ProgressRelay`)."""

    def __init__(self, updates: Any) -> None:
        self.updates, self.next_id = updates, 0

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        self.next_id += 1
        self.updates.put(("add", os.getpid(), self.next_id, {"description": description, "total": total, **fields}))
        return self.next_id

    def update(self, task: int, **fields: Any) -> None:
        self.updates.put(("update", os.getpid(), task, fields))

    def advance(self, task: int, advance: float = 1) -> None:
        self.updates.put(("advance", os.getpid(), task, {"advance": advance}))

    def remove_task(self, task: int) -> None:
        self.updates.put(("remove", os.getpid(), task, {}))


class ProgressRelay:
    """Applies the workers' :class:`RemoteProgress` messages to this process's bar (nothing without one)."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.tasks: dict[tuple[int, int], Any] = {}

    def drain(self, updates: Any) -> None:
        while True:
            try:
                kind, pid, task, fields = updates.get_nowait()
            except (queue.Empty, OSError, ValueError, EOFError):
                return
            if self.progress is None:
                continue
            key = (pid, task)
            if kind == "add":
                self.tasks[key] = self.progress.add_task(fields.pop("description"), **fields)
            elif key in self.tasks and kind == "update":
                self.progress.update(self.tasks[key], **fields)
            elif key in self.tasks and kind == "advance":
                self.progress.advance(self.tasks[key], fields["advance"])
            elif key in self.tasks and kind == "remove":
                self.progress.remove_task(self.tasks.pop(key))

    def close(self) -> None:
        if self.progress is not None:
            for task in self.tasks.values():
                self.progress.remove_task(task)
        self.tasks = {}


def pretrain_distributed(trainer: CheckpointTrainer, run: RunPlan, progress: Progress | None = None) -> int:
    """Inside a process group (torchrun): train every missing checkpoint of ``run`` data-parallel across the
    ranks, one after the other. Every rank must call it with the same plan. Returns the number trained."""
    todo = run.missing_checkpoints() if dist_utils.rank() == 0 else {}
    # rank 0's plans (keys and data locations included): the same work, under the same keys, on the same data,
    # in the same order, on every rank
    work: list[CellPlan]
    work, locations = dist_utils.broadcast_object(([todo[key] for key in sorted(todo)], run.locations))
    trainer.store.locations.update(locations)
    for plan in work:
        trainer.checkpoint(plan, progress)
    return len(work)


# --- worker processes (pretrain_in_workers) ---------------------------------------------------------
_WORKER: CheckpointTrainer | None = None
_UPDATES: Any = None
_PARENT_DATA: dict = {}


def _init_worker(results_dir: str, locations: dict[str, Location], threads: int, slots: Any, options: TrainingOptions,
                 updates: Any = None) -> None:
    global _WORKER, _UPDATES
    die_with_parent()  # a main process killed with -9 takes its workers with it (no orphans holding memory)
    # Ctrl-C reaches every worker: an idle one ignores it (no traceback), a training one saves its state at the
    # next step and stops (pretrain's own handler), and the parent says it once
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _UPDATES = updates
    torch.set_num_threads(threads)
    device = torch.device(slots.get())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    console = Console(stderr=True, quiet=True)
    store = DataStore(Path(results_dir), None, console, locations=locations)  # the plan's locations, no root
    store.loaded = dict(_PARENT_DATA)
    _WORKER = CheckpointTrainer(Path(results_dir), store, device, console, options)


def _pretrain_in_worker(plan: CellPlan) -> tuple[str, float]:
    """Train the checkpoint of ``plan`` under the key the parent computed (never recomputed here)."""
    assert _WORKER is not None
    cell = plan.cell
    load_builtins()
    # already there in a forked worker; needed in a spawned one
    registry.load_plugins(cell.protocol.plugins, relative_to=Path(cell.protocol.file).resolve().parent)
    if _UPDATES is not None:
        _, seconds = _WORKER.checkpoint(plan, RemoteProgress(_UPDATES))  # type: ignore[arg-type]
    else:
        with Progress(disable=True) as progress:
            _, seconds = _WORKER.checkpoint(plan, progress)
    return plan.checkpoint_hash, seconds
