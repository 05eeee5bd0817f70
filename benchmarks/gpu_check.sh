#!/usr/bin/env bash
# The paper configuration on one GPU, one command, prepared for 9 minutes on one H200 (benchmarks/gpu_check.py):
#   1. `bench` at the paper configuration (hidden 1024, T 64, batch 356, 4 views): DSTE and STTR in fp32 (TF32),
#      bf16, bf16 + torch.compile: samples/s, ms per phase, peak memory, FLOPs per sample, MFU;
#   2. two pretraining epochs of table5_ablation row 7 (paper DSTE, MG-FD) on an NTU-60 xsub sized set (40,091
#      samples, 300 frames) in fp32 and bf16: loss curves, their difference, projected 451-epoch time;
#   3. feature extraction and the 160-epoch linear probe of that checkpoint, timed;
#   4. the largest batch that trains at the paper configuration, and samples/s there;
#   5. pytest tests/cuda (JUnit XML and counts).
# JSON goes to $OUT (default results/gpu_check). Nothing is installed: the machine's PyTorch is used, and the
# suite is imported from this checkout.
#
#   bash benchmarks/gpu_check.sh              # on a machine with a CUDA GPU
#   bash benchmarks/gpu_check.sh --dry-run    # on a CPU, toy sizes: checks the script in seconds
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-results/gpu_check}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PYTHON="${PYTHON:-python3}"
"$PYTHON" - <<'PY' | tee "$OUT/environment.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")
PY
"$PYTHON" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
