"""Pretraining as cluster jobs (submitit): one job per missing checkpoint, on SLURM or locally.

``usdrl-bench run PROTOCOL --launcher slurm`` submits each checkpoint the protocol still needs as a SLURM
job through submitit (GPUs per job, partition and time limit as options), waits for them, then evaluates
in the launching process; ``--launcher local`` runs the same jobs with submitit's local executor (each in
its own process), which is how the tests exercise it. With ``gpus_per_job > 1`` a job runs one task per
GPU and trains data-parallel (DDP) inside the job, the process group set up from submitit's
environment.

Jobs receive the launching process's plans (:class:`~usdrl_bench.protocols.plan.RunPlan`: keys, data root),
never recompute them, and coordinate through the checkpoint's file lock
(:meth:`~usdrl_bench.protocols.training.CheckpointTrainer.checkpoint`): a
checkpoint that two jobs, or a job and another ``run``, need is trained once; the other waits and reuses it.
Job logs (stdout, stderr, pickled results) go under ``results/jobs/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit
import torch
from rich.console import Console

from usdrl_bench import distributed as dist_utils
from usdrl_bench import registry
from usdrl_bench.components import load_builtins
from usdrl_bench.data.root import Location
from usdrl_bench.protocols.plan import CellPlan, DataStore, RunPlan
from usdrl_bench.protocols.training import CheckpointTrainer
from usdrl_bench.train.pretrain import TrainingOptions

log = logging.getLogger(__name__)

__all__ = ["LauncherOptions", "PretrainJob", "submit_pretrainings"]

LAUNCHERS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class LauncherOptions:
    """How jobs are submitted.

    Attributes:
        launcher: ``local`` (submitit's local executor) or ``slurm``.
        gpus_per_job: GPUs (and DDP tasks) per job; 0 on a CPU.
        partition: SLURM partition (None: the cluster's default).
        time_min: job time limit in minutes.
        cpus_per_task: CPU cores per task.
        max_parallel: jobs running at once (local executor: waves of this size; SLURM: an array limit).
        slurm_options: extra ``slurm_*`` parameters for submitit (e.g. ``{"slurm_account": "x"}``).
    """

    launcher: str = "local"
    gpus_per_job: int = 0
    partition: str | None = None
    time_min: int = 24 * 60
    cpus_per_task: int = 4
    max_parallel: int = 8
    slurm_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.launcher not in ("local", "slurm"):
            raise ValueError(f"launcher must be local or slurm, got {self.launcher!r}")
        if self.gpus_per_job < 0 or self.time_min < 1 or self.cpus_per_task < 1 or self.max_parallel < 1:
            raise ValueError(f"invalid launcher options: {self}")


@dataclass
class PretrainJob:
    """A picklable job: train the checkpoint of ``plan`` under ``results_dir`` (submitit calls it).

    Inside the job the plug-ins of the protocol are imported, the process group is initialised when the
    job has several tasks, and :meth:`CheckpointTrainer.checkpoint` trains (or, when another process got
    there first, reuses) the checkpoint, under the key the launching process computed (``plan``; never
    recomputed in the job). Returns its hash.
    """

    results_dir: str
    plan: CellPlan
    device: str
    locations: dict[str, Location] = field(default_factory=dict)
    options: TrainingOptions = TrainingOptions()

    def __call__(self) -> str:
        load_builtins()
        cell = self.plan.cell
        registry.load_plugins(cell.protocol.plugins, relative_to=Path(cell.protocol.file).resolve().parent)
        device = torch.device(self.device)
        if int(os.environ.get("SUBMITIT_LOCAL_NTASKS", os.environ.get("SLURM_NTASKS", "1"))) > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
            ctx = dist_utils.init_from_env(device.type)
            if ctx is not None and device.type == "cuda":
                device = torch.device("cuda", ctx.local_rank)
        console = Console(stderr=True)
        store = DataStore(Path(self.results_dir), None, console, locations=self.locations)
        CheckpointTrainer(Path(self.results_dir), store, device, console, self.options).checkpoint(self.plan, None)
        if dist_utils.is_distributed():
            torch.distributed.destroy_process_group()
        return self.plan.checkpoint_hash


def _executor(options: LauncherOptions, folder: Path) -> submitit.Executor:
    if options.launcher == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=options.time_min, gpus_per_node=options.gpus_per_job,
                                   tasks_per_node=max(1, options.gpus_per_job), cpus_per_task=options.cpus_per_task)
        return executor
    executor = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
    params: dict[str, Any] = {"timeout_min": options.time_min, "gpus_per_node": options.gpus_per_job,
                              "tasks_per_node": max(1, options.gpus_per_job), "cpus_per_task": options.cpus_per_task,
                              "nodes": 1, "slurm_array_parallelism": options.max_parallel}
    if options.partition:
        params["slurm_partition"] = options.partition
    params.update(options.slurm_options)
    executor.update_parameters(**params)
    return executor


def submit_pretrainings(trainer: CheckpointTrainer, run: RunPlan, options: LauncherOptions, *,
                        console: Console | None = None) -> int:
    """Submit every checkpoint that ``run`` still needs as a job, wait for all, return how many were
    submitted. A failed job raises with its log path (submitit's ``FailedJobError``)."""
    todo = run.missing_checkpoints()
    if not todo:
        return 0
    folder = run.results_dir / "jobs" / "%j"
    executor = _executor(options, folder)
    device = "cuda" if options.gpus_per_job > 0 else "cpu"
    pending = [PretrainJob(str(run.results_dir.resolve()), plan, device, run.locations, trainer.options)
               for plan in todo.values()]
    wave = options.max_parallel if options.launcher == "local" else len(pending)
    done = 0
    for start in range(0, len(pending), wave):
        jobs = [executor.submit(job) for job in pending[start:start + wave]]
        if console is not None:
            console.print(f"submitted {len(jobs)} pretraining job(s) with the {options.launcher} launcher: "
                          + ", ".join(str(j.job_id) for j in jobs) + f" (logs under {run.results_dir}/jobs/)")
        for job in jobs:
            key = job.result()  # waits; raises FailedJobError with the job's stderr on failure
            trainer.trained[key] = 0.0
            done += 1
    return done
