"""Scheduling the planned pretrainings: ``--jobs`` worker processes, or data-parallel torchrun ranks.

Both take the checkpoints a :class:`~usdrl_bench.protocols.plan.RunPlan` still needs and train them under
the plan's keys (a worker or a rank never recomputes a key). Cluster jobs (submitit) are in
:mod:`usdrl_bench.protocols.launch`.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from torch.utils.flop_counter import FlopCounterMode

from usdrl_bench import distributed as dist_utils
from usdrl_bench import registry
from usdrl_bench.io import die_with_parent, stable_hash
from usdrl_bench.protocols.plan import CellPlan, DataStore, RunPlan, build_encoder
from usdrl_bench.protocols.training import CheckpointTrainer, TrainingOptions

__all__ = ["pretrain_cost", "pretrain_distributed", "pretrain_in_workers"]


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
    views = 4 if cell.pretrain.views.num_views is None else cell.pretrain.views.num_views
    return cache[key] * shape[0] * cell.pretrain.epochs * views


def pretrain_in_workers(trainer: CheckpointTrainer, run: RunPlan, jobs: int, progress: Progress | None = None) -> int:
    """Pretrain, in ``jobs`` worker processes, every checkpoint ``run`` still needs (each once), so that the
    evaluations that follow find them cached. On a CPU each worker gets ``torch.get_num_threads() // jobs``
    threads: small models run faster as several single-threaded trainings than as one multi-threaded one.
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
    threads = max(1, torch.get_num_threads() // jobs) if device.type == "cpu" else torch.get_num_threads()
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
    init = (str(run.results_dir), run.data_root, threads, slots, trainer.options)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=init) as pool:
        futures = [pool.submit(_pretrain_in_worker, plan) for plan in order]
        for future in as_completed(futures):
            key, seconds = future.result()
            trainer.trained[key] = seconds
            if progress is not None and task is not None:
                progress.advance(task)
    if progress is not None and task is not None:
        progress.remove_task(task)
    return len(todo)


def pretrain_distributed(trainer: CheckpointTrainer, run: RunPlan, progress: Progress | None = None) -> int:
    """Inside a process group (torchrun): train every missing checkpoint of ``run`` data-parallel across the
    ranks, one after the other. Every rank must call it with the same plan. Returns the number trained."""
    todo = run.missing_checkpoints() if dist_utils.rank() == 0 else {}
    # rank 0's plans (keys included): the same work, under the same keys, in the same order, on every rank
    work: list[CellPlan] = dist_utils.broadcast_object([todo[key] for key in sorted(todo)])
    for plan in work:
        trainer.checkpoint(plan, progress)
    return len(work)


# --- worker processes (pretrain_in_workers) ---------------------------------------------------------
_WORKER: CheckpointTrainer | None = None
_PARENT_DATA: dict = {}


def _init_worker(results_dir: str, data_root: Path | None, threads: int, slots: Any, options: TrainingOptions) -> None:
    global _WORKER
    die_with_parent()  # a main process killed with -9 takes its workers with it (no orphans holding memory)
    torch.set_num_threads(threads)
    device = torch.device(slots.get())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    console = Console(stderr=True, quiet=True)
    store = DataStore(Path(results_dir), data_root, console)
    store.loaded = dict(_PARENT_DATA)
    _WORKER = CheckpointTrainer(Path(results_dir), store, device, console, options)


def _pretrain_in_worker(plan: CellPlan) -> tuple[str, float]:
    """Train the checkpoint of ``plan`` under the key the parent computed (never recomputed here)."""
    assert _WORKER is not None
    cell = plan.cell
    registry.load_builtins()
    # already there in a forked worker; needed in a spawned one
    registry.load_plugins(cell.protocol.plugins, relative_to=Path(cell.protocol.file).resolve().parent)
    with Progress(disable=True) as progress:
        _, seconds = _WORKER.checkpoint(plan, progress)
    return plan.checkpoint_hash, seconds
