"""The paper configuration on one GPU: step throughput, one pretraining epoch at NTU-60 scale, linear evaluation.

Run by ``benchmarks/gpu_check.sh`` (one command, under 10 minutes on one H200); every figure goes to JSON
under ``--out`` (``$OUT`` on the device machine):

1. ``bench.json``: ``usdrl-bench bench``'s measurements at the paper configuration (hidden 1024, T 64,
   4 views, MG-FD) for DSTE and STTR, batch 356, in fp32 (TF32), bf16 and bf16 + ``torch.compile``:
   samples/s, ms per phase, peak memory, FLOPs per sample, MFU.
2. ``epoch.json``: one epoch of pretraining (DSTE, MG-FD, the official schedule, bf16) on an NTU-60 xsub
   sized training set, 40,091 samples of 300 frames (the embedded synthetic skeletons tiled: throughput
   does not depend on the content), through :func:`usdrl_bench.train.pretrain.pretrain` exactly as ``run``
   calls it (device-resident data, keyed views, live logs), with the projected 451-epoch time.
3. ``linear.json``: feature extraction of that checkpoint (train and a 16,487-sample test set) and the
   160-epoch linear probe at batch 512, timed.

``--dry-run`` runs every step on the CPU at toy sizes (tiny encoders, 64 samples, batch 8), to check the
script before spending GPU time; the tests run it.

    python benchmarks/gpu_check.py --out $OUT               # on the GPU machine
    python benchmarks/gpu_check.py --dry-run --out /tmp/x   # anywhere
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

NTU60_XSUB_TRAIN, NTU60_XSUB_TEST = 40_091, 16_487
PAPER_EPOCHS = 451


def write(out: Path, name: str, obj) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(json.dumps(obj, indent=1, default=str))
    print(f"wrote {out / name}", flush=True)


def tiled_ntu(n: int, frames: int, seed: int):
    """``n`` samples ``(3, frames, 25, 2)``: the synthetic set tiled, zero-padded to ``frames``."""
    from usdrl_bench.data.synthetic import generate_synthetic

    base = generate_synthetic(seed=seed)
    tiled = base.subset(np.arange(n) % len(base))  # labels, frame counts and metadata tiled
    data = np.zeros((n, 3, frames, 25, 2), dtype=np.float32)
    src = base.data[:, :, :frames]
    for lo in range(0, n, len(base)):
        hi = min(n, lo + len(base))
        data[lo:hi, :, :src.shape[2]] = src[:hi - lo]
    return dataclasses.replace(tiled, data=data, num_frames=np.minimum(tiled.num_frames, frames),
                               source=f"tiled synthetic ({n} samples, {frames} frames)")


def step_bench(args, device) -> dict:
    from usdrl_bench.bench import BenchConfig, environment, run_bench

    preset, batch = ("tiny", 8) if args.dry_run else ("paper", args.batch_size)
    precisions = [("fp32", False), ("bf16", False), ("bf16", True)]
    if args.dry_run:
        precisions = [("fp32", False), ("bf16", False)]  # compile on a CPU takes minutes
    configs = [BenchConfig(enc, preset, batch, p, c) for enc in ("dste", "sttr") for p, c in precisions]
    t0 = time.perf_counter()
    results = run_bench(configs, device, steps=args.steps, repeats=args.repeats, warmup=2)
    return {"environment": environment(device), "seconds": time.perf_counter() - t0,
            "results": [r.to_dict() for r in results]}


def epoch_run(args, device, workdir: Path) -> tuple[dict, torch.nn.Module, object]:
    from usdrl_bench.encoders import create_encoder
    from usdrl_bench.objectives import create_objective
    from usdrl_bench.protocols.spec import PretrainSpec
    from usdrl_bench.train.pretrain import LOG_FILE, pretrain, resolve_precision

    n, frames, batch = (64, 60, 8) if args.dry_run else (NTU60_XSUB_TRAIN, 300, args.batch_size)
    t0 = time.perf_counter()
    train = tiled_ntu(n, frames, seed=0)
    build_s = time.perf_counter() - t0
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny" if args.dry_run else "paper")
    objective = create_objective("mgfd", encoder)
    spec = PretrainSpec(epochs=args.epochs, batch_size=batch, lr=5e-4, weight_decay=1e-5, milestones=(351,),
                        precision=args.precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    result = pretrain(encoder, objective, train, spec, workdir=workdir, seed=0, device=device, log_every=20)
    seconds = time.perf_counter() - t0
    steps = args.epochs * (n // batch)
    rows = list(__import__("csv").DictReader(open(workdir / LOG_FILE)))
    loss_curve = [float(r["loss"]) for r in rows]
    report = {
        "samples": n, "frames": frames, "batch_size": batch, "epochs": args.epochs, "steps": steps,
        "precision": resolve_precision(spec.precision, device), "dataset_build_s": build_s, "seconds": seconds,
        "seconds_per_epoch": seconds / args.epochs, "samples_per_s": steps * batch / seconds,
        "projected_451_epochs_h": seconds / args.epochs * PAPER_EPOCHS / 3600,
        "peak_memory_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
        "history": result.history, "loss_per_step": loss_curve,
        "note": "first epoch includes moving the set to the device and CUDA/cuDNN warm-up",
    }
    return report, encoder, train


def linear_run(args, device, encoder, train) -> dict:
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
    t0 = time.perf_counter()
    metrics = linear_evaluation(ctx, epochs=3 if args.dry_run else 160, batch_size=512)
    probe_s = time.perf_counter() - t0
    return {"train_samples": len(train), "test_samples": len(test), "feature_extraction_s": extract_s,
            "extraction_samples_per_s": (len(train) + len(test)) / extract_s, "linear_probe_s": probe_s,
            "linear_epochs": 3 if args.dry_run else 160,
            "metrics": [dataclasses.asdict(m) for m in metrics],
            "note": "top-1 of tiled synthetic data after one epoch: a timing run, not a result"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: check the script")
    parser.add_argument("--batch-size", type=int, default=356)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=("bench", "epoch", "linear"))
    args = parser.parse_args()
    device = torch.device("cpu") if args.dry_run else torch.device("cuda")
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run on a CPU", file=sys.stderr)
        return 2
    failures = 0
    if "bench" not in args.skip:
        try:
            write(args.out, "bench.json", step_bench(args, device))
        except Exception:  # noqa: BLE001 - the other parts still run; the error is in the JSON
            failures += 1
            write(args.out, "bench.json", {"error": traceback.format_exc()})
    if "epoch" not in args.skip:
        try:
            workdir = args.out / "work"
            report, encoder, train = epoch_run(args, device, workdir)
            write(args.out, "epoch.json", report)
            if "linear" not in args.skip:
                write(args.out, "linear.json", linear_run(args, device, encoder, train))
        except Exception:  # noqa: BLE001
            failures += 1
            write(args.out, "epoch.json", {"error": traceback.format_exc()})
        finally:
            import shutil

            shutil.rmtree(args.out / "work", ignore_errors=True)  # the checkpoint is large; only numbers come back
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
