"""The Python API: what ``usdrl-bench run`` and ``embed`` do, callable from a script or a notebook.

The command line is a thin layer over these functions (it parses flags, starts torchrun for ``--nproc``,
prints tables and writes reports), so a script and the command line cannot drift apart::

    import usdrl_bench

    records = usdrl_bench.run_protocol("table5_ablation", rows=["7", "R-DSTE"], results="results")
    records.pivot_table(index="row_label", columns="metric", values="value")

    encoder = usdrl_bench.load_encoder("results/checkpoints/<hash>/encoder.pt")
    features = usdrl_bench.embed(encoder, x)          # x: (N, C, T, V, M) -> (N, 2H)

    mamp = usdrl_bench.load_encoder("mamp_ntu60_xsub.pth", method="mamp")   # a peer's published weights
    usdrl_bench.export_official("results/checkpoints/<hash>", "mamp", "for_the_official_code.pth")

Protocols are given as a path to a YAML file or as the name of a shipped one (``usdrl-bench list
--protocols``; they are package data, so names work after ``pip install`` from any directory).
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.distributed
from rich.console import Console
from rich.progress import Progress

from usdrl_bench import distributed as dist_utils
from usdrl_bench import registry
from usdrl_bench.components import load_builtins
from usdrl_bench.detection.metric import score_folders as score_detection  # usdrl-bench score-detection
from usdrl_bench.methods.shipped import load_shipped_baselines
from usdrl_bench.records import load_records
from usdrl_bench.registry import Entry
from usdrl_bench.report.reproduction import plot_loss_curves, read_official_runs, reproduction_table
from usdrl_bench.report.tables import build_tables, to_markdown
from usdrl_bench.report.writer import write_reports
from usdrl_bench.segmentation.metric import score_folders as score_segmentation  # usdrl-bench score-segmentation
from usdrl_bench.train.throughput import BenchConfig, BenchResult, results_table, run_bench, write_results
from usdrl_bench.methods.official import export_official as _export_official
from usdrl_bench.methods.official import load_official as _load_official
from usdrl_bench.methods.official import load_weights, read_checkpoint
from usdrl_bench.methods import OfficialModel
from usdrl_bench.evaluate.features import extract
from usdrl_bench.data.preparation.ntu_prepare import prepare_ntu
from usdrl_bench.data.preparation.pku import prepare_pku
from usdrl_bench.data.preparation.prepare import PrepareSummary, format_summary
from usdrl_bench.data.preparation.uav import prepare_uav
from usdrl_bench.data.readers.named import default_output
from usdrl_bench.data.root import resolve_data_root
from usdrl_bench.io import resolve_device, save_npy_atomic, save_npz_atomic, write_text_atomic
from usdrl_bench.protocols.evaluation import progress_columns
from usdrl_bench.protocols.launch import LauncherOptions, submit_pretrainings
from usdrl_bench.protocols.forecast import (ASSUMED_MFU, FORECAST_DIR, GPUS, USABLE_MEMORY, ReleaseShapes, forecast,
                                           forecast_totals, measure_rehearsal)
from usdrl_bench.protocols.plan import DataStore, Planner, RunPlan
from usdrl_bench.protocols.rehearsal import Rehearsal, rehearsal_results, rehearse_cells
from usdrl_bench.protocols.runner import ProtocolRunner
from usdrl_bench.protocols.schedule import pretrain_distributed, pretrain_in_workers, threads_per_job
from usdrl_bench.protocols.spec import (Cell, Protocol, check_cells, expand_cells, load_protocol, parse_dataset_override,
                                       protocol_json_schema)
from usdrl_bench.protocols.training import describe_trained
from usdrl_bench.records import RECORD_COLUMNS
from usdrl_bench.train.pretrain import DEFAULT_SAVE_EVERY_S, ENCODER_FILE, OBJECTIVE_FILE, TrainingOptions
from usdrl_bench.skeleton import LAYOUTS

__all__ = ["SHIPPED_PROTOCOLS", "Rehearsal", "list_protocols", "protocol_path", "run_protocol", "run_protocols",
           "plan_protocols", "validate_protocols", "embed", "embed_file", "Embedded", "prepare_data",
           "markdown_tables", "write_report", "ReportSummary", "shipped_protocol_table", "list_components",
           "score_detection", "score_segmentation", "bench_throughput",
           # what the command line prints with, re-exported so that it imports the API alone
           "ASSUMED_MFU", "GPUS", "USABLE_MEMORY", "forecast_totals", "format_summary", "results_table",
           "protocol_json_schema", "LauncherOptions", "resolve_device", "rehearsal_results",
           "load_encoder", "load_official", "export_official"]

#: the protocols shipped with the package (``protocols/`` in a checkout links here)
SHIPPED_PROTOCOLS = Path(__file__).resolve().parent / "protocols" / "shipped"


def list_protocols() -> list[str]:
    """Names of the shipped protocols (``table5_ablation``, ...)."""
    return sorted(p.stem for p in SHIPPED_PROTOCOLS.glob("*.yaml"))


def protocol_path(protocol: str | os.PathLike) -> Path:
    """The YAML file of ``protocol``: an existing path, else a shipped protocol's name.

    Raises:
        FileNotFoundError: neither a file nor a shipped protocol (the shipped names are listed).
    """
    path = Path(protocol)
    if path.is_file():
        return path
    name = path.stem if path.suffix in (".yaml", ".yml") else str(protocol)
    shipped = SHIPPED_PROTOCOLS / f"{name}.yaml"
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"no protocol file {protocol} and no shipped protocol named {name!r}; shipped: "
                            f"{', '.join(list_protocols())}")


def _cells(protocol: Protocol, preset: str, dataset: str | None, split: str | None, seeds: Iterable[int] | None,
           rows: Iterable[str] | None, data_root: Path | None, rehearsal: Rehearsal | None = None,
           check_paths: bool = True) -> list[Cell]:
    """The cells to run (CLI overrides applied); the data paths are checked unless ``check_paths`` is False or
    a ``rehearsal`` replaces the data."""
    override = parse_dataset_override(dataset, split) if dataset else None
    if override is None and split and preset in protocol.presets:
        datasets = protocol.presets[preset].all_datasets
        if len(datasets) != 1:
            raise ValueError(f"{protocol.file}: split={split!r} needs a dataset: preset {preset!r} has "
                             f"{len(datasets)} datasets")
        override = replace(datasets[0], split=split, id=None)
    cells = expand_cells(protocol, preset, dataset=override, seeds=tuple(seeds) if seeds else None,
                         rows=tuple(rows) if rows else None, data_root=data_root,
                         check_paths=check_paths and rehearsal is None)
    return cells if rehearsal is None else rehearse_cells(cells, rehearsal)


def run_protocols(
    protocols: Sequence[str | os.PathLike],
    *,
    preset: str = "demo",
    rows: Iterable[str] | None = None,
    dataset: str | None = None,
    split: str | None = None,
    seeds: Iterable[int] | None = None,
    results: str | os.PathLike = "results",
    device: str | torch.device = "auto",
    jobs: int = 1,
    data_root: str | os.PathLike | None = None,
    launcher: LauncherOptions | None = None,
    log_every: int = 20,
    tensorboard: bool = True,
    wandb_project: str | None = None,
    console: Console | None = None,
    overrides: Sequence[str] = (),
    rehearse: bool | Rehearsal = False,
    save_every_s: float | None = DEFAULT_SAVE_EVERY_S,
    timing: "RunTiming | None" = None,
) -> list[tuple[Protocol, pd.DataFrame]]:
    """Run several protocols, sharing their work: plan every cell once, pretrain every missing checkpoint
    once (in this process, ``jobs`` at a time, data-parallel across the ranks when started by torchrun, or
    as submitit jobs with ``launcher``), evaluate what is missing, and return each protocol's records.

    ``overrides`` are ``KEY.PATH=VALUE`` settings applied to every protocol file (``--set``; see
    :func:`usdrl_bench.protocols.spec.load_protocol`), validated like the file and recorded in the records.
    Every file is validated before any work starts. Inside a torchrun process group the ranks other than 0
    return ``[]`` after the data-parallel pretraining; rank 0 evaluates.

    ``rehearse`` (True, or a :class:`~usdrl_bench.protocols.rehearsal.Rehearsal`) runs the preset at its real
    shapes on synthetic data shaped as each release, with the work cut to a few steps, under
    ``<results>/rehearsal`` (:mod:`usdrl_bench.protocols.rehearsal`); True picks the device's default
    (:meth:`Rehearsal.for_device`).

    ``save_every_s``: seconds between saves of a pretraining's resumable state inside an epoch (an interruption,
    Ctrl-C included, loses at most that). ``timing``: a :class:`RunTiming` filled with where the time went.

    Returns:
        ``[(protocol, records)]``: one DataFrame per protocol, one row per metric, the record fields as
        columns (:data:`usdrl_bench.records.RECORD_COLUMNS`).
    Raises:
        ProtocolError, FileNotFoundError, KeyError, ValueError: bad protocol, data or option (before any work).
    """
    console = console or Console(stderr=True, soft_wrap=True)
    t_all = time.perf_counter()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    options = TrainingOptions(log_every=log_every, tensorboard=tensorboard, wandb_project=wandb_project,
                              save_every_s=save_every_s)
    root = resolve_data_root(data_root)
    device = resolve_device(device) if isinstance(device, str) else device
    rehearsal = (rehearse if isinstance(rehearse, Rehearsal) else Rehearsal.for_device(device.type)) if rehearse else None
    work = validate_protocols(protocols, preset=preset, rows=rows, dataset=dataset, split=split, seeds=seeds,
                              data_root=root, overrides=overrides, rehearsal=rehearsal, console=console)
    if rehearsal is not None:
        results = rehearsal_results(results)
        console.print(f"[bold yellow]{rehearsal.describe()}[/]; results under {results} (never a real result)",
                      highlight=False)
    check_results_folder(results)  # read-only or full: said now, before any data is loaded
    context = dist_utils.init_from_env(device.type)
    if context is not None and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    main = context is None or context.is_main
    run_console = console if main else Console(stderr=True, quiet=True)
    # the processes a checkpoint trains on: torchrun's world, or a submitit job's GPUs (one task each)
    world = context.world_size if context is not None else (max(1, launcher.gpus_per_job) if launcher is not None else 1)
    runner = ProtocolRunner(Path(results), device, run_console, world_size=world, data_root=root,
                            options=options if main else replace(options, wandb_project=None))
    threads = torch.get_num_threads()
    if device.type == "cpu" and context is None:  # the cores actually free, shared by the jobs (--jobs N)
        torch.set_num_threads(threads_per_job(1))
        if main:
            console.print(f"CPU threads: {threads_per_job(jobs)} per pretraining job x {jobs} job(s), "
                          f"{torch.get_num_threads()} for evaluation (free cores; OMP_NUM_THREADS overrides)",
                          highlight=False)
    try:
        return _run_planned(runner, work, context, launcher, jobs, console, device, results, rehearsal, t_all, timing)
    finally:
        torch.set_num_threads(threads)


def _run_planned(runner: ProtocolRunner, work: list[tuple[Protocol, list[Cell]]],
                 context: dist_utils.DistributedContext | None, launcher: LauncherOptions | None, jobs: int,
                 console: Console, device: torch.device, results: str | os.PathLike, rehearsal: Rehearsal | None,
                 t_all: float, timing: RunTiming | None) -> list[tuple[Protocol, pd.DataFrame]]:
    """:func:`run_protocols` once the cells are validated and the runner built: plan, pretrain, evaluate."""
    main = context is None or context.is_main
    plan = runner.plan_run(work)  # every key, identity and record path, once; every launcher below takes it
    if main:
        _print_plan(plan, runner.store, device, console)
    t_pretrain = time.perf_counter()
    if not _pretrain_missing(runner, plan, context, launcher, jobs, console):
        return []  # a torchrun rank other than 0: rank 0 evaluates
    pretrain_wall = time.perf_counter() - t_pretrain
    out = []
    for i, protocol_plan in enumerate(plan.protocols):
        t0 = time.perf_counter()
        records = pd.DataFrame(runner.run(protocol_plan), columns=list(RECORD_COLUMNS))
        console.print(f"[green]evaluated[/] {protocol_plan.protocol.name} in {duration(time.perf_counter() - t0)} on "
                      f"{device}; records under {results}/records", highlight=False)
        out.append((protocol_plan.protocol, records))
        if rehearsal is not None and not rehearsal.keep_weights:
            _prune_rehearsal(plan, i, console)
    console.print(describe_trained(runner.trainer))
    if rehearsal is not None and rehearsal.measure:  # price the real run: each configuration's step, measured once
        t0 = time.perf_counter()
        measured = measure_rehearsal(plan, runner.store, device, console)
        if measured:
            console.print(f"measured {measured} model configuration(s) for `usdrl-bench plan` in "
                          f"{time.perf_counter() - t0:.0f} s")
    seconds = runner.evaluator.seconds
    spent = RunTiming(total_s=time.perf_counter() - t_all, pretraining_s=pretrain_wall + seconds["pretraining"],
                      extraction_s=seconds["extraction"], evaluation_s=seconds["evaluation"])
    if timing is not None:
        timing.__dict__.update(spent.__dict__)
    console.print(f"[green]{'all ' + str(len(work)) + ' protocols' if len(work) > 1 else 'run'} done[/] in "
                  f"{spent.describe()}", highlight=False)
    return out


@dataclass
class RunTiming:
    """Where a run's wall time went (seconds): pretraining (training, or loading cached encoders), feature
    extraction, the evaluations' own work, and the total from the call's start; ``other`` is the rest
    (validation, data loading, planning, records)."""

    total_s: float = 0.0
    pretraining_s: float = 0.0
    extraction_s: float = 0.0
    evaluation_s: float = 0.0

    @property
    def other_s(self) -> float:
        return max(0.0, self.total_s - self.pretraining_s - self.extraction_s - self.evaluation_s)

    def describe(self, total_s: float | None = None, other: str = "data loading, planning, records") -> str:
        """``3 min 10 s: pretraining 2 min 41 s, feature extraction 12 s, evaluation 15 s, other 2 s (...)``;
        ``total_s`` replaces the total (a caller that did more, such as writing reports)."""
        total = self.total_s if total_s is None else total_s
        rest = replace(self, total_s=total).other_s
        return (f"{duration(total)}: pretraining {duration(self.pretraining_s)}, feature extraction "
                f"{duration(self.extraction_s)}, evaluation {duration(self.evaluation_s)}, other {duration(rest)} "
                f"({other})")


def duration(seconds: float) -> str:
    """``7 s``, ``3 min 10 s``, ``2 h 05 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _print_plan(plan: RunPlan, store: DataStore, device: torch.device, console: Console) -> None:
    """The start of a run: the checkpoints it trains (keys) and those already cached, each with the forecast
    of ``usdrl-bench plan`` (peak memory at its batch, whether it fits, GPU-hours) where a rehearsal measured
    it; the GPU is this one when it is an H100 or H200, else an H100."""
    todo = plan.missing_checkpoints()
    cached = {p.checkpoint_hash for p in plan.cell_plans if p.cell.row.objective is not None
              and (plan.results_dir / "checkpoints" / p.checkpoint_hash / ENCODER_FILE).exists()}
    console.print(f"plan: {len(todo)} checkpoint(s) to pretrain, {len(cached)} cached", highlight=False)
    if not todo:
        return
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    gpu = GPUS["h200"] if "H200" in name else GPUS["h100"]
    frame = None
    if all(p.cell.rehearsal is None for p in todo.values()):
        shapes = ReleaseShapes(plan.results_dir, None, Console(quiet=True), locations=plan.locations)
        shapes.loaded = store.loaded  # the data this run already holds
        try:
            frame = forecast(plan, shapes, gpu, measured_dirs=[rehearsal_results(plan.results_dir), plan.results_dir],
                             bench_dir=plan.results_dir / "bench").set_index("key")
        except Exception as exc:  # noqa: BLE001 - a forecast never stops a run; it says why it is missing
            console.print(f"  [dim](no forecast: {type(exc).__name__}: {exc})[/]", highlight=False)
            frame = None
    for k, p in list(todo.items())[:20]:
        line = f"  {k[:12]}  {p.cell.row.label} on {p.cell.pretrain_dataset.describe()}"
        if frame is not None and k in frame.index and "gpu_hours" in frame and frame.loc[k, "gpu_hours"] == frame.loc[k, "gpu_hours"]:
            row = frame.loc[k]
            fits = "fits" if row["fits"] else f"needs --nproc {int(row['gpus_needed'])}"
            line += (f": {row['peak_gb']:.1f} GB at batch {int(row['batch'])} ({fits} on one {gpu.name}), "
                     f"{row['gpu_hours']:.1f} GPU-hours at MFU {row['mfu']:.2f} ({row['mfu_source']})")
        console.print(line, highlight=False)
    if len(todo) > 20:
        console.print(f"  ... and {len(todo) - 20} more (usdrl-bench plan lists them all)", highlight=False)


def plan_protocols(
    protocols: Sequence[str | os.PathLike],
    *,
    preset: str = "paper",
    gpu: str = "h100",
    mfu: float | None = None,
    rows: Iterable[str] | None = None,
    dataset: str | None = None,
    split: str | None = None,
    seeds: Iterable[int] | None = None,
    results: str | os.PathLike = "results",
    data_root: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    device: str = "cuda",
    measured: Sequence[str | os.PathLike] = (),
    console: Console | None = None,
) -> pd.DataFrame:
    """What running ``protocols`` would train and cost, without running or loading anything heavy
    (:mod:`usdrl_bench.protocols.forecast`): one line per model with its checkpoint key, whether it is cached,
    FLOPs per sample and peak memory at the preset's batch (measured by a rehearsal, ``run --rehearse``, and
    scaled), whether it fits ``gpu`` and its GPU-hours at ``mfu`` (default: ``bench``'s where it ran on that
    GPU, else assumed). Named datasets absent from the data root are priced with their release's sizes.
    ``device`` is where the run will train (``cuda``: its keys hold bf16 for ``precision: auto``; ``cpu``), so
    that the keys and "cached" are the run's. ``measured``: further folders of measured step costs (a
    rehearsal's ``forecast/`` folder, or its parent), searched after ``<results>/rehearsal`` and ``results``.

    Raises:
        ProtocolError, FileNotFoundError, KeyError, ValueError: bad protocol, option or GPU name.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    if gpu not in GPUS:
        raise ValueError(f"unknown GPU {gpu!r}; known: {', '.join(GPUS)}")
    if mfu is not None and not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    root = resolve_data_root(data_root)
    loaded = _with_preset([load_protocol(protocol_path(p), tuple(overrides)) for p in protocols], preset, console)
    work = [(protocol, _cells(protocol, preset, dataset, split, seeds, rows, root, check_paths=False))
            for protocol in loaded]
    results = Path(results)
    store = ReleaseShapes(results, root, Console(stderr=True, quiet=True))
    # keyed as the run will key them: the precision in a key is resolved for the training device
    plan = Planner(results, store, torch.device(device), 1).plan_run(work)
    extra = [Path(m).parent if Path(m).name == FORECAST_DIR else Path(m) for m in measured]
    for folder in extra:
        if not (folder / FORECAST_DIR).is_dir():
            raise FileNotFoundError(f"no measured step costs in {folder} (expected {folder / FORECAST_DIR}/*.json, "
                                    "written by `usdrl-bench run ... --rehearse`)")
    return forecast(plan, store, GPUS[gpu], measured_dirs=[rehearsal_results(results), results, *extra], mfu=mfu,
                    bench_dir=results / "bench")


def _prune_rehearsal(plan: RunPlan, done: int, console: Console) -> None:
    """A rehearsal's weights are deleted once the protocols that need them are done (the run's later protocols
    keep theirs): at the paper's size an encoder is up to 180 MB, and a rehearsal of every table trains about a
    hundred. Their configuration, logs and records stay; a later rehearsal that needs one trains it again."""
    later = {cp.checkpoint_hash for pp in plan.protocols[done + 1:] for cp in pp.cells}
    freed = 0
    for cp in plan.protocols[done].cells:
        path = plan.results_dir / "checkpoints" / cp.checkpoint_hash / ENCODER_FILE
        if cp.checkpoint_hash not in later and path.exists():
            freed += path.stat().st_size
            path.unlink()
    if freed:
        console.print(f"rehearsal: {freed / 1e9:.1f} GB of rehearsal weights deleted", highlight=False)


def validate_protocols(
    protocols: Sequence[str | os.PathLike],
    *,
    preset: str | None = "demo",
    rows: Iterable[str] | None = None,
    dataset: str | None = None,
    split: str | None = None,
    seeds: Iterable[int] | None = None,
    data_root: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    rehearsal: Rehearsal | None = None,
    console: Console | None = None,
) -> list[tuple[Protocol, list[Cell]]]:
    """Everything :func:`run_protocols` checks before it loads any data, and the cells it would run: each file
    read with ``overrides`` (``--set``) and validated (keys, types, declared ranges, registry names), the
    preset's cells expanded with the same CLI selections, their data paths found, and what each cell derives
    (merged schedule, evaluation options, encoder configuration: :func:`~usdrl_bench.protocols.spec.check_cells`)
    checked. ``usdrl-bench validate`` and ``run`` both call it. ``preset=None`` checks the files alone.

    Raises:
        ProtocolError, FileNotFoundError, ValueError: the first problem, naming the file and the key.
    """
    console = console or Console(stderr=True, soft_wrap=True)
    root = resolve_data_root(data_root)
    loaded = [load_protocol(protocol_path(p), tuple(overrides)) for p in protocols]
    if preset is None:
        return [(p, []) for p in loaded]
    work = []
    for protocol in _with_preset(loaded, preset, console):
        cells = _cells(protocol, preset, dataset, split, seeds, rows, root, rehearsal)
        check_cells(cells)
        work.append((protocol, cells))
    return work


#: the free space below which a results folder counts as full (a paper-size checkpoint is up to 1.2 GB)
MIN_FREE_BYTES = 200 * 2**20


def _write_probe(folder: Path) -> None:
    """``folder`` created, and a file written and removed in it (what a run or a command will write there).

    Raises:
        OSError: it cannot be created or written (read-only, not a folder, no permission).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
        pass


def check_results_folder(results: str | os.PathLike) -> Path:
    """The results folder, created, with a file written and removed in it, and at least
    :data:`MIN_FREE_BYTES` free: checked before any data is loaded or model trained.

    Raises:
        ValueError: the folder cannot be created or written (read-only, not a folder, no permission), or its
            disk is full; the message names the folder and what to do.
    """
    path = Path(results)
    try:
        _write_probe(path)
    except OSError as exc:
        raise ValueError(f"results folder {path} is not writable ({exc.strerror or exc}): give a writable folder "
                         "with --results") from None
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise ValueError(f"results folder {path} is on a full disk ({free / 2**20:.0f} MiB free, at least "
                         f"{MIN_FREE_BYTES / 2**20:.0f} MiB needed): free space or give another --results")
    return path


def _with_preset(loaded: list[Protocol], preset: str, console: Console) -> list[Protocol]:
    """The protocols that have ``preset``. Of several, one without it is left out and named (the shipped
    ``official_comparison`` has no ``paper`` preset); a single one without it, or none with it, is an error
    (:func:`expand_cells` names the presets there are)."""
    having = [p for p in loaded if preset in p.presets]
    if len(loaded) == 1 or not having:
        return loaded
    for p in loaded:
        if preset not in p.presets:
            console.print(f"[yellow]skipped[/] {p.name}: no preset {preset!r} (it has {', '.join(p.presets)})",
                          highlight=False)
    return having


def _pretrain_missing(runner: ProtocolRunner, plan: RunPlan, context: dist_utils.DistributedContext | None,
                      launcher: LauncherOptions | None, jobs: int, console: Console) -> bool:
    """Train the checkpoints ``plan`` still needs before the evaluations: data-parallel across the torchrun
    ranks (then the process group ends), as submitit jobs, or in ``jobs`` worker processes; with none of
    these the evaluation loop trains them in this process. Returns False on a torchrun rank other than 0."""
    t0 = time.perf_counter()
    if context is not None:
        with Progress(*progress_columns(), console=runner.console, transient=True, disable=not context.is_main) as progress:
            trained = pretrain_distributed(runner.trainer, plan, progress)
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()  # evaluations run on rank 0 alone
        if not context.is_main:
            return False
        console.print(f"pretrained {trained} model{'' if trained == 1 else 's'} data-parallel on {context.world_size} "
                      f"processes ({context.backend}) in {time.perf_counter() - t0:.0f} s")
    elif launcher is not None:
        submitted = submit_pretrainings(runner.trainer, plan, launcher, console=console)
        if submitted:
            console.print(f"{submitted} pretraining job(s) finished ({launcher.launcher}) in "
                          f"{time.perf_counter() - t0:.0f} s")
    elif jobs > 1:
        with Progress(console=console, transient=True) as progress:
            trained = pretrain_in_workers(runner.trainer, plan, jobs, progress)
        if trained:
            console.print(f"pretrained {trained} model{'' if trained == 1 else 's'}, {jobs} at a time, in "
                          f"{time.perf_counter() - t0:.0f} s")
    return True


def run_protocol(protocol: str | os.PathLike, *, preset: str = "demo", rows: Iterable[str] | None = None,
                 dataset: str | None = None, split: str | None = None, seeds: Iterable[int] | None = None,
                 results: str | os.PathLike = "results", device: str | torch.device = "auto", jobs: int = 1,
                 data_root: str | os.PathLike | None = None, launcher: LauncherOptions | None = None,
                 log_every: int = 20, tensorboard: bool = True, wandb_project: str | None = None,
                 console: Console | None = None, overrides: Sequence[str] = (),
                 rehearse: bool | Rehearsal = False) -> pd.DataFrame:
    """Run one protocol (see :func:`run_protocols`) and return its records.

    Args:
        protocol: a YAML path, or a shipped protocol's name (``"table5_ablation"``).
        preset: ``demo`` (embedded data, CPU minutes) or ``paper`` (the paper's setting).
        rows: row ids to run (default: the preset's).
        dataset: ``NAME`` or ``FORMAT:PATH`` overriding the preset's data; ``split``: its named split.
        seeds: seeds overriding the preset's.
        results: the results folder (checkpoints, features, records are cached there and reused).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        jobs: models pretrained at once (CPU worker processes, or one per GPU on CUDA).
        data_root: where named datasets (``ntu60_xsub``, ...) are found (default ``$USDRL_DATA``, else
            ``./data``).
        launcher: submit the pretrainings as submitit jobs (:class:`~usdrl_bench.protocols.launch.LauncherOptions`).
        log_every, tensorboard, wandb_project: how pretraining reports (loss every ``log_every`` steps).
        console: where progress goes (default: stderr).
        overrides: ``KEY.PATH=VALUE`` settings over the file (``["presets.demo.pretrain.epochs=3"]``).
        rehearse: run the preset at its real shapes with the work cut down, under ``<results>/rehearsal``
            (see :func:`run_protocols`).
    Returns:
        the records, one row per metric (``row_id``, ``row_label``, ``metric``, ``value``, ``seed``, provenance).
    """
    return run_protocols([protocol], preset=preset, rows=rows, dataset=dataset, split=split, seeds=seeds,
                         results=results, device=device, jobs=jobs, data_root=data_root, launcher=launcher,
                         log_every=log_every, tensorboard=tensorboard, wandb_project=wandb_project, console=console,
                         overrides=overrides, rehearse=rehearse)[0][1]


def load_encoder(path: str | os.PathLike, method: str | None = None, **overrides: object) -> torch.nn.Module:
    """An encoder, in eval mode, loaded without running code (``weights_only``).

    Args:
        path: a suite checkpoint (``results/checkpoints/<hash>/encoder.pt``), an official USDRL ``.pth.tar``, or,
            with ``method``, a checkpoint as that method's official code saves it.
        method: the method whose official format ``path`` is in (``skeletonclr``, ``aimclr``, ``mamp``, ``cmd``,
            ``usdrl``; ``usdrl-bench list`` shows the methods). A suite checkpoint is read as such whatever
            ``method`` says, and must hold the method's encoder.
        **overrides: for official files, the official linear-evaluation constructor's own arguments where the file
            does not hold the configuration (:func:`load_official`); for suite files, non-shape config fields.
    Raises:
        FileNotFoundError: no such file.
        ValueError: an unknown format, or a suite file of another method's encoder.
        CheckpointMismatchError: weights that do not fit.
        TypeError: an unknown official argument.
    """
    return load_weights(path, method, **overrides)


def load_official(path: str | os.PathLike, method: str, **official_args: object) -> OfficialModel:
    """The encoder and, for a pretraining checkpoint, the objective (projectors, key encoders, queues, decoder)
    of a file as ``method``'s official code saves it. See
    :func:`usdrl_bench.methods.official.load_official`."""
    return _load_official(path, method, **official_args)


def export_official(checkpoint: str | os.PathLike, method: str, out: str | os.PathLike) -> Path:
    """Write a suite checkpoint in ``method``'s official format, for the official code to evaluate.

    Args:
        checkpoint: a suite checkpoint folder (``results/checkpoints/<hash>``) or its ``encoder.pt``; the
            ``objective.pt`` beside it (projectors, key encoders, queues, decoder) is written too where the
            official file holds them.
        method: the method (its official format).
        out: the file to write.
    Returns:
        ``out``.
    Raises:
        ValueError: the checkpoint's encoder is not the method's, or the format needs the objective and there is
            no ``objective.pt``.
    """
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    encoder_path = folder / ENCODER_FILE if path.is_dir() else path
    encoder = load_encoder(encoder_path, method=method)
    objective_path = folder / OBJECTIVE_FILE
    objective_state = read_checkpoint(objective_path) if objective_path.is_file() else None
    return _export_official(encoder, objective_state, method, out)


def embed(encoder: torch.nn.Module, x: np.ndarray, num_frames: np.ndarray | None = None, dense: bool = False, *,
          batch_size: int = 256, device: str | torch.device = "cpu", stream: str = "joint") -> np.ndarray | dict[str, np.ndarray]:
    """Encode skeletons as the official downstream code does (each sample's valid frames resized to T).

    Args:
        encoder: a suite encoder (:func:`load_encoder`, or one being trained).
        x: ``(N, C, T', V, M)`` float32 joints (may be memory-mapped).
        num_frames: ``(N,)`` valid frames per sample; ``None`` = up to each sample's last non-zero frame.
        dense: return the token features instead of the pooled ones.
        batch_size, device: how the encoder runs.
        stream: ``joint``, ``bone`` (NTU layout) or ``motion``.
    Returns:
        ``(N, 2H)`` float32 features [max over temporal tokens, max over spatial tokens]; with ``dense``,
        ``{"temporal": (N, T, H), "spatial": (N, M·V, H)}``.
    Raises:
        ValueError: ``x`` is not 5-D, ``num_frames`` has the wrong length or a count outside ``[1, T]``,
            ``batch_size`` < 1.
    """
    x = np.asarray(x) if not isinstance(x, np.memmap) else x
    _check_skeletons(x, None if num_frames is None else np.asarray(num_frames), batch_size, source="embed")
    layout = next((lay for lay in LAYOUTS.values() if lay.num_joints == x.shape[3]), None) if stream in ("bone", "jmb") else None
    return extract(encoder, x, None if num_frames is None else np.asarray(num_frames), layout=layout, stream=stream,
                   batch_size=batch_size, device=device, dense=dense)


def _check_skeletons(x: np.ndarray, num_frames: np.ndarray | None, batch_size: int = 1, source: str = "x") -> None:
    """What :func:`embed` and :func:`embed_file` refuse before any work: ``x`` not ``(N, C, T, V, M)``, frame counts
    of another length or outside ``[1, T]``, a batch below 1.

    Raises:
        ValueError: naming ``source`` (the array, or its file) and the first offending sample.
    """
    if x.ndim != 5:
        raise ValueError(f"{source}: expected an (N, C, T, V, M) array, got shape {x.shape}")
    if num_frames is not None:
        counts = np.asarray(num_frames).reshape(-1)
        if len(counts) != len(x):
            raise ValueError(f"{source}: {len(counts)} frame counts for {len(x)} samples")
        bad = np.flatnonzero((counts < 1) | (counts > x.shape[2]))
        if bad.size:
            raise ValueError(f"{source}: sample {int(bad[0])} has {int(counts[bad[0]])} valid frames, outside "
                             f"[1, {x.shape[2]}]")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@dataclass(frozen=True)
class Embedded:
    """What :func:`embed_file` wrote: ``path``; ``shapes``: name -> shape (``features`` ``(N, 2H)``, or ``temporal``
    ``(N, T, H)`` and ``spatial`` ``(N, M·V, H)`` with ``dense``); ``frames``: where the valid frame counts came
    from."""

    path: Path
    shapes: dict[str, tuple[int, ...]]
    frames: str


def embed_file(checkpoint: str | os.PathLike, data: str | os.PathLike, out: str | os.PathLike, *,
               method: str | None = None, num_frames: str | os.PathLike | None = None, frames: int | None = None,
               dense: bool = False, batch_size: int = 256, device: str | torch.device = "auto") -> Embedded:
    """``usdrl-bench embed``: encode the ``(N, C, T, V, M)`` ``.npy`` ``data`` with the encoder of ``checkpoint``
    (:func:`load_encoder`; ``method``: its official format; ``frames``: the encoder's T where an official file
    cannot say) and write the features to ``out`` (``.npy``; with ``dense`` an ``.npz``). The valid frame counts:
    the ``(N,)`` ``.npy`` ``num_frames``, else the official ``<prefix>_num_frame.npy`` beside an AGCN
    ``<prefix>_data_joint.npy``, else up to each sample's last non-zero frame. Everything is checked before the
    encoder loads; ``out`` is written atomically.

    Raises:
        FileNotFoundError: no ``data``, ``num_frames`` or ``checkpoint`` file.
        ValueError: ``out`` is a folder or cannot be written, ``data`` is not 5-D, frame counts of another length
            or outside ``[1, T]``, ``batch_size`` < 1; what :func:`load_encoder` raises.
    """
    data, out = Path(data), Path(out)
    if not data.is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    if out.is_dir():
        raise ValueError(f"{out} is a folder; give a file name (.npy, or .npz with dense)")
    try:  # the output must be writable before any work is done
        _write_probe(out.parent)
    except OSError as exc:
        raise ValueError(f"{out}: cannot write there ({exc.strerror or exc}); nothing was computed") from None
    x = np.load(data, mmap_mode="r")
    if num_frames is None and data.name.endswith("_data_joint.npy"):
        beside = data.with_name(data.name[: -len("_data_joint.npy")] + "_num_frame.npy")
        num_frames = beside if beside.is_file() else None
    counts, source = None, "up to each sample's last non-zero frame (no frame-count file)"
    if num_frames is not None:
        if not Path(num_frames).is_file():
            raise FileNotFoundError(f"frame-count file not found: {num_frames}")
        counts, source = np.load(num_frames, allow_pickle=False).astype(np.int64).reshape(-1), str(num_frames)
    _check_skeletons(x, counts, batch_size, source=f"{data}" + (f" with {num_frames}" if num_frames else ""))
    encoder = load_encoder(checkpoint, method, **({"num_frames": frames} if frames else {}))
    result = embed(encoder, x, counts, dense, batch_size=batch_size,
                   device=resolve_device(device) if isinstance(device, str) else device)
    if isinstance(result, dict):
        path = save_npz_atomic(out, **result)
        return Embedded(Path(path), {k: tuple(v.shape) for k, v in result.items()}, source)
    return Embedded(Path(save_npy_atomic(out, result)), {"features": tuple(result.shape)}, source)


#: the releases ``prepare_data`` knows
PREPARED_DATASETS = ("ntu60", "ntu120", "pku1", "pku2", "uav")


def prepare_data(dataset: str, raw: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 data_root: str | os.PathLike | None = None, pipeline: str = "agcn", workers: int | None = None,
                 missing_lists: Sequence[str | os.PathLike] | None = None) -> PrepareSummary:
    """``usdrl-bench data prepare``: a raw release (``ntu60``, ``ntu120``, ``pku1``, ``pku2``, ``uav``) unpacked at
    ``raw`` -> the prepared arrays a named dataset reads, in ``out`` (default: the dataset's folder under the data
    root, where ``ntu60_xsub`` ... are then found). ``pipeline`` (``agcn`` or ``ctrgcn``) and ``missing_lists``
    (the official lists of samples with missing skeletons) are NTU's.

    Raises:
        ValueError: an unknown dataset, ``workers`` below 1, or ``pipeline`` / ``missing_lists`` for a release
            other than NTU's; what the preparation raises (an unknown NTU pipeline, a missing or malformed
            release, named).
    """
    if dataset not in PREPARED_DATASETS:
        raise ValueError(f"unknown release {dataset!r}; known: {', '.join(PREPARED_DATASETS)}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out) if out is not None else default_output(dataset, resolve_data_root(data_root))
    if dataset in ("ntu60", "ntu120"):
        return prepare_ntu(dataset, raw, out_dir, pipeline=pipeline, workers=workers, missing_lists=missing_lists)
    if pipeline != "agcn" or missing_lists:
        raise ValueError(f"pipeline and missing lists apply to NTU only, not {dataset}")
    if dataset == "uav":
        return prepare_uav(raw, out_dir, workers=workers)
    return prepare_pku(dataset, raw, out_dir, workers=workers)


# --- what the command line calls besides running: reports, listings, scoring, benchmarks ---------------------


def markdown_tables(records: pd.DataFrame) -> list[str]:
    """Each table of ``records`` (one per protocol and preset: :func:`~usdrl_bench.report.tables.build_tables`)
    as Markdown, with the paper's numbers beside the suite's where the protocol names them."""
    return [to_markdown(table) for table in build_tables(records)]


@dataclass
class ReportSummary:
    """What :func:`write_report` found and wrote: ``records`` (every readable record), ``tables`` (Markdown, one
    per protocol and preset), ``written`` (the files under the reports folder), ``skipped`` (one message per
    unreadable record file, left out), ``reproduction`` (the reproduction table's Markdown, with
    ``official``)."""

    records: pd.DataFrame
    tables: list[str]
    written: list[Path]
    skipped: list[str]
    reproduction: str | None = None


def write_report(results: str | os.PathLike = "results", out: str | os.PathLike = "reports", *,
                 official: str | os.PathLike | None = None) -> ReportSummary:
    """``usdrl-bench report``: every table and figure under ``out`` from the records under ``results`` (a table
    whose inputs did not change is not rendered again); with ``official``, a folder of the official code's runs
    (:func:`~usdrl_bench.report.reproduction.read_official_runs`), also the reproduction table and loss curves.
    Nothing is written when there is no record.

    Raises:
        FileNotFoundError, ValueError: an unreadable ``official`` folder.
    """
    skipped: list[str] = []
    records = load_records(results, bad=skipped)
    if records.empty:
        return ReportSummary(records, [], [], skipped)
    out = Path(out)
    summary = ReportSummary(records, markdown_tables(records), write_reports(records, out, results), skipped)
    if official is not None:
        table = reproduction_table(records, read_official_runs(official))
        summary.reproduction = ("# Reproduction: the suite beside the official code\n\n" + table.to_markdown(index=False)
                                + "\n")
        out.mkdir(parents=True, exist_ok=True)
        summary.written += [write_text_atomic(out / "reproduction.md", summary.reproduction),
                            write_text_atomic(out / "reproduction.csv", table.to_csv(index=False))]
        curves = plot_loss_curves(records, official, results, out / "reproduction_loss.png")
        summary.written += [curves] if curves is not None else []
    return summary


def shipped_protocol_table() -> pd.DataFrame:
    """``usdrl-bench list --protocols``: one row per shipped protocol (``name``, ``paper_table``, ``presets``,
    ``rows``)."""
    rows = []
    for name in list_protocols():
        protocol = load_protocol(protocol_path(name))
        rows.append({"name": name, "paper_table": protocol.paper_table or "", "presets": ", ".join(protocol.presets),
                     "rows": len(protocol.rows)})
    return pd.DataFrame(rows, columns=["name", "paper_table", "presets", "rows"])


def list_components(plugins: Sequence[str] = ()) -> dict[str, list[Entry]]:
    """``usdrl-bench list``: kind (``methods``, ``encoders``, ``objectives``, ``datasets``, ``evaluations``) -> its
    registered entries, the built-ins, the shipped baselines and ``plugins`` (module names) loaded.

    Raises:
        ImportError: a plug-in that does not import (named).
    """
    load_builtins()
    load_shipped_baselines()
    registry.load_plugins(list(plugins))
    return {kind: reg.entries() for kind, reg in registry.ALL.items()}


def bench_throughput(encoders: Sequence[str], *, preset: str, batch_sizes: Sequence[int], precisions: Sequence[str],
                     compiles: Sequence[bool], objective: str = "mgfd", encoder_options: dict | None = None,
                     device: str | torch.device = "auto", steps: int = 5, repeats: int = 3, warmup: int = 2,
                     peak_tflops: float | None = None, out: str | os.PathLike = "results/bench",
                     on_progress=None) -> tuple[list[BenchResult], Path]:
    """``usdrl-bench bench``: time pretraining steps of every combination of ``encoders`` x ``batch_sizes`` x
    ``precisions`` x ``compiles`` (:func:`usdrl_bench.train.throughput.run_bench`: interleaved rounds, medians)
    and write the results under ``out``. ``encoder_options`` (``drop_path`` applies to DSTE only).

    Raises:
        ValueError: what :func:`~usdrl_bench.train.throughput.run_bench` refuses (steps, repeats, batches).
    """
    device = resolve_device(device) if isinstance(device, str) else device
    configs = []
    for encoder, batch, precision, compiled in itertools.product(encoders, batch_sizes, precisions, compiles):
        options = dict(encoder_options or {})
        if encoder != "dste":
            options.pop("drop_path", None)
        configs.append(BenchConfig(encoder, preset, batch, precision, bool(compiled), objective, options))
    results = run_bench(configs, device, steps=steps, repeats=repeats, warmup=warmup, peak_tflops=peak_tflops,
                        on_progress=on_progress)
    return results, write_results(results, device, Path(out))
