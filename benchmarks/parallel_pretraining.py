"""Benchmark of `usdrl-bench run --jobs`: wall time to pretrain the same models with 1 and N jobs, side by side.

The demo's small DSTE (hidden 32, T 32) is pretrained with MG-FD on the embedded dataset for a few epochs,
once per seed, in fresh result folders, first with ``--jobs 1`` (one process, all threads) and then with
each other job count (that many processes, threads shared out), in the same run on the same machine.

    python benchmarks/parallel_pretraining.py                    # 4 models, 2 epochs, jobs 1 and 2
    python benchmarks/parallel_pretraining.py --models 8 --jobs 1 2 4
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

def protocol_text(root: Path, epochs: int) -> str:
    """One row (DSTE, MG-FD with XC) under the demo preset shared by the paper protocols, with ``epochs``."""
    import yaml

    demo = yaml.safe_load((root / "protocols" / "include" / "presets.yaml").read_text())["presets"]["demo"]
    demo["pretrain"] = {**demo["pretrain"], "epochs": epochs, "milestones": []}
    demo["evaluations"] = {"knn": {"k": 1}}
    demo["dataset"] = {"name": "synthetic", "split": "xsub", "options": {"seed": 0}}
    return yaml.safe_dump({
        "name": "parallel_pretraining_benchmark", "version": 1, "paper_table": "table5_ablation",
        "rows": [{"id": "7", "label": "DSTE, MG-FD with XC", "encoder": "dste", "objective": "mgfd"}],
        "presets": {"demo": demo},
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=4, help="models to pretrain (seeds 0..N-1; default 4)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per model (default 2)")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="job counts (default 1 2; 1 is the baseline)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    scratch = Path(tempfile.mkdtemp(prefix="usdrl-jobs-bench-"))
    try:
        protocol = scratch / "protocol.yaml"
        protocol.write_text(protocol_text(root, args.epochs))
        seeds = ",".join(str(s) for s in range(args.models))
        rows = []
        for jobs in args.jobs:
            out = scratch / f"jobs{jobs}"
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "usdrl_bench.cli", "run", str(protocol), "--seeds", seeds,
                            "--device", "cpu", "--jobs", str(jobs), "--results", str(out / "results"),
                            "--reports", str(out / "reports")], check=True, capture_output=True, cwd=root)
            rows.append((jobs, time.perf_counter() - t0))
        base = rows[0][1]
        print(f"| jobs | wall time (s) | speed-up vs jobs {rows[0][0]} |")
        print("|---:|---:|---:|")
        for jobs, seconds in rows:
            print(f"| {jobs} | {seconds:.1f} | {base / seconds:.2f} |")
        print(f"\n{args.models} demo DSTE models x {args.epochs} epochs (MG-FD, 855 samples), {len(os.sched_getaffinity(0))} "
              "cores; each run includes start-up, data generation and a kNN evaluation per model")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
