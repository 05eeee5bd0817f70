"""The paper configuration on one GPU: step throughput, the largest batch, two pretraining epochs at NTU-60
scale per precision, linear evaluation, and the CUDA tests.

Run by ``benchmarks/gpu_check.sh`` (one command, prepared to finish within 9 minutes on one H200); every
figure goes to JSON under ``--out`` (``$OUT`` on the device machine), a few small files:

1. ``bench.json``: ``usdrl-bench bench``'s measurements at the paper configuration (hidden 1024, T 64,
   4 views, MG-FD) for DSTE and STTR, batch 356, in fp32 (TF32), bf16 and bf16 + ``torch.compile``:
   samples/s, ms per phase, peak memory, FLOPs per sample, MFU.
2. ``epochs.json``: ``table5_ablation`` row 7 (DSTE, MG-FD with XC) at the paper model and official schedule
   for ``--epochs`` epochs (default 2) in fp32 and in bf16, on an NTU-60 xsub sized training set (40,091
   samples of 300 frames: the embedded synthetic skeletons tiled; throughput does not depend on the
   content), through :func:`usdrl_bench.train.pretrain.pretrain` as ``run`` calls it (device-resident
   data, keyed views, live logs): the loss per step and per epoch for each precision, their relative
   difference, seconds per epoch and the projected 451-epoch time. When the time left would not cover it,
   the set is cut (``samples`` says how many) and the projection scaled to 40,091.
3. ``linear.json``: feature extraction of the bf16 checkpoint (train and a 16,487-sample test set) and the
   160-epoch linear probe at batch 512, timed.
4. ``largest_batch.json``: the largest batch of the paper DSTE that trains in bf16 (doubling from 356
   until out of memory, then bisection to 64 samples), and samples/s there.
5. ``cuda_tests.xml`` / ``cuda_tests.json``: ``pytest tests/cuda`` (JUnit XML and the counts).

Parts run in that order; each part checks the time left of ``--budget-s`` and is skipped (saying so in its
JSON) when too little is left. ``--dry-run`` runs every part on the CPU at toy sizes (tiny encoders, 64
samples, batch 8) to check the script before spending GPU time; the tests run it.

    python benchmarks/gpu_check.py --out $OUT               # on the GPU machine
    python benchmarks/gpu_check.py --dry-run --out /tmp/x   # anywhere
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

NTU60_XSUB_TRAIN, NTU60_XSUB_TEST = 40_091, 16_487
PAPER_EPOCHS = 451
ROOT = Path(__file__).resolve().parents[1]


class Budget:
    def __init__(self, seconds: float) -> None:
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def write(out: Path, name: str, obj) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(obj, indent=1, default=str))
    print(f"wrote {out / name}", flush=True)


def tiled_ntu(n: int, frames: int, seed: int):
    """``n`` samples ``(3, frames, 25, 2)``: the synthetic set tiled, zero-padded to ``frames``."""
    from usdrl_bench.data.synthetic.generator import generate_synthetic

    base = generate_synthetic(seed=seed)
    tiled = base.subset(np.arange(n) % len(base))  # labels, frame counts and metadata tiled
    data = np.zeros((n, 3, frames, 25, 2), dtype=np.float32)
    src = base.data[:, :, :frames]
    for lo in range(0, n, len(base)):
        hi = min(n, lo + len(base))
        data[lo:hi, :, :src.shape[2]] = src[:hi - lo]
    return dataclasses.replace(tiled, data=data, num_frames=np.minimum(tiled.num_frames, frames),
                               source=f"tiled synthetic ({n} samples, {frames} frames)")


def part_bench(args, device) -> dict:
    from usdrl_bench.train.throughput import BenchConfig, environment, run_bench

    preset, batch = ("tiny", 8) if args.dry_run else ("paper", args.batch_size)
    settings = [("fp32", False), ("bf16", False)] + ([] if args.dry_run else [("bf16", True)])  # compile: minutes on a CPU
    configs = [BenchConfig(enc, preset, batch, p, c) for enc in ("dste", "sttr") for p, c in settings]
    t0 = time.perf_counter()
    results = run_bench(configs, device, steps=args.steps, repeats=args.repeats, warmup=2)
    return {"environment": environment(device), "seconds": time.perf_counter() - t0,
            "results": [r.to_dict() for r in results]}


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def part_largest_batch(args, device, budget: Budget) -> dict:
    """Largest batch of the paper DSTE (bf16, MG-FD, 4 views) that completes a training step."""
    from usdrl_bench.train.throughput import BenchConfig, run_bench
    from usdrl_bench.train.throughput import _Case, _synthetic_pool

    preset, start, cap = ("tiny", 8, 32) if args.dry_run else ("paper", args.batch_size, 16384)
    tried: dict[int, bool] = {}

    def fits(batch: int) -> bool:
        if batch in tried:
            return tried[batch]
        case = None
        try:
            pool, nf = _synthetic_pool(batch + 1, seed=batch)
            case = _Case(BenchConfig("dste", preset, batch, "bf16"), device, pool, nf)
            case.full_step()
            case.sync()
            tried[batch] = True
        except Exception as exc:  # noqa: BLE001
            if not _is_oom(exc):
                raise
            tried[batch] = False
        finally:
            del case
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"batch {batch}: {'fits' if tried[batch] else 'out of memory'}", flush=True)
        return tried[batch]

    ok, bad = 0, None
    batch = start
    while batch <= cap and budget.left() > 60:
        if fits(batch):
            ok, batch = batch, batch * 2
        else:
            bad = batch
            break
    step = 8 if args.dry_run else 64
    while bad is not None and bad - ok > step and budget.left() > 60:
        mid = (ok + bad) // 2
        if fits(mid):
            ok = mid
        else:
            bad = mid
    report = {"encoder": "dste", "preset": preset, "precision": "bf16", "largest_batch": ok,
              "first_failing_batch": bad, "tried": tried, "resolution": step, "cap": cap}
    if ok and budget.left() > 60:
        result = run_bench([BenchConfig("dste", preset, ok, "bf16")], device, steps=2, repeats=1, warmup=1)[0]
        report.update(samples_per_s=result.samples_per_s, peak_memory_mb=result.peak_memory_mb, error=result.error)
    return report


def _pretrain_once(args, device, train, precision: str, workdir: Path):
    from usdrl_bench.encoders import create_encoder
    from usdrl_bench.objectives import create_objective
    from usdrl_bench.train.spec import PretrainSpec
    from usdrl_bench.train.pretrain import LOG_FILE, PretrainTarget, TrainingOptions, pretrain, resolve_precision

    batch = 8 if args.dry_run else args.batch_size
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny" if args.dry_run else "paper")  # row 7: DSTE, MG-FD with XC
    objective = create_objective("mgfd", encoder)
    spec = PretrainSpec(epochs=args.epochs, batch_size=batch, lr=5e-4, weight_decay=1e-5, milestones=(351,),
                        precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = pretrain(encoder, objective, train, spec,
                      PretrainTarget(workdir, 0, device), TrainingOptions(log_every=20))
    seconds = time.perf_counter() - t0
    with open(workdir / LOG_FILE, newline="") as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    steps = args.epochs * (len(train) // batch)
    scale = NTU60_XSUB_TRAIN / len(train)
    return encoder, {
        "precision": resolve_precision(precision, device), "batch_size": batch, "steps": steps, "seconds": seconds,
        "seconds_per_epoch": seconds / args.epochs, "samples_per_s": steps * batch / seconds,
        "projected_451_epochs_h": seconds / args.epochs * scale * PAPER_EPOCHS / 3600,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "loss_per_epoch": [h["loss"] for h in result.history], "loss_per_step": losses,
        "note": "the first epoch includes moving the set to the device and CUDA warm-up; the projection uses the "
                "mean over the epochs run",
    }


def part_epochs(args, device, workdir: Path, budget: Budget, bench: dict | None):
    n, frames = (64, 60) if args.dry_run else (NTU60_XSUB_TRAIN, 300)
    batch = 8 if args.dry_run else args.batch_size
    # the time left must cover both precisions (fp32 is the slower): estimate from the bench when it ran
    rate = None
    for r in (bench or {}).get("results", []):
        if r["config"]["encoder"] == "dste" and r["config"]["precision"] == "fp32" and not r["config"]["compile"]:
            rate = r["samples_per_s"] if r.get("error") is None else None
    if rate and not args.dry_run:
        affordable = int(0.7 * budget.left() * rate / (2 * args.epochs * 1.5))  # 1.5: bf16 + warm-up margin
        if affordable < n:
            n = max(batch * 4, affordable // batch * batch)
    t0 = time.perf_counter()
    train = tiled_ntu(n, frames, seed=0)
    report = {"row": "table5_ablation row 7 (DSTE, MG-FD with XC)", "samples": n, "frames": frames,
              "full_size": NTU60_XSUB_TRAIN, "scaled": n != (64 if args.dry_run else NTU60_XSUB_TRAIN),
              "epochs": args.epochs, "dataset_build_s": time.perf_counter() - t0, "runs": []}
    encoder = None
    for precision in ("fp32", "bf16"):
        if budget.left() < 30:
            report["runs"].append({"precision": precision, "skipped": f"{budget.left():.0f} s left"})
            continue
        encoder, run = _pretrain_once(args, device, train, precision, workdir / precision)
        report["runs"].append(run)
        shutil.rmtree(workdir / precision, ignore_errors=True)
    done = [r for r in report["runs"] if "loss_per_step" in r]
    if len(done) == 2:
        a, b = (np.asarray(r["loss_per_step"]) for r in done)
        ea, eb = (np.asarray(r["loss_per_epoch"]) for r in done)
        report["bf16_vs_fp32"] = {
            "max_relative_difference_per_epoch": float(np.max(np.abs(eb - ea) / np.abs(ea))),
            "median_relative_difference_per_step": float(np.median(np.abs(b - a) / np.abs(a))),
            "max_relative_difference_per_step": float(np.max(np.abs(b - a) / np.abs(a))),
        }
    return report, encoder, train


def part_linear(args, device, encoder, train) -> dict:
    from usdrl_bench.evaluate.features import EvalContext
    from usdrl_bench.evaluate.linear import linear_evaluation

    test = tiled_ntu(32 if args.dry_run else NTU60_XSUB_TEST, train.data.shape[2], seed=1)
    ctx = EvalContext(encoder=encoder.eval(), train=train, test=test, device=device, batch_size=512)
    t0 = time.perf_counter()
    ctx.features("train")
    ctx.features("test")
    if device.type == "cuda":
        torch.cuda.synchronize()
    extract_s = time.perf_counter() - t0
    epochs = 3 if args.dry_run else 160
    t0 = time.perf_counter()
    metrics = linear_evaluation(ctx, epochs=epochs, batch_size=512)
    probe_s = time.perf_counter() - t0
    return {"train_samples": len(train), "test_samples": len(test), "feature_extraction_s": extract_s,
            "extraction_samples_per_s": (len(train) + len(test)) / extract_s, "linear_probe_s": probe_s,
            "linear_epochs": epochs, "metrics": [dataclasses.asdict(m) for m in metrics],
            "note": "tiled synthetic data after a couple of epochs: a timing run, not a result"}


def part_tests(args, out: Path, budget: Budget) -> dict:
    """``pytest tests/cuda`` (on a CPU every test skips: the dry run checks the collection)."""
    xml = out / "cuda_tests.xml"
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/cuda",
                             f"--junitxml={xml}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=max(60, int(budget.left())))
    import xml.etree.ElementTree as ET

    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return {"returncode": result.returncode, "seconds": time.perf_counter() - t0, **counts,
            "tail": result.stdout[-3000:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: check the script")
    parser.add_argument("--batch-size", type=int, default=356)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="bench: steps per round")
    parser.add_argument("--repeats", type=int, default=3, help="bench: rounds")
    parser.add_argument("--budget-s", type=float, default=540, help="time for all parts (default 540 s)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("bench", "epochs", "linear", "largest", "tests"))
    args = parser.parse_args()
    device = torch.device("cpu") if args.dry_run else torch.device("cuda")
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run on a CPU", file=sys.stderr)
        return 2
    budget = Budget(args.budget_s)
    failures = 0

    def attempt(name: str, fn, *fargs):
        nonlocal failures
        if name in args.skip:
            return None
        try:
            return fn(*fargs)
        except Exception:  # noqa: BLE001 - the other parts still run; the error is in the JSON
            failures += 1
            write(args.out, f"{name}.json", {"error": traceback.format_exc()})
            return None

    bench = attempt("bench", part_bench, args, device)
    if bench is not None:
        write(args.out, "bench.json", bench)
    epochs = attempt("epochs", part_epochs, args, device, args.out / "work", budget, bench)
    shutil.rmtree(args.out / "work", ignore_errors=True)  # checkpoints are large: only numbers come back
    if epochs is not None:
        report, encoder, train = epochs
        write(args.out, "epochs.json", report)
        if encoder is not None and "linear" not in args.skip and budget.left() > 20:
            linear = attempt("linear", part_linear, args, device, encoder, train)
            if linear is not None:
                write(args.out, "linear.json", linear)
        del encoder, train
    if device.type == "cuda":
        torch.cuda.empty_cache()
    largest = attempt("largest_batch", part_largest_batch, args, device, budget) if "largest" not in args.skip else None
    if largest is not None:
        write(args.out, "largest_batch.json", largest)
    if "tests" not in args.skip:
        tests = attempt("cuda_tests", part_tests, args, args.out, budget)
        if tests is not None:
            write(args.out, "cuda_tests.json", tests)
            failures += int(tests["failures"] + tests["errors"] > 0)
    print(f"done in {args.budget_s - budget.left():.0f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
