"""Planning a run: every cell's checkpoint key, data identity and record paths, computed once.

A :class:`RunPlan` is built once from (protocols and their cells, results folder, data root, device,
process count) by :class:`Planner`, and every launcher consumes it as is: the single process, the
``--jobs`` workers, every torchrun rank (rank 0's plans are broadcast), the submitit jobs and the Python
API. Nothing downstream recomputes a key, so the key a checkpoint is trained under is the key its
evaluations look up; nor a dataset's location: the plan resolves each once under the run's data root
(:attr:`RunPlan.locations`), and the workers read what it says.

Layout under ``results/``::

    checkpoints/<checkpoint_hash>/   config.json, state.pt (while training), encoder.pt, history.json
    features/<checkpoint_hash>-<data_hash>/{train,test}.npy
    records/<protocol>/<preset>/<dataset>-<split>/<row>-seed<k>-<evaluation>-<hash>.json
    datasets/<data_hash>.json        the training part's shape (N, C, T, V, M), so a rerun loads no data

A checkpoint is keyed by everything that determines it (encoder and its configuration, objective and
options, dataset, split, stream, schedule, seed, and the code of the modules that compute it:
:func:`~usdrl_bench.code_identity.module_code`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from usdrl_bench import distributed as dist_utils
from usdrl_bench import registry
from usdrl_bench.code_identity import module_code
from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.checks import check_pretraining, check_split
from usdrl_bench.data.loading import read_dataset
from usdrl_bench.data.root import Location, locate_dataset
from usdrl_bench.encoders import create_encoder
from usdrl_bench.io import ensure_inside, stable_hash, write_json_atomic
from usdrl_bench.protocols.released import file_sha256, load_released
from usdrl_bench.protocols.schema import ProtocolError
from usdrl_bench.protocols.spec import Cell, DatasetSpec, Protocol
from usdrl_bench.records import RECORDS_SUBDIR
from usdrl_bench.skeleton import STREAM_CHANNELS
from usdrl_bench.train.pretrain import ENCODER_FILE, resolve_precision
from usdrl_bench.train.spec import PretrainSpec

__all__ = ["CellPlan", "DataStore", "EnsemblePlan", "Planner", "ProtocolPlan", "RunPlan", "build_encoder",
           "component_code", "data_identity", "dataset_identity", "encoder_input", "eval_code"]

#: the module whose import closure is the training loop's code identity (views, streams, the step)
TRAIN_MODULE = "usdrl_bench.train.pretrain"
#: the module whose import closure keys the cached features
FEATURES_MODULE = "usdrl_bench.evaluate.features"
#: the module whose import closure keys the fused (ensemble) records, with the linear evaluation's
FUSION_MODULE = "usdrl_bench.evaluate.ensemble"
#: the module of a dataset's ``normalize:`` steps
NORMALIZE_MODULE = "usdrl_bench.data.normalize"
#: the module that reads released weights (with the official importers it calls)
RELEASED_MODULE = "usdrl_bench.protocols.released"


def eval_code(evaluation: str) -> str:
    """Code identity of an evaluation's results: :func:`module_code` of the module that defines the
    registered evaluation (its import closure: feature extraction, streams, the metric)."""
    return module_code(registry.EVALUATIONS.get(evaluation).__module__)


def component_code(registry_: registry.Registry, name: str) -> str:
    """:func:`module_code` of the module that defines a registered component (built-in or plug-in)."""
    return module_code(registry_.get(name).__module__)


def dataset_identity(spec: DatasetSpec) -> dict[str, Any]:
    """What identifies a dataset for caching: name, absolute path, split, stream, reader options and the
    reader's code (:func:`module_code`), and a ``normalize:`` with the normalisation's code when one is set.
    The data root is not part of it: moving the prepared data keeps the caches."""
    path = spec.resolved_path()
    reader = registry.DATASETS.get(spec.name)
    identity = {"name": spec.name, "path": str(path) if path else None, "split": spec.resolved_split(),
                "stream": spec.stream, "options": spec.options, "reader_code": module_code(reader.__module__)}
    if spec.normalize is not None:  # absent otherwise: the keys of data without it are unchanged
        identity.update(normalize=dataclasses.asdict(spec.normalize), normalize_code=module_code(NORMALIZE_MODULE))
    return identity


def data_identity(spec: DatasetSpec) -> dict[str, Any]:
    """:func:`dataset_identity` without the stream: what identifies the loaded joints (the streams are
    computed from them), the key of the in-memory data, the recorded shapes and the labelled subsets."""
    return {k: v for k, v in dataset_identity(spec).items() if k != "stream"}


class DataStore:
    """The run's datasets, each located once and loaded once (the streams are computed from these joints later).

    Args:
        results_dir: where the training parts' shapes are recorded (``datasets/<key>.json``).
        data_root: where named datasets are found (the planning process: ``--data-root``, None for
            ``$USDRL_DATA``, else ``./data``); ignored when ``locations`` is given.
        console: where the one line per loaded dataset goes.
        locations: the locations a run's plan resolved (:attr:`RunPlan.locations`): a worker's store reads
            these and locates nothing itself.
    """

    def __init__(self, results_dir: Path, data_root: Path | None, console: Console, *,
                 locations: dict[str, Location] | None = None) -> None:
        self.results_dir, self.console = Path(results_dir), console
        self.planned = locations is not None
        self.data_root = None if self.planned else data_root
        self.locations: dict[str, Location] = dict(locations or {})  # data key -> where it is
        self.loaded: dict[str, tuple[SkeletonArrays, SkeletonArrays]] = {}
        self.warnings: dict[str, list[str]] = {}  # per data key: check_split's

    def locate(self, spec: DatasetSpec) -> Location:
        """Where ``spec``'s data are (:func:`~usdrl_bench.data.root.locate_dataset`: its path, else its registered
        ``locate`` under the data root), resolved on the first call. A store built from a plan's locations
        answers only those.

        Raises:
            RuntimeError: a planned store asked for a dataset the plan did not locate.
        """
        key = stable_hash(data_identity(spec))
        if key not in self.locations:
            if self.planned:
                raise RuntimeError(f"dataset {spec.describe()} was not located when the run was planned")
            self.locations[key] = locate_dataset(spec.name, spec.path, self.data_root)
        return self.locations[key]

    def load(self, spec: DatasetSpec) -> tuple[SkeletonArrays, SkeletonArrays]:
        """``(train, test)`` of ``spec``, loaded on the first call, and checked (:func:`check_split`: what cannot
        give a meaningful number is refused, what is hard to defend is warned about, once, and kept for the
        records: :meth:`data_warnings`).

        Raises:
            ValueError: the training or test part is empty, a single training class, a test part of one
                sample (:mod:`usdrl_bench.data.checks`); what :func:`read_dataset` raises.
            FileNotFoundError: a named dataset not under the data root (the plan's :class:`Location` says why).
        """
        key = stable_hash(data_identity(spec))
        if key in self.loaded:
            return self.loaded[key]
        path = self.locate(spec).require()
        t0 = time.perf_counter()
        train, test = read_dataset(spec.name, path, spec.resolved_split(), **spec.options)
        if spec.normalize is not None:
            train, test = spec.normalize.apply(train), spec.normalize.apply(test)
        for part, arrays in (("training", train), ("test", test)):
            if len(arrays) == 0:
                raise ValueError(f"dataset {spec.describe()} ({train.source}): the {part} part of split "
                                 f"{spec.resolved_split()} is empty ({len(train)} train / {len(test)} test "
                                 "samples); pretraining and evaluation need both")
        name = f"dataset {dataclasses.replace(spec, stream='joint').describe()}" + (f" ({train.source})" if train.source else "")
        warnings = check_split(train, test, name)
        self.loaded[key] = (train, test)
        self.warnings[key] = warnings
        self.console.print(
            f"[bold]data[/] {dataclasses.replace(spec, stream='joint').describe()}: {len(train)} train / {len(test)} test samples, "
            f"shape (C,T,V,M) = {train.shape[1:]}, {train.num_classes} classes "
            f"[dim]({time.perf_counter() - t0:.1f} s)[/]")
        if train.extra.get("assumed"):  # a reader that had to guess a layout says which
            self.console.print(f"  [dim]layout assumed: {train.extra['assumed']}[/]", highlight=False)
        for warning in warnings:
            self.console.print(f"  [bold yellow]warning:[/] {warning} (kept in the records and the report)", highlight=False)
        if dist_utils.rank() == 0:
            write_json_atomic(self._shape_file(key), {"shape": list(train.shape), "dataset": spec.describe()})
        return self.loaded[key]

    def data_warnings(self, cell: Cell, view_frames: int | None) -> list[str]:
        """What makes ``cell``'s numbers hard to defend: its evaluation data's :func:`check_split` warnings and,
        for a pretrained row, its schedule's on the pretraining data (:func:`check_pretraining`)."""
        self.load(cell.dataset)
        out = list(self.warnings.get(stable_hash(data_identity(cell.dataset)), []))
        if cell.row.objective is not None and cell.row.checkpoint is None:
            train, _ = self.load(cell.pretrain_dataset)
            spec = cell.schedule
            out += [f"pretraining: {w}" for w in check_pretraining(
                train, f"pretraining data {cell.pretrain_dataset.describe()}", batch_size=spec.batch_size,
                view_frames=view_frames)]
        return out

    def _shape_file(self, key: str) -> Path:
        return self.results_dir / "datasets" / f"{key}.json"

    def train_shape(self, spec: DatasetSpec) -> tuple[int, int, int, int, int]:
        """``(N, C, T, V, M)`` of the dataset's training part, without loading it when an earlier run
        recorded it: planning a run whose records exist needs the shapes only, so a rerun loads no data."""
        key = stable_hash(data_identity(spec))
        if key not in self.loaded:
            try:
                shape = json.loads(self._shape_file(key).read_text())["shape"]
                if isinstance(shape, list) and len(shape) == 5 and all(isinstance(d, int) and d >= 0 for d in shape):
                    return tuple(shape)  # type: ignore[return-value]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # not recorded yet (or unreadable): load the data
        return tuple(self.load(spec)[0].shape)  # type: ignore[return-value]


def encoder_input(cell: Cell, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, V, M)`` the cell's encoder takes from data of ``shape`` ``(N, C, T, V, M)``: the channels of the
    row's stream (``jmb`` fuses joint, motion and bone along C), joints, bodies."""
    _, c, _, v, m = shape
    return c * STREAM_CHANNELS[cell.dataset.stream], v, m


def build_encoder(cell: Cell, shape: tuple[int, ...]) -> torch.nn.Module:
    """The cell's encoder, randomly initialised from the cell's seed, sized for its pretraining data
    (``shape``: that data's ``(N, C, T, V, M)``; :func:`encoder_input`)."""
    c, v, m = encoder_input(cell, shape)
    torch.manual_seed(cell.seed)
    return create_encoder(cell.row.encoder, cell.encoder_preset, in_channels=c, num_joints=v,
                          num_bodies=m, **cell.encoder_options)


@dataclass
class CellPlan:
    """What a cell trains and evaluates, computed once by :class:`Planner` and handed to whoever trains
    or evaluates it.

    Attributes:
        cell: the cell.
        encoder_config: the encoder's configuration (as built for the pretraining data).
        checkpoint_hash: the checkpoint's key (folder name under ``results/checkpoints/``).
        pretrain_identity: the schedule as it enters the key (:meth:`Planner.pretrain_identity`); None
            for a random-init row.
        schedule: the resolved pretraining schedule the checkpoint trains with (the cell's merged schedule, its
            precision resolved for the device, as keyed); None for a random-init or released-weights row.
        dataset_identity: the evaluation data's :func:`dataset_identity`.
        pretrain_dataset_identity: the pretraining data's (the same but for a transfer column).
        records: evaluation name -> its record file.
        features_dir: where the encoder's features of the evaluation data are cached.
        subset_dir: where the labelled subsets of semi-supervised evaluation are kept (per data).
    """

    cell: Cell
    encoder_config: dict[str, Any]
    checkpoint_hash: str
    pretrain_identity: dict[str, Any] | None = None
    schedule: PretrainSpec | None = None
    dataset_identity: dict[str, Any] = field(default_factory=dict)
    pretrain_dataset_identity: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Path] = field(default_factory=dict)
    features_dir: Path | None = None
    subset_dir: Path | None = None

    def missing_records(self) -> dict[str, dict[str, Any]]:
        """The evaluations (name -> options) whose record is not written yet."""
        return {name: opts for name, opts in self.cell.evaluations.items() if not self.records[name].exists()}


@dataclass
class EnsemblePlan:
    """A row fusing other rows' linear test scores (Table 1's 3s ensemble).

    Attributes:
        cell: the ensemble row's cell; members: the member rows' plans (same column and seed);
        key: the fused record's key; options: the linear evaluation's options; record: its record file.
    """

    cell: Cell
    members: list[CellPlan]
    key: str
    options: dict[str, Any]
    record: Path


@dataclass
class ProtocolPlan:
    """One protocol's share of a run: its cells' plans and its ensembles."""

    protocol: Protocol
    cells: list[CellPlan]
    ensembles: list[EnsemblePlan]


@dataclass
class RunPlan:
    """Everything a run does, planned once (:meth:`Planner.plan_run`).

    Attributes:
        results_dir: checkpoints, features, records. device: where checkpoints train (the precision in the keys
            is resolved for it). world_size: the processes a checkpoint trains on. protocols: per protocol,
            the plans of its cells. locations: every dataset of the run (data key, as in
            :meth:`DataStore.locate`) -> where it is, resolved once under the run's data root; a worker's
            :class:`DataStore` is built from them.
    """

    results_dir: Path
    device: str
    world_size: int
    protocols: list[ProtocolPlan]
    locations: dict[str, Location] = field(default_factory=dict)

    @property
    def cell_plans(self) -> list[CellPlan]:
        return [p for pp in self.protocols for p in pp.cells]

    def missing_checkpoints(self) -> dict[str, CellPlan]:
        """The checkpoints still needed for a missing record, one plan per checkpoint hash (random-init and
        ensemble rows need no pretraining), in plan order."""
        todo: dict[str, CellPlan] = {}
        for plan in self.cell_plans:
            if plan.cell.row.objective is None or plan.checkpoint_hash in todo:
                continue
            if (self.results_dir / "checkpoints" / plan.checkpoint_hash / ENCODER_FILE).exists():
                continue
            if plan.missing_records():
                todo[plan.checkpoint_hash] = plan
        return todo


class Planner:
    """Computes cell plans: each cell's once (memoised by identity), whoever asks.

    Args:
        results_dir: the results folder. store: the run's data (for the training shapes).
        device: the training device (the resolved precision enters the key).
        world_size: the processes a checkpoint trains on (torchrun's world, a submitit job's GPUs). It
            enters a key only with per-process BatchNorm statistics (``sync_batchnorm: false``); it is fixed
            here, not read from the process group when a key is computed.
    """

    def __init__(self, results_dir: Path, store: DataStore, device: torch.device, world_size: int) -> None:
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        self.results_dir, self.store, self.device, self.world_size = Path(results_dir), store, device, world_size
        self._plans: dict[int, tuple[Cell, CellPlan]] = {}  # id(cell) -> (cell, its plan)

    def plan_run(self, work: list[tuple[Protocol, list[Cell]]]) -> RunPlan:
        """The plan of running ``work`` (protocols and their cells)."""
        protocols = []
        for protocol, cells in work:
            plans = [self.plan(c) for c in cells if c.row.ensemble is None]
            by_key = {(p.cell.row.id, p.cell.dataset.column, p.cell.seed): p for p in plans}
            ensembles = [self.plan_ensemble(c, [by_key[(m, c.dataset.column, c.seed)] for m in c.row.ensemble.rows])
                         for c in cells if c.row.ensemble is not None]
            protocols.append(ProtocolPlan(protocol, plans, ensembles))
            for p in plans:  # every dataset located once, here; workers receive the answers
                self.store.locate(p.cell.dataset)
                self.store.locate(p.cell.pretrain_dataset)
        return RunPlan(self.results_dir, str(self.device), self.world_size, protocols, dict(self.store.locations))

    def plan(self, cell: Cell) -> CellPlan:
        """The cell's plan, computed on the first call and returned as is afterwards."""
        known = self._plans.get(id(cell))
        if known is not None and known[0] is cell:
            return known[1]
        if cell.row.checkpoint is not None:
            return self._plan_released(cell)
        encoder = build_encoder(cell, self.store.train_shape(cell.pretrain_dataset))
        config = dataclasses.asdict(encoder.config)
        # the code that computes the checkpoint: the encoder's, the objective's and the training loop's
        # modules with what they import (plug-ins included), so an edit retrains exactly the rows it affects
        code = {"encoder": component_code(registry.ENCODERS, cell.row.encoder)}
        pretrain_data = dataset_identity(cell.pretrain_dataset)
        key_parts: dict[str, Any] = {"encoder": cell.row.encoder, "encoder_config": config, "dataset": pretrain_data,
                                     "seed": cell.seed}
        identity, schedule = None, None
        if cell.row.objective is None:
            key_parts["objective"] = "random-init"
        else:
            code.update(objective=component_code(registry.OBJECTIVES, cell.row.objective),
                        train=module_code(TRAIN_MODULE))
            identity = self.pretrain_identity(cell)
            schedule = dataclasses.replace(cell.schedule, precision=identity["precision"])
            key_parts.update(objective=cell.row.objective, objective_options=cell.objective_options, pretrain=identity)
        key_parts["code"] = code
        if cell.rehearsal is not None:  # a rehearsal's checkpoints never answer a real run's key
            key_parts["rehearsal"] = cell.rehearsal.key()
        plan = CellPlan(cell=cell, encoder_config=config, checkpoint_hash=stable_hash(key_parts),
                        pretrain_identity=identity, schedule=schedule, pretrain_dataset_identity=pretrain_data,
                        dataset_identity=pretrain_data if cell.dataset == cell.pretrain_dataset
                        else dataset_identity(cell.dataset))
        return self._finish_plan(plan)

    def _finish_plan(self, plan: CellPlan) -> CellPlan:
        """Record, feature and subset paths of a plan whose checkpoint key is known; memoised."""
        cell = plan.cell
        plan.records = {name: self.record_path(plan, name, opts) for name, opts in cell.evaluations.items()}
        # features depend on the checkpoint, the data and the extraction code
        data_hash = stable_hash([plan.dataset_identity, module_code(FEATURES_MODULE)])
        plan.features_dir = self.results_dir / "features" / f"{plan.checkpoint_hash}-{data_hash}"
        plan.subset_dir = self.results_dir / "subsets" / stable_hash(data_identity(cell.dataset))
        self._plans[id(cell)] = (cell, plan)
        return plan

    def _plan_released(self, cell: Cell) -> CellPlan:
        """A released-weights row: keyed by the file's content, the method whose format reads it, its official
        arguments and the code that reads it; the evaluation data must fit the file's encoder.

        Raises:
            ProtocolError: the data's (C, V, M) differ from the encoder's (naming the row).
        """
        row = cell.row
        encoder = load_released(row.checkpoint, row.method, row.checkpoint_args)
        config = dataclasses.asdict(encoder.config)
        c, v, m = encoder_input(cell, self.store.train_shape(cell.dataset))
        if (c, v, m) != (encoder.config.in_channels, encoder.config.num_joints, encoder.config.num_bodies):
            raise ProtocolError(cell.protocol.file, f"rows.{row.id}.checkpoint",
                                f"the released encoder takes (C, V, M) = {(encoder.config.in_channels, encoder.config.num_joints, encoder.config.num_bodies)}; "
                                f"{cell.dataset.describe()} has {(c, v, m)} (pass num_bodies / num_joints in checkpoint_args)")
        released = {"file": Path(row.checkpoint).name, "sha256": file_sha256(row.checkpoint), "method": row.method,
                    "checkpoint_args": row.checkpoint_args}
        code = {"encoder": component_code(registry.ENCODERS, row.encoder), "format": module_code(RELEASED_MODULE)}
        if row.method is not None:
            fmt = registry.METHODS.get(row.method).official_format
            code["method_format"] = module_code(fmt.load.__module__) if fmt is not None else ""
        key = stable_hash({"released": released, "encoder": row.encoder, "encoder_config": config, "code": code})
        plan = CellPlan(cell=cell, encoder_config=config, checkpoint_hash=key, pretrain_identity=None,
                        pretrain_dataset_identity={"released": released}, dataset_identity=dataset_identity(cell.dataset))
        return self._finish_plan(plan)

    def plan_ensemble(self, cell: Cell, members: list[CellPlan]) -> EnsemblePlan:
        """The fused record of ``members``' linear scores.

        Raises:
            ProtocolError: the preset has no ``linear`` evaluation.
        """
        spec = cell.row.ensemble
        assert spec is not None
        if "linear" not in cell.evaluations:
            raise ProtocolError(cell.protocol.file, f"rows.{cell.row.id}.ensemble",
                                "an ensemble fuses linear-evaluation scores: the preset needs a 'linear' evaluation")
        options = cell.evaluations["linear"]
        key = stable_hash({"members": [m.checkpoint_hash for m in members], "weights": list(spec.weights),
                           "options": options, "dataset": dataset_identity(cell.dataset), "code": eval_code("linear"),
                           "fusion_code": module_code(FUSION_MODULE)})
        stand_in = CellPlan(cell=cell, encoder_config={}, checkpoint_hash=f"ensemble-{key}",
                            dataset_identity=dataset_identity(cell.dataset))
        return EnsemblePlan(cell, members, f"ensemble-{key}", options, self.record_path(stand_in, "linear", options))

    def pretrain_identity(self, cell: Cell) -> dict[str, Any]:
        """The schedule as it determines the checkpoint: the precision resolved for this device (``auto``
        is bf16 on CUDA, fp32 on CPU), and, when BatchNorm statistics are per process
        (``sync_batchnorm: false``), the run's number of processes. The process count is otherwise not
        part of it: a data-parallel run trains the model of one process for every dataset size."""
        spec = cell.schedule
        identity = dataclasses.asdict(spec)
        identity["precision"] = resolve_precision(spec.precision, self.device)
        if not spec.sync_batchnorm and self.world_size > 1:
            identity["batchnorm_processes"] = self.world_size
        return identity

    def record_path(self, plan: CellPlan, evaluation: str, options: dict[str, Any]) -> Path:
        """``records/<protocol>/<preset>/<dataset>-<split>[-<stream>]/<row>-seed<k>-<evaluation>-<key>.json``
        (kept inside ``records/``: the names come from protocol text)."""
        cell = plan.cell
        key = stable_hash({"checkpoint": plan.checkpoint_hash, "evaluation": evaluation, "options": options,
                           "dataset": plan.dataset_identity, "code": eval_code(evaluation)})
        ds = f"{cell.dataset.name}-{cell.dataset.resolved_split()}" + (
            f"-{cell.dataset.stream}" if cell.dataset.stream != "joint" else "")
        path = (self.results_dir / RECORDS_SUBDIR / cell.protocol.name / cell.preset_label / ds
                / f"{cell.row.id}-seed{cell.seed}-{evaluation}-{key}.json")
        return ensure_inside(path, self.results_dir / RECORDS_SUBDIR)
