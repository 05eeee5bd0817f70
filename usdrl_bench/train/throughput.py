"""``usdrl-bench bench``: time pretraining steps, several configurations side by side in one process.

Each configuration (encoder and size, objective, global batch, precision, ``torch.compile``) builds the
same :class:`~usdrl_bench.train.pretrain.TrainStep` the pretraining loop runs, on random skeletons shaped
like NTU RGB+D (``(N, 3, 300, 25, 2)``, valid lengths 50-300 frames). Measured per configuration:

* **samples/s**: whole steps (input gather, views, forward, backward, optimiser) back to back with no
  synchronisation inside, as the loop runs them; the median over ``repeats`` rounds of ``steps`` steps;
* **ms per phase** (input, views, forward, backward, optimiser), timed with a device synchronisation
  after each phase (so their sum exceeds the unsynchronised step on a GPU, where phases overlap);
* **peak device memory** (CUDA: ``max_memory_allocated`` during the timed steps);
* **FLOPs per sample** of forward + backward (``torch.utils.flop_counter``: matrix products and
  attention, which dominate), and on CUDA the **model FLOPs utilisation** against the device's dense
  peak for the precision (known for A100, H100 and H200; ``peak_tflops`` overrides).

Rounds are interleaved across configurations (round 1 of every configuration, then round 2, ...), so
a slow period of the machine affects all of them alike. Results go to ``results/bench/bench-<time>.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from usdrl_bench.data.augment import SampleKeys, make_views
from usdrl_bench.encoders import create_encoder
from usdrl_bench.io import write_json_atomic
from usdrl_bench.objectives import create_objective
from usdrl_bench.train.pretrain import TrainStep
from usdrl_bench.train.spec import PretrainSpec

__all__ = ["BenchConfig", "BenchResult", "run_bench", "peak_flops", "DEFAULT_CONFIGS"]

#: dense peak FLOP/s by device name fragment and precision (vendor data sheets, SXM parts; TF32 for fp32)
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.0, "fp16": 989.0, "fp32": 494.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "fp32": 494.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "fp32": 156.0},
}
PHASES = ("input", "views", "forward", "backward", "optimizer")


@dataclass(frozen=True)
class BenchConfig:
    """One configuration to time.

    Attributes:
        encoder: registered encoder name.
        preset: its preset (``paper``: hidden 1024, T 64).
        batch_size: global batch (samples; each gives ``num_views`` views).
        precision: ``fp32``, ``bf16``, ``fp16`` or ``auto``.
        compile: ``torch.compile`` the encoder and objective.
        objective: registered objective name.
        encoder_options: encoder config overrides (e.g. ``{"hidden_size": 256}``).
        objective_options: objective options.
        num_views: views per sample (MG-FD: 4).
    """

    encoder: str = "dste"
    preset: str = "small"
    batch_size: int = 32
    precision: str = "fp32"
    compile: bool = False
    objective: str = "mgfd"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    objective_options: dict[str, Any] = field(default_factory=dict)
    num_views: int = 4

    @property
    def name(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.encoder_options.items())
        return (f"{self.encoder}-{self.preset}{'(' + opts + ')' if opts else ''} b{self.batch_size} {self.precision}"
                + (" compile" if self.compile else ""))


#: ``usdrl-bench bench`` with no arguments on a CPU: both encoders at the demo size (seconds)
DEFAULT_CONFIGS = (
    BenchConfig("dste", "small", 32, "fp32"),
    BenchConfig("sttr", "small", 32, "fp32"),
)


@dataclass
class BenchResult:
    config: BenchConfig
    samples_per_s: float
    ms_per_step: float
    phase_ms: dict[str, float]
    peak_memory_mb: float | None
    flops_per_sample: float | None
    mfu: float | None
    rounds_samples_per_s: list[float]
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["config"]["name"] = self.config.name
        return d


def peak_flops(device: torch.device, precision: str, override_tflops: float | None = None) -> float | None:
    """Dense peak FLOP/s of ``device`` for ``precision`` (None when unknown, e.g. on a CPU)."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, table in PEAK_TFLOPS.items():
        if fragment in name:
            return table.get(precision, table["fp32"]) * 1e12
    return None


class _Case:
    """A configuration built and ready to step."""

    def __init__(self, config: BenchConfig, device: torch.device, pool: np.ndarray, num_frames: np.ndarray) -> None:
        self.config, self.device = config, device
        torch.manual_seed(0)
        self.encoder = create_encoder(config.encoder, config.preset, in_channels=3, num_joints=25, num_bodies=2,
                                      **config.encoder_options)
        self.objective = create_objective(config.objective, self.encoder, **config.objective_options)
        spec = PretrainSpec(epochs=1, batch_size=config.batch_size, precision=config.precision, compile=config.compile)
        self.step = TrainStep(self.encoder, self.objective, spec, device)
        self.step.train()
        self.pool, self.num_frames = pool, torch.from_numpy(num_frames)
        self.rng = np.random.default_rng(0)
        self.epoch = 0

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def input(self):
        index = np.sort(self.rng.choice(len(self.pool), self.config.batch_size, replace=False))
        x = torch.from_numpy(np.ascontiguousarray(self.pool[index])).to(self.device, non_blocking=True)
        return x, self.num_frames[index].to(self.device, non_blocking=True), torch.from_numpy(index)

    def views(self, x, nf, idx):
        self.epoch += 1
        return make_views(x, nf, num_views=self.config.num_views, out_frames=self.encoder.num_frames,
                          generator=SampleKeys(0, self.epoch, idx), check=False)

    def full_step(self) -> None:
        x, nf, idx = self.input()
        self.step(self.views(x, nf, idx))

    def phased_step(self) -> dict[str, float]:
        times: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            self.sync()
            now = time.perf_counter()
            times[name] = (now - t) * 1e3
            t = now

        x, nf, idx = self.input()
        lap("input")
        views = self.views(x, nf, idx)
        lap("views")
        loss, _ = self.step.forward(views)
        lap("forward")
        self.step.backward(loss)
        lap("backward")
        self.step.optimizer_step()
        lap("optimizer")
        return times

    def flops(self) -> float | None:
        """Forward + backward FLOPs of one step, per sample."""
        x, nf, idx = self.input()
        views = self.views(x, nf, idx)
        try:
            with FlopCounterMode(display=False) as counter:
                with torch.autocast(self.device.type, dtype=self.step.autocast_dtype or torch.float32,
                                    enabled=self.step.autocast_dtype is not None):
                    loss, _ = self.step.module(views)  # eager: the counter sees every operator
                loss.backward()
            self.step.optimizer.zero_grad(set_to_none=True)
            return counter.get_total_flops() / self.config.batch_size
        except Exception:  # noqa: BLE001 - FLOP counting is informative only
            return None


def _synthetic_pool(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``size`` random NTU-shaped samples ``(size, 3, 300, 25, 2)`` float32 with 50-300 valid frames."""
    rng = np.random.default_rng(seed)
    pool = rng.standard_normal((size, 3, 300, 25, 2), dtype=np.float32)
    num_frames = rng.integers(50, 301, size)
    for i, n in enumerate(num_frames):
        pool[i, :, n:] = 0.0
    return pool, num_frames.astype(np.int64)


def _check_bench(configs: list[BenchConfig], steps: int, repeats: int, warmup: int, peak_tflops: float | None) -> None:
    """:func:`run_bench`'s refusals (its docstring), before anything is built."""
    if not configs:
        raise ValueError("no configuration to time")
    for value, name in ((steps, "steps"), (repeats, "repeats")):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    small = sorted({c.batch_size for c in configs if c.batch_size < 2})
    if small:
        raise ValueError(f"batch size must be >= 2 (batch statistics), got {small}")
    if peak_tflops is not None and not peak_tflops > 0:
        raise ValueError(f"peak_tflops must be > 0, got {peak_tflops}")


def run_bench(configs: list[BenchConfig], device: torch.device, *, steps: int = 5, repeats: int = 3, warmup: int = 2,
              peak_tflops: float | None = None, on_progress=None) -> list[BenchResult]:
    """Time every configuration, interleaved (see the module docstring). A configuration that fails to
    build or run (e.g. out of memory) gets a result with ``error`` set; the others go on.

    Raises:
        ValueError: no configuration, ``steps`` or ``repeats`` below 1, ``warmup`` below 0, a batch below 2
            (the objectives' batch statistics), ``peak_tflops`` not positive.
    """
    _check_bench(configs, steps, repeats, warmup, peak_tflops)
    pool, num_frames = _synthetic_pool(max(c.batch_size for c in configs) * 2)
    cases: list[_Case | None] = []
    errors: dict[int, str] = {}
    for i, config in enumerate(configs):
        try:
            case = _Case(config, device, pool, num_frames)
            for _ in range(warmup):
                case.full_step()
            case.sync()
            cases.append(case)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            errors[i] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            cases.append(None)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    rates: dict[int, list[float]] = {i: [] for i in range(len(configs))}
    phases: dict[int, list[dict[str, float]]] = {i: [] for i in range(len(configs))}
    memory: dict[int, float | None] = {}
    for r in range(repeats):
        for i, case in enumerate(cases):
            if case is None:
                continue
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                case.sync()
                t0 = time.perf_counter()
                for _ in range(steps):
                    case.full_step()
                case.sync()
                rates[i].append(steps * case.config.batch_size / (time.perf_counter() - t0))
                phases[i].append(case.phased_step())
                if device.type == "cuda":
                    memory[i] = torch.cuda.max_memory_allocated(device) / 2**20
            except Exception as exc:  # noqa: BLE001
                errors[i] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                cases[i] = None
            if on_progress is not None:
                on_progress(r * len(cases) + i + 1, repeats * len(cases))
    results = []
    for i, config in enumerate(configs):
        case = cases[i]
        if case is None or not rates[i]:
            results.append(BenchResult(config, float("nan"), float("nan"), {}, None, None, None, [],
                                       error=errors.get(i, "failed")))
            continue
        rate = statistics.median(rates[i])
        flops = case.flops()
        peak = peak_flops(device, case.step.precision, peak_tflops)
        results.append(BenchResult(
            config=config, samples_per_s=rate, ms_per_step=config.batch_size / rate * 1e3,
            phase_ms={p: statistics.median(ph[p] for ph in phases[i]) for p in PHASES},
            peak_memory_mb=memory.get(i), flops_per_sample=flops,
            mfu=(flops * rate / peak) if (flops and peak) else None, rounds_samples_per_s=rates[i]))
    return results


def environment(device: torch.device) -> dict[str, Any]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "device": str(device), "threads": torch.get_num_threads(),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def write_results(results: list[BenchResult], device: torch.device, out_dir: Path, extra: dict | None = None) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir) / f"bench-{stamp}.json"
    write_json_atomic(path, {"environment": environment(device), "results": [r.to_dict() for r in results],
                             **(extra or {})})
    return path


def results_table(results: list[BenchResult]):
    """A rich table of the results."""
    table = Table(title="pretraining step", title_justify="left")
    for col in ("configuration", "samples/s", "ms/step", *(f"{p} ms" for p in PHASES), "peak MB", "GFLOP/sample", "MFU"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    for r in results:
        if r.error:
            table.add_row(r.config.name, f"[red]{r.error}[/]", *[""] * (len(PHASES) + 4))
            continue
        table.add_row(
            r.config.name, f"{r.samples_per_s:,.1f}", f"{r.ms_per_step:,.1f}",
            *(f"{r.phase_ms[p]:,.1f}" for p in PHASES),
            f"{r.peak_memory_mb:,.0f}" if r.peak_memory_mb is not None else "-",
            f"{r.flops_per_sample / 1e9:,.2f}" if r.flops_per_sample else "-",
            f"{100 * r.mfu:.1f}%" if r.mfu is not None else "-")
    return table


def json_dumps(results: list[BenchResult]) -> str:
    return json.dumps([r.to_dict() for r in results], indent=1)
