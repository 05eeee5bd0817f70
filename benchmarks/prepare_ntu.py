"""Benchmark of `usdrl-bench data prepare ntu60`: files per second with 1 and N reader processes, side by side,
and peak resident memory against the size of what was written.

A raw NTU tree with official names is generated from the embedded synthetic dataset (or pass --raw to use
a real one). Each preparation runs in its own Python process, which reports its peak resident set
(``ru_maxrss``) and that of its reader processes (the largest one).

    python benchmarks/prepare_ntu.py                       # 2000 synthetic files, 1 and all cores
    python benchmarks/prepare_ntu.py --files 4000 --workers 1 4 8
    python benchmarks/prepare_ntu.py --raw ~/nturgb+d_skeletons --workers 1 16
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Peak memory is the kernel's high-water mark of the resident set (VmHWM), read in each process itself:
# ru_maxrss would carry over the memory of the process that started it (Linux keeps it across exec).
CHILD = r"""
import json, os, sys, tempfile, time

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import usdrl_bench.data.preparation.prepare as prepare
from usdrl_bench.data.preparation.ntu_prepare import prepare_ntu

peaks = tempfile.mkdtemp()
run_job = prepare._run_job

def measured_job(reader, job, options):  # in the workers: leave their own high-water mark in a file
    result = run_job(reader, job, options)
    with open(os.path.join(peaks, str(os.getpid())), "w") as fh:
        fh.write(str(hwm_mb()))
    return result

prepare._run_job = measured_job  # the forked workers inherit the patched module
raw, out, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
s = prepare_ntu("ntu60", raw, out, workers=workers, progress=False)
seconds = time.perf_counter() - t0
worker_peaks = [float(open(os.path.join(peaks, f)).read()) for f in os.listdir(peaks) if f != str(os.getpid())]
print(json.dumps({"files": s.files, "seconds": seconds, "skipped": len(s.skipped), "peak_rss_mb": hwm_mb(),
                  "worker_peak_rss_mb": max(worker_peaks, default=0.0)}))
"""
TREE = r"""
import sys
sys.path.insert(0, sys.argv[3])
from prepare_ntu import synthetic_tree
from pathlib import Path
synthetic_tree(Path(sys.argv[1]), int(sys.argv[2]))
"""


def synthetic_tree(root: Path, files: int) -> None:
    from usdrl_bench.data.synthetic.raw import ntu_names, write_ntu_skeleton_tree

    # NTU-60 ids: 40 subjects, 3 cameras, 2 repetitions, setups and actions as many as needed
    names = []
    setups = 1
    while len(names) < files:
        names = ntu_names(range(1, setups + 1), [1, 2, 3], range(1, 41), [1, 2], range(1, 61))
        setups += 1
    step = len(names) / files
    names = [names[int(i * step)] for i in range(files)]
    write_ntu_skeleton_tree(root, names, min_frames=60, max_frames=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="synthetic files to generate (default 2000)")
    parser.add_argument("--raw", type=Path, default=None, help="a real raw NTU tree instead")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default: 1 and all cores)")
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or sorted({1, cores})
    scratch = Path(tempfile.mkdtemp(prefix="usdrl-prepare-bench-", dir=args.tmp))
    try:
        raw = args.raw
        if raw is None:
            raw = scratch / "raw"
            t0 = time.perf_counter()
            # in its own process, so that generating the data does not count in what is measured
            subprocess.run([sys.executable, "-c", TREE, str(raw), str(args.files), str(Path(__file__).parent)], check=True)
            print(f"generated {args.files} synthetic .skeleton files in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        rows = []
        for n in workers:
            out = scratch / f"out{n}"
            proc = subprocess.run([sys.executable, "-c", CHILD, str(raw), str(out), str(n)], capture_output=True, text=True,
                                  check=True)
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            size = sum(f.stat().st_size for f in out.rglob("*.npy")) / 2**20
            rows.append({"workers": n, **r, "output_mb": size})
            shutil.rmtree(out)
        base = rows[0]["files"] / rows[0]["seconds"]
        print(f"| workers | files | seconds | files/s | speed-up vs {workers[0]} | peak RSS main (MB) | peak RSS worker (MB) | output .npy (MB) |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            fps = r["files"] / r["seconds"]
            print(f"| {r['workers']} | {r['files']} | {r['seconds']:.1f} | {fps:.1f} | {fps / base:.2f} | "
                  f"{r['peak_rss_mb']:.0f} | {r['worker_peak_rss_mb']:.0f} | {r['output_mb']:.0f} |")
        print(f"\n{cores} cores; {'synthetic tree' if args.raw is None else raw}; outputs: NTU-60 xsub + xview, "
              "(N, 3, 300, 25, 2) float32")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
