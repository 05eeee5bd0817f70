"""A planned checkpoint, made available: loaded when cached, else pretrained (resuming) or initialised.

:class:`CheckpointTrainer` trains under the key of a :class:`~usdrl_bench.protocols.plan.CellPlan` (never
recomputed) and holds the checkpoint's file lock while training: a second process (another ``run``, a
``--jobs`` worker, a cluster job) that needs the same checkpoint waits and loads it instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import torch
from filelock import FileLock
from rich.console import Console
from rich.progress import Progress

from usdrl_bench import distributed as dist_utils
from usdrl_bench._version import __version__
from usdrl_bench.encoders.checkpoint import load_encoder, save_encoder
from usdrl_bench.io import git_revision, write_json_atomic
from usdrl_bench.objectives import create_objective
from usdrl_bench.protocols.plan import CellPlan, DataStore, build_encoder
from usdrl_bench.protocols.released import load_released
from usdrl_bench.train.pretrain import ENCODER_FILE, PretrainTarget, TrainingOptions, move_aside, pretrain
from usdrl_bench.train.spec import Provenance

__all__ = ["CheckpointTrainer", "describe_trained"]


class CheckpointTrainer:
    """Loads or trains planned checkpoints under ``results_dir/checkpoints/``.

    Attributes:
        trained: checkpoint key -> pretraining wall time (s) of those this process (or its workers) trained.
        reused: keys another process trained while this one waited for the lock.
    """

    def __init__(self, results_dir: Path, store: DataStore, device: torch.device, console: Console,
                 options: TrainingOptions = TrainingOptions()) -> None:
        self.results_dir, self.store, self.device, self.console = Path(results_dir), store, device, console
        self.options = options
        self.trained: dict[str, float] = {}
        self.reused: set[str] = set()

    def lock(self, name: str) -> FileLock:
        """An inter-process file lock ``results/locks/<name>.lock``: two runs, or two jobs, that need the
        same checkpoint or record do the work once; the second waits, then finds it done."""
        path = self.results_dir / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def checkpoint(self, plan: CellPlan, progress: Progress | None = None) -> tuple[torch.nn.Module, float]:
        """The cell's encoder: loaded when cached, else pretrained (resuming) or randomly initialised.

        Inside a process group every rank must call this together (rank 0 holds the lock and tells the
        others whether to train). Returns (encoder, pretraining wall time in seconds: 0 when cached before
        this run)."""
        workdir = self.results_dir / "checkpoints" / plan.checkpoint_hash
        path = workdir / ENCODER_FILE
        if not dist_utils.is_distributed() and path.exists():  # (in a process group rank 0 decides for all)
            encoder = self._load_cached(path)
            if encoder is not None:
                return encoder, self.trained.get(plan.checkpoint_hash, 0.0)
        main = dist_utils.rank() == 0
        with self.lock(f"checkpoint-{plan.checkpoint_hash}") if main else contextlib.nullcontext():
            encoder = self._load_cached(path) if main and path.exists() else None
            if dist_utils.broadcast_object(encoder is not None):  # cached, or trained by another process meanwhile
                if plan.checkpoint_hash not in self.trained:
                    self.reused.add(plan.checkpoint_hash)
                return encoder if encoder is not None else load_encoder(path), self.trained.get(plan.checkpoint_hash, 0.0)
            return self._train(plan, workdir, progress)

    def _load_cached(self, path: Path) -> torch.nn.Module | None:
        """A cached encoder, or None after moving an unreadable one aside (truncated, empty, foreign: it is
        retrained, with a warning; nothing in it runs: ``weights_only`` loading)."""
        try:
            return load_encoder(path)
        except Exception as exc:  # noqa: BLE001
            moved = move_aside(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            self.console.print(f"[yellow]warning:[/] cached checkpoint {path} is unreadable ({type(exc).__name__}); "
                               f"moved to {moved.name} and trained again", highlight=False)
            return None

    def _write_config(self, plan: CellPlan, workdir: Path) -> None:
        cell = plan.cell
        write_json_atomic(workdir / "config.json", {
            "row": dataclasses.asdict(cell.row), "encoder_config": plan.encoder_config,
            "dataset": plan.pretrain_dataset_identity,
            "seed": cell.seed, "checkpoint_hash": plan.checkpoint_hash,
            "pretrain": plan.pretrain_identity, "objective_options": cell.objective_options,
            "device": str(self.device), "world_size": dist_utils.world_size(),
            "package_version": __version__, "git_revision": git_revision(), "torch_version": torch.__version__,
        })

    def _train(self, plan: CellPlan, workdir: Path, progress: Progress | None) -> tuple[torch.nn.Module, float]:
        cell = plan.cell
        if cell.row.checkpoint is not None:
            return self._released(plan, workdir)
        train, _ = self.store.load(cell.pretrain_dataset)
        encoder = build_encoder(cell, train.shape)
        main = dist_utils.rank() == 0
        if main:
            self._write_config(plan, workdir)
        if cell.row.objective is None:
            if main:
                save_encoder(workdir / ENCODER_FILE, encoder.eval(), objective=None)
            dist_utils.barrier()
            return encoder.eval(), 0.0
        t0 = time.perf_counter()
        objective = create_objective(cell.row.objective, encoder, **cell.objective_options)
        spec = plan.schedule
        assert spec is not None  # planned for a row with an objective
        label = f"pretrain {cell.row.label} (seed {cell.seed})"
        task = progress.add_task(label, total=None) if progress is not None and main else None

        def on_step(done: int, total: int, rate: float, loss: float) -> None:
            if progress is not None and task is not None:
                progress.update(task, completed=done, total=total,
                                description=f"{label} loss {loss:.3f}, {rate:,.0f} samples/s")

        provenance = Provenance(cell.row.objective, cell.objective_options, spec.precision, spec.compile,  # as keyed
                                dist_utils.world_size(), str(self.device))
        target = PretrainTarget(workdir, cell.seed, self.device, cell.pretrain_dataset.stream, provenance)
        options = dataclasses.replace(self.options, save_objective=cell.rehearsal is None)  # a rehearsal's: not for export
        result = pretrain(encoder, objective, train, spec, target, options, on_step=on_step)
        if progress is not None and task is not None:
            progress.remove_task(task)
        if (result.resumed_from_epoch or result.resumed_from_step) and main:
            self.console.print(f"resumed {cell.row.label} from epoch {result.resumed_from_epoch}"
                               + (f", step {result.resumed_from_step}" if result.resumed_from_step else ""))
        seconds = time.perf_counter() - t0
        self.trained[plan.checkpoint_hash] = seconds
        return encoder.eval(), seconds

    def _released(self, plan: CellPlan, workdir: Path) -> tuple[torch.nn.Module, float]:
        """A released-weights row's encoder, read from its file and kept as a suite checkpoint under its key."""
        row = plan.cell.row
        encoder = load_released(row.checkpoint, row.method, row.checkpoint_args).eval()
        if dist_utils.rank() == 0:
            self._write_config(plan, workdir)
            save_encoder(workdir / ENCODER_FILE, encoder, released=plan.pretrain_dataset_identity["released"])
        dist_utils.barrier()
        return encoder, 0.0


def describe_trained(trainer: CheckpointTrainer) -> str:
    """One line: how many checkpoints this run trained and how many it reused from a concurrent run."""
    return (f"checkpoints: {len(trainer.trained)} trained by this run, {len(trainer.reused)} trained by a "
            "concurrent run and reused")

