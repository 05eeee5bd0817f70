"""What a run will cost before it starts: the models it trains, their FLOPs, peak memory and GPU-hours.

``usdrl-bench plan PROTOCOL --preset paper`` (and the start of every real run) lists the checkpoints the run
needs, each with its key and whether it is already cached. Per model it adds what the rehearsal measured
(:func:`measure_rehearsal`, run by ``run --rehearse``; :mod:`usdrl_bench.train.measure`):

* FLOPs per sample of a pretraining step (forward and backward) and of the encoder's forward;
* peak memory of a step at two batch sizes, on the rehearsal's device, extrapolated along their line to the
  preset's batch, and whether that fits the named GPU's memory (else: ``--nproc K`` keeps the global batch
  and puts 1/K of it on each of K GPUs; the suite is world-size invariant);
* the disk its checkpoint takes (``encoder.pt`` and ``objective.pt``: the weights and buffers counted);
* GPU-hours on the named GPU: the run's FLOPs (pretraining: FLOPs per sample x training samples x epochs;
  features of the training and test parts for the frozen-feature evaluations; fine-tuning evaluations:
  three forward passes per sample and epoch) divided by the GPU's dense bf16 peak times a model FLOPs
  utilisation (MFU): measured by ``usdrl-bench bench`` on that GPU where its JSON is in ``results/bench``,
  else :data:`ASSUMED_MFU`, said so.

Nothing is guessed silently: a model the rehearsal has not measured shows no memory and no hours, only why.
A dataset that is not under the data root is priced with its release's sizes
(:data:`~usdrl_bench.data.synthetic.releases.RELEASES`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from rich.console import Console

from usdrl_bench.data.root import Location
from usdrl_bench.data.synthetic.releases import RELEASES
from usdrl_bench.io import stable_hash, write_json_atomic
from usdrl_bench.objectives import create_objective
from usdrl_bench.protocols.plan import CellPlan, DataStore, RunPlan, build_encoder, data_identity
from usdrl_bench.protocols.spec import Cell
from usdrl_bench.train.measure import StepCost, measure_step
from usdrl_bench.train.pretrain import ENCODER_FILE, resolve_precision

__all__ = ["ASSUMED_MFU", "GPUS", "GPU", "ReleaseShapes", "cost_key", "forecast", "forecast_totals",
           "measure_rehearsal", "FORECAST_DIR"]

#: where measured step costs are kept (under a rehearsal's results folder)
FORECAST_DIR = "forecast"
#: the MFU assumed where ``bench`` has not run on the GPU (a 2-layer, 1024-wide transformer on 64 + 50
#: tokens per view is far from the matrix sizes that reach 50 %; an assumption, not a measurement)
ASSUMED_MFU = 0.25


@dataclass(frozen=True)
class GPU:
    """A GPU to forecast for: its memory and dense bf16 peak (vendor data sheets, SXM parts)."""

    name: str
    memory_gb: float
    bf16_tflops: float


GPUS: dict[str, GPU] = {
    "h100": GPU("H100 80 GB (SXM)", 80.0, 989.0),
    "h200": GPU("H200 141 GB (SXM)", 141.0, 989.0),
}
#: the share of the GPU's memory a run may plan to use (the CUDA context, the caching allocator's slack)
USABLE_MEMORY = 0.9


class ReleaseShapes(DataStore):
    """A :class:`DataStore` that answers a training shape without the data: the shape recorded by an earlier run,
    else the data's when they are under the data root (loaded once), else the release's (:data:`RELEASES`).
    Test sizes are the release's for a named dataset. Only for planning."""

    def __init__(self, results_dir: Path, data_root: Path | None, console: Console, *,
                 locations: dict[str, Location] | None = None) -> None:
        super().__init__(results_dir, data_root, console, locations=locations)
        self.from_release: set[str] = set()
        self._shapes: dict[str, tuple[int, int, int, int, int]] = {}  # data identity -> shape, asked once

    def train_shape(self, spec) -> tuple[int, int, int, int, int]:  # noqa: ANN001 - DatasetSpec
        key = stable_hash(data_identity(spec))
        if key not in self._shapes:
            try:
                self._shapes[key] = super().train_shape(spec)
            except FileNotFoundError:
                release = RELEASES.get(spec.name)
                if release is None:
                    raise
                self.from_release.add(spec.name)
                self._shapes[key] = (release.train, *release.shape)
        return self._shapes[key]

    def test_size(self, spec) -> int:  # noqa: ANN001 - DatasetSpec
        """Test samples: the release's for a named dataset, else the loaded data's."""
        release = RELEASES.get(spec.name)
        return release.test if release is not None else len(self.load(spec)[1])


def cost_key(cell: Cell, encoder_config: dict[str, Any], shape: tuple[int, ...], device_type: str) -> str:
    """What a step's cost depends on: the encoder and its configuration, the objective and its options, the
    views, optimiser and precision, the stream and the sample shape (not the data, the seed or the length of
    the schedule: a rehearsal's measurement prices the real run)."""
    spec = cell.schedule
    return stable_hash({"encoder": cell.row.encoder, "encoder_config": encoder_config, "objective": cell.row.objective,
                        "objective_options": cell.objective_options, "views": dataclasses.asdict(spec.views),
                        "optimizer": spec.optimizer, "precision": resolve_precision(spec.precision, torch.device(device_type)),
                        "stream": cell.pretrain_dataset.stream, "shape": list(shape[1:]), "device": device_type})


def _cost_file(results_dir: Path, key: str) -> Path:
    return Path(results_dir) / FORECAST_DIR / f"{key}.json"


def measure_rehearsal(plan: RunPlan, store: DataStore, device: torch.device, console: Console,
                      batches: tuple[int, ...] | None = None) -> int:
    """Measure every distinct model configuration the rehearsal ``plan`` pretrains (:func:`measure_step`), once:
    kept in ``<results>/forecast/<cost key>.json``. Batches: 4 and 8 on a CPU, a quarter and a half of the
    preset's batch on CUDA. Returns the number measured now."""
    done = 0
    seen: set[str] = set()
    for cp in plan.cell_plans:
        cell = cp.cell
        if cell.row.objective is None or cell.row.checkpoint is not None:
            continue
        shape = store.train_shape(cell.pretrain_dataset)
        key = cost_key(cell, cp.encoder_config, shape, device.type)
        path = _cost_file(plan.results_dir, key)
        if key in seen or path.exists():
            continue
        seen.add(key)
        full = cell.schedule if cell.rehearsal is None else dataclasses.replace(cell, rehearsal=None).schedule
        sizes = batches or ((4, 8) if device.type != "cuda" else (max(2, full.batch_size // 4), max(4, full.batch_size // 2)))
        encoder = build_encoder(cell, shape)
        objective = create_objective(cell.row.objective, encoder, **cell.objective_options)
        train, _ = store.load(cell.pretrain_dataset)
        console.print(f"measuring {cell.row.label} ({cell.row.encoder} + {cell.row.objective}, C,T,V,M = "
                      f"{tuple(shape[1:])}) at batches {', '.join(map(str, sizes))} on {device}", highlight=False)
        try:
            cost = measure_step(encoder, objective, cell.schedule, shape, train.layout,
                                stream=cell.pretrain_dataset.stream, batches=sizes, device=device)
        except torch.cuda.OutOfMemoryError:  # the plan then says "not measured" for this model
            console.print(f"[yellow]warning:[/] out of memory measuring {cell.row.label} at batches {sizes}; "
                          "measure with smaller batches (measure_rehearsal(..., batches=...))", highlight=False)
            torch.cuda.empty_cache()
            continue
        write_json_atomic(path, {"cost": cost.to_dict(), "encoder": cell.row.encoder, "objective": cell.row.objective,
                                 "row": cell.row.label, "shape": list(shape[1:])})
        done += 1
    return done


def _measured(results_dirs: list[Path], keys: list[str]) -> StepCost | None:
    """The measured cost under the first of ``keys`` found in any of ``results_dirs`` (None: not measured)."""
    for key in keys:
        for d in results_dirs:
            path = _cost_file(d, key)
            if path.is_file():
                try:
                    return StepCost.from_dict(json.loads(path.read_text())["cost"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
    return None


def bench_mfu(bench_dir: Path, gpu: GPU) -> dict[str, float]:
    """MFU per encoder measured by ``usdrl-bench bench`` on ``gpu`` (the best over precisions and compile
    settings of the JSON files in ``bench_dir``)."""
    found: dict[str, float] = {}
    fragment = gpu.name.split()[0]
    for path in sorted(Path(bench_dir).glob("bench-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if fragment not in str(data.get("environment", {}).get("device_name", "")):
            continue
        for r in data.get("results", []):
            mfu, encoder = r.get("mfu"), (r.get("config") or {}).get("encoder")
            if isinstance(mfu, (int, float)) and encoder and mfu > found.get(encoder, 0.0):
                found[encoder] = float(mfu)
    return found


_FINETUNES = {"finetune", "semi"}


def _evaluation_samples(cell: Cell, n_train: int, n_test: int) -> tuple[float, float]:
    """(forward passes for features, forward passes of fine-tuning x 3) of the cell's evaluations, per model."""
    features = 0.0
    finetune = 0.0
    evaluations = cell.evaluations
    if any(e not in _FINETUNES and e not in ("detection", "segmentation") for e in evaluations):
        features = n_train + n_test
    for name, opts in evaluations.items():
        epochs = opts.get("epochs", 80 if name in _FINETUNES else 0)
        if name == "finetune":
            finetune += 3 * (epochs * n_train + n_test)
        elif name == "semi":
            ratios = opts.get("ratios", (0.01, 0.1))
            repeats = opts.get("repeats", 5)
            finetune += 3 * sum(repeats * (epochs * r * n_train + n_test) for r in ratios)
        elif name == "early" and opts.get("mode") == "finetune":
            finetune += 3 * len(opts.get("ratios", (0.1,) * 10)) * (epochs * n_train + n_test)
    return features, finetune


def forecast(plan: RunPlan, store: ReleaseShapes, gpu: GPU, *, measured_dirs: list[Path], mfu: float | None = None,
             bench_dir: Path | None = None) -> pd.DataFrame:
    """One line per model the run needs (its checkpoint key, cached or not, the measured cost, the memory at
    the preset's batch, whether it fits ``gpu``, GPU-hours at the MFU; module docstring)."""
    measured_mfu = bench_mfu(bench_dir, gpu) if bench_dir is not None and mfu is None else {}
    needed_by: dict[str, list[str]] = {}  # checkpoint -> the protocols that need it, in plan order
    plans: dict[str, CellPlan] = {}  # checkpoint -> its first cell's plan
    for pp in plan.protocols:
        for cp in pp.cells:
            names = needed_by.setdefault(cp.checkpoint_hash, [])
            if pp.protocol.name not in names:
                names.append(pp.protocol.name)
            plans.setdefault(cp.checkpoint_hash, cp)
    usable = USABLE_MEMORY * gpu.memory_gb * 1e9
    rows: list[dict[str, Any]] = []
    for key, cp in plans.items():
        cell = cp.cell
        trains = cell.row.objective is not None and cell.row.checkpoint is None
        cached = (plan.results_dir / "checkpoints" / key / ENCODER_FILE).exists()
        shape = store.train_shape(cell.pretrain_dataset)
        row: dict[str, Any] = {
            "protocol": cell.protocol.name, "protocols": ",".join(needed_by[key]), "row": cell.row.id,
            "label": cell.row.label, "column": cell.dataset.column, "key": key, "cached": cached,
            "trains": trains and not cached, "encoder": cell.row.encoder,
            "objective": cell.row.objective or "none (random init)", "train_samples": shape[0],
            "data": "release sizes" if cell.pretrain_dataset.name in store.from_release else "data",
        }
        rows.append(row)
        if not trains:
            continue
        spec = cell.schedule
        row.update(epochs=spec.epochs, batch=spec.batch_size)
        # a GPU's measurement first, else a CPU's
        cost = _measured(measured_dirs, [cost_key(cell, cp.encoder_config, shape, d) for d in ("cuda", "cpu")])
        if cost is None:
            row["why"] = "not measured: run `usdrl-bench run PROTOCOL --preset PRESET --rehearse` to measure it"
            continue
        feats, fine = _evaluation_samples(cell, store.train_shape(cell.dataset)[0], store.test_size(cell.dataset))
        flops = (0.0 if cached else cost.flops_per_sample * shape[0] * spec.epochs) \
            + cost.forward_flops_per_sample * (feats + fine)
        used_mfu = mfu or measured_mfu.get(cell.row.encoder) or ASSUMED_MFU
        peak = cost.memory_at(spec.batch_size)
        row.update(gflops_per_sample=cost.flops_per_sample / 1e9,
                   checkpoint_gb=0.0 if cached else cost.checkpoint_bytes / 1e9,
                   measured_on=f"{cost.device} ({cost.method}, batches {', '.join(str(b) for b, _ in cost.memory)})",
                   peak_gb=peak / 1e9, fits=peak <= usable, gpus_needed=max(1, math.ceil(peak / usable)), mfu=used_mfu,
                   mfu_source="given" if mfu else ("bench" if cell.row.encoder in measured_mfu else "assumed"),
                   gpu_hours=flops / (gpu.bf16_tflops * 1e12 * used_mfu) / 3600)
    return pd.DataFrame(rows)


def forecast_totals(frame: pd.DataFrame, protocol: str | None = None) -> dict[str, Any]:
    """Models to train, cached, measured, and the GPU-hours of those measured: of every model in ``frame``,
    or of those ``protocol`` needs (a model two protocols share counts in each, once in all)."""
    if protocol is not None:
        frame = frame[frame["protocols"].str.split(",").apply(lambda names: protocol in names)]
    if frame.empty:
        return {"models": 0, "to_train": 0, "cached": 0, "gpu_hours": 0.0, "unmeasured": 0}
    hours = frame["gpu_hours"].fillna(0.0) if "gpu_hours" in frame else pd.Series(0.0, index=frame.index)
    trains = frame[frame["trains"]]
    return {"models": int((frame["objective"] != "none (random init)").sum()), "to_train": len(trains),
            "cached": int(frame["cached"].sum()), "gpu_hours": float(hours.sum()),
            "unmeasured": int(trains["gpu_hours"].isna().sum()) if "gpu_hours" in trains else len(trains),
            "max_peak_gb": float(frame["peak_gb"].max()) if "peak_gb" in frame and frame["peak_gb"].notna().any() else None,
            "checkpoint_gb": float(frame["checkpoint_gb"].fillna(0.0).sum()) if "checkpoint_gb" in frame else 0.0}
