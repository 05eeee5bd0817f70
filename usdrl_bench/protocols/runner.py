"""Run a protocol: pretrain each cell once (cached by content hash), evaluate many, write records.

Layout under ``results/``::

    checkpoints/<checkpoint_hash>/   config.json, state.pt (while training), encoder.pt, history.json
    features/<checkpoint_hash>-<data_hash>/{train,test}.npy
    records/<protocol>/<preset>/<dataset>-<split>/<row>-seed<k>-<evaluation>-<hash>.json

A pretrained checkpoint is keyed by everything that determines it (encoder and its configuration,
objective and options, dataset, split, stream, schedule, seed, and the code of the modules that
compute it), so every protocol and every evaluation that needs the same one reuses it, and running a
finished protocol again trains nothing. An interrupted run resumes: finished checkpoints and records
are kept, and a partly trained checkpoint continues from its last epoch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from usdrl_bench import __version__, registry
from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.loading import load_dataset
from usdrl_bench.encoders import create_encoder
from usdrl_bench.encoders.checkpoint import load_encoder
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.code_identity import module_code
from usdrl_bench.io import ensure_inside, git_revision, stable_hash, write_json_atomic
from usdrl_bench.objectives import create_objective
from usdrl_bench.protocols.spec import Cell, DatasetSpec
from usdrl_bench.records import RECORDS_SUBDIR, read_records, write_records
from usdrl_bench import distributed as dist_utils
from usdrl_bench.train.pretrain import DEFAULT_LOG_EVERY, ENCODER_FILE, pretrain, resolve_precision

log = logging.getLogger(__name__)

#: the module whose import closure is the training loop's code identity (views, streams, the step)
TRAIN_MODULE = "usdrl_bench.train.pretrain"


def eval_code(evaluation: str) -> str:
    """Code identity of an evaluation's results: :func:`module_code` of the module that defines the
    registered evaluation (its import closure: feature extraction, streams, the metric)."""
    return module_code(registry.EVALUATIONS.get(evaluation).__module__)


def component_code(registry_: registry.Registry, name: str) -> str:
    """:func:`module_code` of the module that defines a registered component (built-in or plug-in)."""
    return module_code(registry_.get(name).__module__)


def progress_columns() -> tuple:
    """The columns of the run's progress lines: description (with loss and samples/s while pretraining),
    bar, done/total, elapsed, time left."""
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


def dataset_identity(spec: DatasetSpec) -> dict[str, Any]:
    """What identifies a dataset for caching: name, absolute path, split, stream, reader options and the
    reader's code (:func:`module_code`)."""
    path = spec.resolved_path()
    reader = registry.DATASETS.get(spec.name)
    return {"name": spec.name, "path": str(path) if path else None, "split": spec.resolved_split(),
            "stream": spec.stream, "options": spec.options, "reader_code": module_code(reader.__module__)}


def data_identity(spec: DatasetSpec) -> dict[str, Any]:
    """:func:`dataset_identity` without the stream: what identifies the loaded joints (the streams are
    computed from them), the key of the in-memory data, the recorded shapes and the labelled subsets."""
    return {k: v for k, v in dataset_identity(spec).items() if k != "stream"}


@dataclass
class CellPlan:
    """What a cell trains and evaluates, computed once per run (:meth:`ProtocolRunner.plan`) and handed to
    whoever trains it (this process, a ``--jobs`` worker, every torchrun rank, a submitit job), so the key a
    checkpoint is trained under is the key its evaluations look up.

    Attributes:
        cell: the cell.
        encoder_config: the encoder's configuration (as built for the pretraining data).
        checkpoint_hash: the checkpoint's key (folder name under ``results/checkpoints/``).
        pretrain_identity: the schedule as it enters the key (:meth:`ProtocolRunner.pretrain_identity`);
            None for a random-init or ensemble row.
    """

    cell: Cell
    encoder_config: dict[str, Any]
    checkpoint_hash: str
    pretrain_identity: dict[str, Any] | None = None


class ProtocolRunner:
    """Runs the cells of one protocol preset.

    Args:
        results_dir: root of checkpoints, features and records.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        console: where progress and messages go.
        world_size: the number of processes the checkpoints of this run train on (torchrun's world, or a
            submitit job's GPUs; default: the current process group's size). It enters a key only with
            per-process BatchNorm statistics (``sync_batchnorm: false``); it is fixed here, not read when a
            key is computed, so rank 0 evaluating after the process group is gone looks up the keys the
            ranks trained under.
    """

    def __init__(self, results_dir: Path = Path("results"), device: torch.device | None = None,
                 console: Console | None = None, *, log_every: int = DEFAULT_LOG_EVERY, tensorboard: bool = True,
                 wandb_project: str | None = None, world_size: int | None = None) -> None:
        self.results_dir = Path(results_dir)
        self.world_size = dist_utils.world_size() if world_size is None else int(world_size)
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        self._plans: dict[int, tuple[Cell, CellPlan]] = {}  # id(cell) -> (cell, its plan): one key per cell
        self._flops: dict[str, float] = {}  # encoder configuration -> forward FLOPs of one sample
        self._costs: dict[str, dict[str, Any]] = {}  # checkpoint key -> parameters and pretraining FLOPs
        self.device = device or torch.device("cpu")
        self.console = console or Console(stderr=True)
        self.log_every, self.tensorboard, self.wandb_project = log_every, tensorboard, wandb_project
        self._data: dict[str, tuple[SkeletonArrays, SkeletonArrays]] = {}
        self._trained: dict[str, float] = {}  # checkpoints trained by this process (or its workers): wall time, s
        self.reused: set[str] = set()  # checkpoints another process trained while this one waited for it

    def lock(self, name: str):
        """An inter-process file lock ``results/locks/<name>.lock`` (filelock): two runs, or two jobs, that
        need the same checkpoint or record do the work once; the second waits, then finds it done."""
        from filelock import FileLock

        path = self.results_dir / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    # -- data -------------------------------------------------------------------------------------
    def data(self, spec: DatasetSpec) -> tuple[SkeletonArrays, SkeletonArrays]:
        # one load per dataset: the streams (bone, motion) are computed from these joints later
        key = stable_hash(data_identity(spec))
        if key not in self._data:
            path = spec.resolved_path()
            t0 = time.perf_counter()
            train, test = load_dataset(spec.name, str(path) if path else None, spec.resolved_split(), **spec.options)
            for part, arrays in (("training", train), ("test", test)):
                if len(arrays) == 0:
                    raise ValueError(f"dataset {spec.describe()} ({train.source}): the {part} part of split "
                                     f"{spec.resolved_split()} is empty ({len(train)} train / {len(test)} test "
                                     "samples); pretraining and evaluation need both")
            self._data[key] = (train, test)
            self.console.print(
                f"[bold]data[/] {spec.name}/{spec.resolved_split()}: {len(train)} train / {len(test)} test samples, "
                f"shape (C,T,V,M) = {train.shape[1:]}, {train.num_classes} classes "
                f"[dim]({time.perf_counter() - t0:.1f} s)[/]"
            )
            if train.extra.get("assumed"):  # a reader that had to read a layout says which
                self.console.print(f"  [dim]layout assumed: {train.extra['assumed']}[/]", highlight=False)
            if dist_utils.rank() == 0:
                write_json_atomic(self._shape_file(key), {"shape": list(train.shape), "dataset": spec.describe()})
        return self._data[key]

    def _shape_file(self, key: str) -> Path:
        return self.results_dir / "datasets" / f"{key}.json"

    def train_shape(self, spec: DatasetSpec) -> tuple[int, int, int, int, int]:
        """``(N, C, T, V, M)`` of the dataset's training part, without loading it when an earlier run
        recorded it (``results/datasets/<key>.json``, keyed like the data: name, path, split, options,
        reader code): planning a run whose records exist needs the shapes only, so a rerun loads no data."""
        key = stable_hash(data_identity(spec))
        if key not in self._data:
            try:
                shape = json.loads(self._shape_file(key).read_text())["shape"]
                if isinstance(shape, list) and len(shape) == 5 and all(isinstance(d, int) and d >= 0 for d in shape):
                    return tuple(shape)  # type: ignore[return-value]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # not recorded yet (or unreadable): load the data
        return tuple(self.data(spec)[0].shape)  # type: ignore[return-value]

    # -- planning ---------------------------------------------------------------------------------
    def build_encoder(self, cell: Cell, shape: tuple[int, ...] | None = None) -> torch.nn.Module:
        """The cell's encoder, randomly initialised from the cell's seed, sized for its pretraining data
        (``shape``: that data's ``(N, C, T, V, M)``; default :meth:`train_shape`)."""
        from usdrl_bench.skeleton import STREAM_CHANNELS

        _, c, _, v, m = shape if shape is not None else self.train_shape(cell.pretrain_dataset)
        c *= STREAM_CHANNELS[cell.dataset.stream]  # jmb: joint, motion and bone fused along C
        torch.manual_seed(cell.seed)
        return create_encoder(cell.row.encoder, cell.encoder_preset, in_channels=c, num_joints=v,
                              num_bodies=m, **cell.encoder_options)

    def plan(self, cell: Cell) -> CellPlan:
        """The cell's plan, computed on the first call and returned as is afterwards (one key per cell and
        run, whatever asks for it: training, the evaluations, the ensembles, the workers)."""
        known = self._plans.get(id(cell))
        if known is not None and known[0] is cell:
            return known[1]
        plan = self._compute_plan(cell)
        self._plans[id(cell)] = (cell, plan)
        return plan

    def _compute_plan(self, cell: Cell) -> CellPlan:
        encoder = self.build_encoder(cell)
        config = dataclasses.asdict(encoder.config)
        # the code that computes the checkpoint: the encoder's, the objective's and the training loop's
        # modules with what they import (plug-ins included), so an edit retrains exactly the rows it affects
        code = {"encoder": component_code(registry.ENCODERS, cell.row.encoder)}
        if cell.row.objective is not None:
            code.update(objective=component_code(registry.OBJECTIVES, cell.row.objective),
                        train=module_code(TRAIN_MODULE))
        key_parts: dict[str, Any] = {
            "encoder": cell.row.encoder, "encoder_config": config, "dataset": dataset_identity(cell.pretrain_dataset),
            "seed": cell.seed, "code": code,
        }
        identity = None
        if cell.row.objective is None:
            key_parts["objective"] = "random-init"
        else:
            identity = self.pretrain_identity(cell)
            key_parts.update(objective=cell.row.objective, objective_options=cell.objective_options, pretrain=identity)
        return CellPlan(cell=cell, encoder_config=config, checkpoint_hash=stable_hash(key_parts),
                        pretrain_identity=identity)

    def pretrain_identity(self, cell: Cell) -> dict[str, Any]:
        """The schedule as it determines the checkpoint: the precision resolved for this device (``auto``
        is bf16 on CUDA, fp32 on CPU), and, when BatchNorm statistics are per process
        (``sync_batchnorm: false``), the run's number of processes (:attr:`world_size`). The process count
        is otherwise not part of it: a data-parallel run trains the model of one process for every dataset
        size (the same batches, split unevenly where the count does not divide them; views keyed by sample;
        global-batch statistics)."""
        spec = cell.pretrain
        identity = dataclasses.asdict(spec)
        identity["precision"] = resolve_precision(spec.precision, self.device)
        if not spec.sync_batchnorm and self.world_size > 1:
            identity["batchnorm_processes"] = self.world_size
        return identity

    # -- work -------------------------------------------------------------------------------------
    def pretrain_missing(self, cells: list[Cell], jobs: int, progress: Progress | None = None) -> int:
        """Pretrain, in ``jobs`` worker processes, every checkpoint that ``cells`` still need (each once),
        so that the evaluations that follow find them cached. On a CPU each worker gets
        ``torch.get_num_threads() // jobs`` threads: small models run faster as several single-threaded
        trainings than as one multi-threaded one. On CUDA each worker trains on its own GPU
        (``cuda:0`` ... ``cuda:<jobs-1>``): independent models one per GPU, for throughput. Returns the
        number of checkpoints trained.

        Raises:
            ValueError: ``jobs`` < 1, or more jobs than visible GPUs on CUDA.
        """
        if jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {jobs}")
        todo = self.missing_checkpoints(cells)
        if not todo or jobs == 1:
            return 0
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        devices: list[str] = ["cpu"]
        if self.device.type == "cuda":
            count = torch.cuda.device_count()
            if jobs > count:
                raise ValueError(f"--jobs {jobs} on CUDA trains one model per GPU, but {count} GPU(s) are visible")
            devices = [f"cuda:{i}" for i in range(jobs)]
        threads = max(1, torch.get_num_threads() // jobs) if self.device.type == "cpu" else torch.get_num_threads()
        global _PARENT_DATA
        if self.device.type != "cuda":  # loaded once here, inherited by the forked workers
            for plan in todo.values():
                self.data(plan.cell.pretrain_dataset)
        _PARENT_DATA = self._data
        # CPU: forked workers inherit the registries (plug-ins included) and the loaded data; CUDA cannot be
        # used in a child forked after the parent touched the driver, so GPU workers start fresh (spawn),
        # import the protocol's plug-ins and load the data themselves
        context = multiprocessing.get_context("spawn" if self.device.type == "cuda" else "fork")
        slots = context.Queue()
        for i in range(jobs):
            slots.put(devices[i % len(devices)])
        task = progress.add_task(f"pretrain {len(todo)} models, {jobs} at a time", total=len(todo)) if progress else None
        order = sorted(todo.values(), key=self.pretrain_cost, reverse=True)  # longest first: no long model left alone at the end
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(str(self.results_dir), threads, slots, self._runner_options())) as pool:
            futures = [pool.submit(_pretrain_in_worker, plan) for plan in order]
            for future in as_completed(futures):
                key, seconds = future.result()
                self._trained[key] = seconds
                if progress is not None and task is not None:
                    progress.advance(task)
        if progress is not None and task is not None:
            progress.remove_task(task)
        return len(todo)

    def pretrain_cost(self, plan: CellPlan) -> float:
        """An estimate of a checkpoint's pretraining work, to schedule the longest first: the encoder's
        forward FLOPs on one sample (``torch.utils.flop_counter``) x training samples x epochs x views."""
        from torch.utils.flop_counter import FlopCounterMode

        cell = plan.cell
        shape = self.train_shape(cell.pretrain_dataset)
        key = stable_hash({"encoder": cell.row.encoder, "config": plan.encoder_config})
        if key not in self._flops:  # one count per encoder configuration
            encoder = self.build_encoder(cell, shape).eval()
            cfg = encoder.config
            x = torch.zeros((1, cfg.in_channels, encoder.num_frames, cfg.num_joints, cfg.num_bodies))
            counter = FlopCounterMode(display=False)
            try:
                with counter, torch.no_grad():
                    encoder(x)
                self._flops[key] = float(counter.get_total_flops())
            except Exception:  # noqa: BLE001 - an estimate only: an encoder that cannot run on zeros sorts last
                self._flops[key] = 0.0
        views = int(dict(cell.pretrain.views).get("num_views", 4))
        return self._flops[key] * shape[0] * cell.pretrain.epochs * views

    def checkpoint(self, plan: CellPlan, progress: Progress | None = None) -> tuple[torch.nn.Module, float]:
        """The cell's encoder: loaded when cached, else pretrained (resuming) or randomly initialised.

        Training holds the checkpoint's file lock: a second process (another ``run``, a cluster job) that
        needs the same checkpoint waits for it and loads it instead of training it again. Inside a process
        group every rank must call this together (rank 0 holds the lock and tells the others whether to
        train). Returns (encoder, pretraining wall time in seconds: 0 when cached before this run)."""
        workdir = self.results_dir / "checkpoints" / plan.checkpoint_hash
        path = workdir / ENCODER_FILE
        if not dist_utils.is_distributed() and path.exists():  # (in a process group rank 0 decides for all)
            encoder = self._load_cached(path)
            if encoder is not None:
                return encoder, self._trained.get(plan.checkpoint_hash, 0.0)
        main = dist_utils.rank() == 0
        with self.lock(f"checkpoint-{plan.checkpoint_hash}") if main else contextlib.nullcontext():
            encoder = self._load_cached(path) if main and path.exists() else None
            if dist_utils.broadcast_object(encoder is not None):  # cached, or trained by another process meanwhile
                if plan.checkpoint_hash not in self._trained:
                    self.reused.add(plan.checkpoint_hash)
                return encoder if encoder is not None else load_encoder(path), self._trained.get(plan.checkpoint_hash, 0.0)
            return self._train(plan, workdir, progress)

    def _load_cached(self, path: Path) -> torch.nn.Module | None:
        """A cached encoder, or None after moving an unreadable one aside (truncated, empty, foreign: it is
        retrained, with a warning; nothing in it runs: ``weights_only`` loading)."""
        try:
            return load_encoder(path)
        except Exception as exc:  # noqa: BLE001
            from usdrl_bench.train.pretrain import move_aside

            moved = move_aside(path, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            self.console.print(f"[yellow]warning:[/] cached checkpoint {path} is unreadable ({type(exc).__name__}); "
                               f"moved to {moved.name} and trained again", highlight=False)
            return None

    def _train(self, plan: CellPlan, workdir: Path, progress: Progress | None) -> tuple[torch.nn.Module, float]:
        cell = plan.cell
        path = workdir / ENCODER_FILE
        train, _ = self.data(cell.pretrain_dataset)
        encoder = self.build_encoder(cell, train.shape)
        main = dist_utils.rank() == 0
        if main:
            write_json_atomic(workdir / "config.json", {
                "row": dataclasses.asdict(cell.row), "encoder_config": plan.encoder_config,
                "dataset": dataset_identity(cell.pretrain_dataset), "seed": cell.seed, "checkpoint_hash": plan.checkpoint_hash,
                "pretrain": plan.pretrain_identity, "objective_options": cell.objective_options,
                "device": str(self.device), "world_size": dist_utils.world_size(),
                "package_version": __version__, "git_revision": git_revision(), "torch_version": torch.__version__,
            })
        t0 = time.perf_counter()
        if cell.row.objective is None:
            from usdrl_bench.encoders.checkpoint import save_encoder

            if main:
                save_encoder(path, encoder.eval(), objective=None)
            dist_utils.barrier()
            return encoder.eval(), 0.0
        objective = create_objective(cell.row.objective, encoder, **cell.objective_options)
        spec = cell.pretrain
        label = f"pretrain {cell.row.label} (seed {cell.seed})"
        task = progress.add_task(label, total=None) if progress is not None and main else None

        def on_step(done: int, total: int, rate: float, loss: float) -> None:
            if progress is not None and task is not None:
                progress.update(task, completed=done, total=total,
                                description=f"{label} loss {loss:.3f}, {rate:,.0f} samples/s")

        result = pretrain(encoder, objective, train, spec, workdir=workdir, seed=cell.seed, device=self.device,
                          stream=cell.pretrain_dataset.stream, on_step=on_step, log_every=self.log_every,
                          tensorboard=self.tensorboard, wandb_project=self.wandb_project,
                          extra={"objective": cell.row.objective, "objective_options": cell.objective_options,
                                 "precision": resolve_precision(spec.precision, self.device), "compile": spec.compile,
                                 "world_size": dist_utils.world_size(), "device": str(self.device)})
        if progress is not None and task is not None:
            progress.remove_task(task)
        if result.resumed_from_epoch and main:
            self.console.print(f"resumed {cell.row.label} from epoch {result.resumed_from_epoch}")
        seconds = time.perf_counter() - t0
        self._trained[plan.checkpoint_hash] = seconds
        return encoder.eval(), seconds

    def missing_checkpoints(self, cells: list[Cell]) -> dict[str, CellPlan]:
        """The checkpoints ``cells`` still need for a missing record, one plan per checkpoint hash (random-init
        and ensemble rows need no pretraining)."""
        todo: dict[str, CellPlan] = {}
        for cell in cells:
            if cell.row.ensemble is not None or cell.row.objective is None:
                continue
            plan = self.plan(cell)
            if (self.results_dir / "checkpoints" / plan.checkpoint_hash / ENCODER_FILE).exists():
                continue
            if any(not self.record_path(plan, n, o).exists() for n, o in cell.evaluations.items()):
                todo.setdefault(plan.checkpoint_hash, plan)
        return todo

    def pretrain_distributed(self, cells: list[Cell], progress: Progress | None = None) -> int:
        """Inside a process group (torchrun): train every missing checkpoint of ``cells`` data-parallel across
        the ranks, one after the other. Every rank must call it with the same cells. Returns the number of
        checkpoints trained."""
        todo = self.missing_checkpoints(cells) if dist_utils.rank() == 0 else {}
        # rank 0's plans (keys included): the same work, under the same keys, in the same order, on every rank
        work: list[CellPlan] = dist_utils.broadcast_object([todo[key] for key in sorted(todo)])
        for plan in work:
            self.checkpoint(plan, progress)
        return len(work)

    def record_path(self, plan: CellPlan, evaluation: str, options: dict[str, Any]) -> Path:
        cell = plan.cell
        key = stable_hash({"checkpoint": plan.checkpoint_hash, "evaluation": evaluation, "options": options,
                           "dataset": dataset_identity(cell.dataset), "code": eval_code(evaluation)})
        ds = f"{cell.dataset.name}-{cell.dataset.resolved_split()}" + (f"-{cell.dataset.stream}" if cell.dataset.stream != "joint" else "")
        path = (self.results_dir / RECORDS_SUBDIR / cell.protocol.name / cell.preset_name / ds
                / f"{cell.row.id}-seed{cell.seed}-{evaluation}-{key}.json")
        return ensure_inside(path, self.results_dir / RECORDS_SUBDIR)  # names come from protocol text

    def run(self, cells: list[Cell]) -> list[dict[str, Any]]:
        """Run ``cells`` (pretraining what is missing, evaluating what is missing) and return every
        record row of these cells."""
        all_rows: list[dict[str, Any]] = []
        plans = [self.plan(c) for c in cells if c.row.ensemble is None]
        ensembles = [c for c in cells if c.row.ensemble is not None]
        by_key = {(p.cell.row.id, p.cell.dataset.column, p.cell.seed): p for p in plans}
        with Progress(*progress_columns(), console=self.console, transient=False) as progress:
            overall = progress.add_task("[bold]cells", total=len(plans) + len(ensembles))
            for plan in plans:
                cell = plan.cell
                pending = {name: opts for name, opts in cell.evaluations.items()
                           if not self.record_path(plan, name, opts).exists()}
                if pending:
                    encoder, pretrain_s = self.checkpoint(plan, progress)
                    self._evaluate(plan, encoder, pending, pretrain_s, progress)
                for name, opts in cell.evaluations.items():
                    all_rows.extend(read_records(self.record_path(plan, name, opts)))
                progress.advance(overall)
            for cell in ensembles:
                all_rows.extend(self._ensemble(cell, [by_key[(m, cell.dataset.column, cell.seed)]
                                                      for m in cell.row.ensemble.rows]))  # type: ignore[union-attr]
                progress.advance(overall)
        return all_rows

    def _ensemble(self, cell: Cell, members: list[CellPlan]) -> list[dict[str, Any]]:
        """Fuse the member rows' linear test scores (Table 1's 3s ensemble); cached like any record.

        Raises:
            ProtocolError: the preset has no ``linear`` evaluation, or a member's scores are missing.
        """
        from usdrl_bench.evaluate.base import Metric
        from usdrl_bench.evaluate.ensemble import FUSION_NOTE, ensemble_top1
        from usdrl_bench.protocols.schema import ProtocolError

        spec = cell.row.ensemble
        assert spec is not None
        if "linear" not in cell.evaluations:
            raise ProtocolError(cell.protocol.file, f"rows.{cell.row.id}.ensemble",
                                "an ensemble fuses linear-evaluation scores: the preset needs a 'linear' evaluation")
        options = cell.evaluations["linear"]
        key = stable_hash({"members": [m.checkpoint_hash for m in members], "weights": list(spec.weights),
                           "options": options, "dataset": dataset_identity(cell.dataset), "code": eval_code("linear"),
                           "fusion_code": module_code("usdrl_bench.evaluate.ensemble")})
        plan = CellPlan(cell=cell, encoder_config={}, checkpoint_hash=f"ensemble-{key}")
        path = self.record_path(plan, "linear", options)
        if not path.exists():
            from usdrl_bench.evaluate.linear import BEST_PROBS_FILE

            scores, best_scores = [], []
            for m in members:
                member_record = self.record_path(m, "linear", m.cell.evaluations["linear"])
                rows = read_records(member_record)
                artifact = rows[0].get("artifact") if rows else None
                if not artifact or not (self.results_dir / artifact).exists():
                    raise ProtocolError(cell.protocol.file, f"rows.{cell.row.id}.ensemble",
                                        f"no linear test scores for member row {m.cell.row.id!r}: delete "
                                        f"{member_record} and run again to re-evaluate it")
                scores.append(np.load(self.results_dir / artifact))
                best = (self.results_dir / artifact).with_name(BEST_PROBS_FILE)
                best_scores.append(np.load(best) if best.exists() else None)
            _, test = self.data(cell.dataset)
            t0 = time.perf_counter()
            weights = list(spec.weights) or [1.0] * len(members)
            note = f"{FUSION_NOTE}; rows {', '.join(m.cell.row.id for m in members)}, weights {weights}"
            metrics = [Metric("linear_top1", ensemble_top1(scores, test.labels, spec.weights or None),
                              note=f"final-epoch classifiers; {note}")]
            if all(b is not None for b in best_scores):
                metrics.insert(0, Metric("linear_top1_best_of_evals", ensemble_top1(best_scores, test.labels,
                                                                                     spec.weights or None),
                                         note=f"each stream's classifier at its best evaluation (official "
                                              f"selection); {note}"))
            wall = time.perf_counter() - t0
            out = []
            for metric in metrics:
                row = self._row(plan, "linear", options, metric, wall, 0.0)
                row.update(encoder="+".join(dict.fromkeys(m.cell.row.encoder or "" for m in members)),
                           objective="+".join(dict.fromkeys(m.cell.row.objective or "none" for m in members)),
                           stream="+".join(m.cell.dataset.stream for m in members), checkpoint_hash=None)
                out.append(row)
            write_records(path, out)
        return read_records(path)

    def _evaluate(self, plan: CellPlan, encoder: torch.nn.Module, evaluations: dict[str, dict[str, Any]],
                  pretrain_s: float, progress: Progress) -> None:
        cell = plan.cell
        train, test = self.data(cell.dataset)
        if cell.dataset.pretrain_on is not None:  # transfer: the evaluation data must fit the encoder
            from usdrl_bench.skeleton import STREAM_CHANNELS

            _, c, _, v, m = train.shape
            c *= STREAM_CHANNELS[cell.dataset.stream]
            cfg = encoder.config
            if (c, v, m) != (cfg.in_channels, cfg.num_joints, cfg.num_bodies):
                from usdrl_bench.protocols.schema import ProtocolError

                raise ProtocolError(cell.protocol.file, f"datasets.{cell.dataset.column}.pretrain_on",
                                    f"the encoder pretrained on {cell.pretrain_dataset.describe()} takes (C, V, M) = "
                                    f"{(cfg.in_channels, cfg.num_joints, cfg.num_bodies)}; {cell.dataset.describe()} "
                                    f"has {(c, v, m)}")
        # features depend on the checkpoint, the data and the extraction code
        data_hash = stable_hash([dataset_identity(cell.dataset), module_code("usdrl_bench.evaluate.features")])
        task = progress.add_task(f"features {cell.row.label}", total=len(train) + len(test))
        done_train = [0]

        def on_progress(which: str, k: int, total: int) -> None:
            if which == "train":
                done_train[0] = k
                progress.update(task, completed=k)
            else:
                progress.update(task, completed=len(train) + k)

        ctx = EvalContext(encoder=encoder, train=train, test=test, device=self.device, seed=cell.seed,
                          subset_dir=self.results_dir / "subsets" / stable_hash(data_identity(cell.dataset)),
                          stream=cell.dataset.stream, on_progress=on_progress,
                          cache_dir=self.results_dir / "features" / f"{plan.checkpoint_hash}-{data_hash}")
        for name, options in evaluations.items():
            record = self.record_path(plan, name, options)
            with self.lock(f"record-{record.stem}"):
                if record.exists():  # written by another process while this one waited
                    continue
                ctx.artifact_dir = record.with_suffix("")  # beside the record, named after it
                t0 = time.perf_counter()
                metrics = registry.EVALUATIONS.get(name)(ctx, **options)
                wall = time.perf_counter() - t0
                artifact = ctx.artifacts.get(name)
                rows = [self._row(plan, name, options, m, wall, pretrain_s,
                                  str(artifact.relative_to(self.results_dir)) if artifact else None) for m in metrics]
                write_records(record, rows)
        progress.remove_task(task)

    def cost(self, plan: CellPlan) -> dict[str, Any]:
        """What the cell's model costs, for reading accuracy against it: the encoder's parameters and one
        pretraining step's FLOPs per sample (:func:`~usdrl_bench.train.pretrain.pretraining_flops`; None for a
        random initialisation), computed once per checkpoint key."""
        known = self._costs.get(plan.checkpoint_hash)
        if known is not None:
            return known
        cell = plan.cell
        train, _ = self.data(cell.pretrain_dataset)
        encoder = self.build_encoder(cell, train.shape)
        cost: dict[str, Any] = {"encoder_params": int(sum(p.numel() for p in encoder.parameters())),
                                "pretrain_gflops_per_sample": None}
        if cell.row.objective is not None:
            from usdrl_bench.train.pretrain import pretraining_flops

            try:
                objective = create_objective(cell.row.objective, encoder, **cell.objective_options)
                flops = pretraining_flops(encoder, objective, tuple(train.shape), train.layout, cell.pretrain,
                                          cell.pretrain_dataset.stream)
                cost["pretrain_gflops_per_sample"] = round(flops / 1e9, 6)
            except Exception as exc:  # noqa: BLE001 - a cost the counter cannot take is left out, said once
                self.console.print(f"[yellow]warning:[/] pretraining FLOPs of {cell.row.label} not counted: {exc}",
                                   highlight=False)
        self._costs[plan.checkpoint_hash] = cost
        return cost

    def _published(self, cell: Cell, evaluation: str) -> float | None:
        """The row's method's published number for this column's paper setting and evaluation, if any."""
        if cell.row.method is None or not cell.dataset.paper_setting:
            return None
        method = registry.METHODS.get(cell.row.method)
        return method.published.get(f"{cell.dataset.paper_setting}/{evaluation.removesuffix('_own')}")

    def _row(self, plan: CellPlan, evaluation: str, options: dict[str, Any], metric: Any, wall: float,
             pretrain_s: float, artifact: str | None = None) -> dict[str, Any]:
        cell = plan.cell
        train, test = self.data(cell.dataset)
        cost = self.cost(plan) if cell.row.method is not None else {}
        return {
            "method": cell.row.method, "method_published": self._published(cell, evaluation),
            "encoder_params": cost.get("encoder_params"),
            "pretrain_gflops_per_sample": cost.get("pretrain_gflops_per_sample"),
            "protocol": cell.protocol.name, "preset": cell.preset_name, "row_id": cell.row.id,
            "row_label": cell.row.label, "paper_table": cell.protocol.paper_table, "paper_row": cell.row.paper_row,
            "paper_key": json.dumps(cell.row.paper, sort_keys=True) if cell.row.paper else None, "row_x": cell.row.x,
            "row_index": next(i for i, r in enumerate(cell.protocol.rows) if r.id == cell.row.id),
            "encoder": cell.row.encoder, "objective": cell.row.objective or "none (random init)",
            "dataset": cell.dataset.name, "split": cell.dataset.resolved_split(), "stream": cell.dataset.stream,
            "column": cell.dataset.column, "paper_setting": cell.dataset.paper_setting,
            "column_index": next((i for i, d in enumerate(cell.preset.all_datasets) if d.column == cell.dataset.column), 0),
            "train_samples": len(train), "test_samples": len(test), "seed": cell.seed,
            "evaluation": evaluation, "metric": metric.name, "value": metric.value,
            "higher_is_better": metric.higher_is_better, "note": metric.note,
            "config_hash": stable_hash({"checkpoint": plan.checkpoint_hash, "evaluation": evaluation, "options": options}),
            "checkpoint_hash": plan.checkpoint_hash, "git_revision": git_revision(), "package_version": __version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "wall_time_s": round(wall, 3),
            "pretrain_wall_time_s": round(pretrain_s, 3), "device": str(self.device),
            "artifact": artifact, "protocol_version": cell.protocol.version,
            "overrides": list(cell.protocol.overrides),
            # transfer: where the encoder was pretrained, when not on this column's data
            "pretrain_data": cell.pretrain_dataset.describe() if cell.dataset.pretrain_on is not None else None,
        }

    def _runner_options(self) -> dict[str, Any]:
        return {"log_every": self.log_every, "tensorboard": self.tensorboard, "wandb_project": self.wandb_project}


# --- parallel pretraining (ProtocolRunner.pretrain_missing) ---------------------------------------------
_WORKER: ProtocolRunner | None = None
_PARENT_DATA: dict = {}


def _init_worker(results_dir: str, threads: int, slots: Any, options: dict[str, Any]) -> None:
    global _WORKER
    from usdrl_bench.io import die_with_parent

    die_with_parent()  # a main process killed with -9 takes its workers with it (no orphans holding memory)
    torch.set_num_threads(threads)
    device = torch.device(slots.get())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    _WORKER = ProtocolRunner(Path(results_dir), device, console=Console(stderr=True, quiet=True), **options)
    _WORKER._data = dict(_PARENT_DATA)


def _pretrain_in_worker(plan: CellPlan) -> tuple[str, float]:
    """Train the checkpoint of ``plan`` under the key the parent computed (never recomputed here)."""
    assert _WORKER is not None
    cell = plan.cell
    registry.load_builtins()
    registry.load_plugins(cell.protocol.plugins, relative_to=Path(cell.protocol.file).resolve().parent)  # already there in a forked worker; needed in a spawned one
    with Progress(disable=True) as progress:
        _, seconds = _WORKER.checkpoint(plan, progress)
    return plan.checkpoint_hash, seconds
