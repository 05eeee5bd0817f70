"""The ``usdrl-bench`` command line: run, plan, report, list, validate, embed, export, data, score-*, bench.

Each command imports what it uses when it runs (deferred imports inside the ``cmd_*`` functions): the
suite's modules pull in torch, pandas and matplotlib, which would otherwise cost ``usdrl-bench --help``,
``validate`` and ``score-*`` seconds at every start. The command line is the only module that defers the
suite's own imports (``tests/test_architecture.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

console = Console(stderr=True, soft_wrap=True)  # long lines stay whole in logs
out = Console(soft_wrap=True)

RUN_HELP = """\
Run one or more protocols: pretrain every row once (checkpoints cached by content hash), evaluate each with every
evaluation of the preset, write records under results/, then print the protocol's table.
Interrupted runs resume; a finished protocol trains nothing when run again.

datasets for --dataset (NAME or FORMAT:PATH; see `usdrl-bench list`):
  synthetic                             the embedded synthetic dataset (no files needed)
  ntu60_xsub ntu60_xview ntu120_xsub ntu120_xset pku1_xsub pku2_xsub msr_action3d
                                        prepared data under the data root (--data-root, $USDRL_DATA
                                        or ./data; `usdrl-bench data prepare` writes it there)
  agcn:PATH                             AGCN-style directory ({train,val}_data_joint.npy, ...)
  ntu_raw:PATH                          NTU RGB+D raw .skeleton directory (xsub / xview / xset)
  ctrgcn_npz:PATH                       CTR-GCN NTU60_CS.npz-style file or folder
  pyskl:PATH                            pyskl/mmaction2 annotation pickle (3-D keypoints)
  pku_pickle:PATH                       the USDRL code's PKUv2_xsub_{train,val}.pkl folder
  msr_action3d:PATH                     MSR Action3D skeleton files (cross-subject split)

scale (each missing checkpoint trains once; a file lock makes concurrent runs and jobs share it):
  --nproc N                             data-parallel pretraining on N processes (starts torchrun for you;
                                        or: torchrun --nproc-per-node N -m usdrl_bench run ...)
  --jobs N                              N models at once: CPU worker processes, or one model per GPU on CUDA
  --launcher local|slurm                each pretraining as a submitit job (local processes or SLURM),
                                        then the evaluations here; --gpus-per-job, --partition, --time-min
  live logs: results/checkpoints/<hash>/train_log.csv and tensorboard/ while training; --wandb PROJECT

examples:
  usdrl-bench run table5_ablation                       # a shipped protocol by name, from any directory
  usdrl-bench run protocols/table5_ablation.yaml
  usdrl-bench run protocols/table5_ablation.yaml --seeds 0 1 2
  usdrl-bench run protocols/*.yaml --preset paper --rehearse    # every paper preset at its real shapes, work cut
  usdrl-bench run protocols/table1_linear.yaml --preset paper --data-root /data --nproc 8
  torchrun --nproc-per-node 8 -m usdrl_bench run protocols/table1_linear.yaml --preset paper --data-root /data
  usdrl-bench run protocols/table1_linear.yaml --preset paper --launcher slurm --gpus-per-job 4 --partition gpu
  usdrl-bench run protocols/*.yaml                      # every table and figure, demo preset
  usdrl-bench run protocols/table5_ablation.yaml --dataset msr_action3d:~/data/MSRAction3D
  usdrl-bench run protocols/table5_ablation.yaml --dataset ntu_raw:~/data/nturgb+d_skeletons --split xsub
  usdrl-bench run protocols/table5_ablation.yaml --preset paper --dataset ntu60_xsub --data-root /data --device cuda
"""

PLAN_HELP = """\
What a run would do and cost, before it starts: the checkpoints it needs (keys; cached or to train) and, per
model, FLOPs per sample, peak memory at the preset's batch and whether it fits the GPU, and GPU-hours at a
stated MFU. FLOPs and memory come from a rehearsal (`usdrl-bench run PROTOCOL --preset paper --rehearse`, which
measures each model configuration at two batch sizes); memory is scaled to the preset's batch along their line.
Datasets not under the data root are priced with their release's sizes. Nothing trains.

examples:
  usdrl-bench run table1_linear --preset paper --rehearse      # once: measure (minutes on a CPU)
  usdrl-bench plan table1_linear --preset paper --gpu h100
  usdrl-bench plan protocols/*.yaml --preset paper --measured benchmarks/results/rehearsal_cpu   # this checkout's
  usdrl-bench plan table1_linear table5_ablation --preset paper --gpu h200 --mfu 0.4 --csv plan.csv
"""

REPORT_HELP = """\
Regenerate every table and figure from the records under results/: Markdown, CSV and PNG under reports/,
beside the paper's numbers with the differences, each saying which dataset and preset it comes from.

example:
  usdrl-bench report
  usdrl-bench report --results results --out reports
"""

LIST_HELP = """\
List every registered encoder, objective, dataset and evaluation (built-ins and plugins).

example:
  usdrl-bench list
  usdrl-bench list --protocols
  usdrl-bench list --plugin baselines.mlp_encoder
"""

VALIDATE_HELP = """\
Check protocol files without running anything, exactly as `run` checks them before it loads any data: keys,
types, declared ranges (epochs >= 1, 0 <= p <= 1, ...), registry names, options, the --set overrides and
CLI selections, each cell's merged schedule, evaluation options and encoder configuration, and that the
data of the selected preset is there. Errors name the file and the key. The JSON Schema of a protocol file
(for an editor's completion and checking as you type): `usdrl-bench schema`, or docs/protocol.schema.json.

example:
  usdrl-bench validate protocols/*.yaml
  usdrl-bench validate protocols/table5_ablation.yaml --preset paper
  usdrl-bench validate table5_ablation --set presets.demo.pretrain.epochs=-1     # exit 1, names the key
"""

EXPORT_HELP = """\
Write a suite checkpoint in a method's official format, so that the method's official code evaluates it:
torchlight's state dict for SkeletonCLR and AimCLR (encoder_q, encoder_k, queue), MAMP's save_model dict,
CMD's pretraining checkpoint (all three modalities), USDRL's module.backbone state dict. The objective's state
(objective.pt beside encoder.pt: projectors, key encoders, queues, decoder) is written where the official file
holds it; CMD needs it. `usdrl-bench embed --method` and `usdrl_bench.load_encoder(..., method=...)` read
such files back.

example:
  usdrl-bench export results/checkpoints/<hash> --method mamp --out mamp_for_main_linprobe.pth
"""

EMBED_HELP = """\
Encode skeletons with a pretrained encoder (an official USDRL checkpoint or one of the suite's) in eval
mode. X is (N, C, T, V, M) float32; each sample's valid frames are resized to the encoder's T as the official
downstream code does. The valid frame counts come from --num-frames FILE ((N,) integers, .npy), else from
the official `<prefix>_num_frame.npy` beside an AGCN `<prefix>_data_joint.npy` (whose sequences are padded to
300 frames by repeating them, so the last non-zero frame is not the last valid one), else up to each
sample's last non-zero frame (zero-padded data). The command says which it used.
Writes (N, 2H) instance features [max over temporal tokens, max over spatial tokens] to a .npy, or with
--dense an .npz with temporal (N, T, H) and spatial (N, M*V, H).

example:
  usdrl-bench embed --checkpoint checkpoint_0450.pth.tar --data X.npy --out features.npy
  usdrl-bench embed --checkpoint results/checkpoints/<hash>/encoder.pt --data X.npy --out dense.npz --dense
  usdrl-bench embed --checkpoint ckpt.pth.tar --data xsub/val_data_joint.npy --out f.npy   # val_num_frame.npy used
"""


DATA_PREPARE_HELP = """\
Turn a dataset's official release into the AGCN-layout arrays the protocols read (memory-mapped .npy, a
label pickle and frame counts per split part), with manifest.json (counts, class histograms, checksums,
pipeline, version, skipped files) and samples.csv. Uses every core; an interrupted run resumes where it
stopped when started again with the same arguments. A damaged file is skipped and named with its line;
the exit status is non-zero for skipped files only with --strict.

datasets:
  ntu60, ntu120   raw NTU RGB+D .skeleton tree (searched recursively); splits xsub/xview, xsub/xsetup;
                  pipelines agcn (2s-AGCN/UmURL, what USDRL used; default) or ctrgcn (CTR-GCN/SGN)
  pku1, pku2      PKU-MMD phase 1 / 2: skeleton/, label/ and split/ folders; trimmed action clips per
                  split, and the untrimmed videos with per-frame labels (detection, segmentation)
  uav             UAV-Human skeleton files (17 joints, 155 classes); cross-subject splits csv1, csv2
                  computed from the person ids in the file names

The output folder defaults to the dataset's folder under the data root (--data-root, else $USDRL_DATA,
else ./data), where named datasets (ntu60_xsub, pku2_xsub, ...) are looked up.

examples:
  usdrl-bench data prepare ntu60 --raw ~/nturgb+d_skeletons
  usdrl-bench data prepare ntu120 --raw ~/ntu120_raw --out /data/NTU-RGB-D-120-AGCN --workers 16
  usdrl-bench data prepare ntu60 --raw ~/nturgb+d_skeletons --pipeline ctrgcn --out data/NTU60-CTRGCN
  usdrl-bench data prepare pku1 --raw ~/PKU-MMD
  usdrl-bench data prepare uav --raw ~/UAV-Human/Skeleton
"""


SCORE_HELP = """\
Score action proposals with the official PKU-MMD metrics (evaluate.py of 2017-05-31): mAP over actions (the
mean over classes 1..51, absent classes counting 0) and over videos at overlap theta, the pooled AP, F1 and
2D-AP (AP averaged over theta = 0.05 ... 1), plus the VOC-style mAP some papers report (labelled as such).
Each folder holds one file per video, <video>.txt, lines `label,start,end,confidence`; every proposal file
needs a ground-truth file of the same name (PKU-MMD's label files are ground-truth files).

example:
  usdrl-bench score-detection --gt PKU-MMD/label --pred results/records/.../proposals
  usdrl-bench score-detection --gt gt/ --pred pred/ --theta 0.3
"""


SCORE_SEGMENTATION_HELP = """\
Score frame-wise action segmentation with the metrics of DeST (libs/metric.py): frame accuracy (Acc,
background frames included, pooled over videos), the segmental Edit score (Levenshtein distance between
segment-label sequences, background segments left out, averaged over videos) and F1@{10,25,50} (segments
matched by IoU, counts summed over videos). Each folder holds <video>.txt, one integer label per frame, a
line each, 0 = background; every ground-truth video needs a prediction file of the same length.

example:
  usdrl-bench score-segmentation --gt gt/ --pred pred/
  usdrl-bench score-segmentation --gt results/records/.../segmentation/truth --pred results/records/.../segmentation/pred
"""


BENCH_HELP = """\
Time pretraining steps (the same step the training loop runs) for several configurations side by side in one
process, rounds interleaved, medians reported: samples/s, milliseconds per step split into input, views,
forward, backward and optimiser, peak device memory, FLOPs per sample and, on CUDA, model FLOPs utilisation
against the device's peak. Configurations are every combination of --encoder, --batch-size, --precision and
--compile. Inputs are random NTU-shaped skeletons (3 x 300 x 25 x 2); 4 views per sample. Writes
results/bench/bench-<time>.json.

With no arguments on a CPU: DSTE and STTR at the demo size (hidden 64, T 32), batch 32, fp32 (13 s on a 2-core CPU).

examples:
  usdrl-bench bench
  usdrl-bench bench --encoder dste --preset paper --batch-size 8 --steps 3
  usdrl-bench bench --device cuda --preset paper --batch-size 356 --precision fp32 bf16 --compile off on
"""


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="usdrl-bench",
        description="Benchmarking suite for self-supervised skeleton action representation learning (USDRL).",
        epilog="example:\n  usdrl-bench run protocols/table5_ablation.yaml && usdrl-bench report",
        formatter_class=fmt,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub, fmt)
    _add_bench(sub, fmt)
    _add_report(sub, fmt)
    _add_list(sub, fmt)
    _add_validate(sub, fmt)
    _add_data(sub, fmt)
    _add_score_detection(sub, fmt)
    _add_score_segmentation(sub, fmt)
    _add_embed(sub, fmt)
    _add_export(sub, fmt)
    return parser


def _add_run(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench run`` and its options."""
    p = sub.add_parser("run", help="run a protocol (pretrain once, evaluate many, record)", description=RUN_HELP, formatter_class=fmt)
    p.add_argument("protocol", nargs="+",
                   help="protocol YAML file(s) or shipped protocol name(s) (`usdrl-bench list --protocols`), run in "
                        "turn (shared work is done once)")
    p.add_argument("--preset", default="demo", help="preset of the protocol (demo | paper; default demo)")
    p.add_argument("--dataset", help="override the preset's dataset: NAME or NAME:PATH")
    p.add_argument("--split", help="named split of the dataset (xsub, xview, xset)")
    p.add_argument("--seeds", nargs="+", help="seeds overriding the preset's: 0 1 2 or 0,1,2")
    p.add_argument("--rows", help="comma-separated row ids to run (default: all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override any protocol key, e.g. presets.demo.pretrain.epochs=3 or rows.0.label=mine "
                        "(repeatable; VALUE is YAML; validated like the file; kept in the records)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--jobs", default="auto",
                   help="models pretrained at once on a CPU, each with cores/jobs threads (default auto: 2 on a "
                        "CPU with 2 or more cores, 1 on a GPU)")
    p.add_argument("--data-root", type=Path, default=None,
                   help="where named datasets (ntu60_xsub, pku2_xsub, ...) are found (default $USDRL_DATA, else ./data)")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="reports directory (default reports/)")
    p.add_argument("--nproc", type=_count, default=None,
                   help="train each missing checkpoint data-parallel on N processes (runs torchrun; NCCL on CUDA, "
                        "one GPU per process; gloo on CPU)")
    p.add_argument("--launcher", choices=("inline", "local", "slurm"), default="inline",
                   help="inline (default): pretrain in this process; local / slurm: one submitit job per missing "
                        "checkpoint, then evaluate here")
    p.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per job (DDP inside the job); default 0 (CPU)")
    p.add_argument("--partition", default=None, help="SLURM partition (--launcher slurm)")
    p.add_argument("--time-min", type=int, default=24 * 60, help="job time limit in minutes (default 1440)")
    p.add_argument("--max-parallel", type=int, default=8, help="jobs running at once (default 8)")
    p.add_argument("--save-every", type=float, default=5.0, metavar="MIN",
                   help="minutes between saves of a pretraining's resumable state inside an epoch: an interruption "
                        "(Ctrl-C, a crash, a killed job) loses at most that (default 5; 0: at epoch ends only)")
    p.add_argument("--log-every", type=int, default=20,
                   help="steps between reads of the losses from the device (each read is one host synchronisation; "
                        "every step still gets its CSV row) (default 20)")
    p.add_argument("--rehearse", action="store_true",
                   help="run the preset at its real shapes (models, views, joints, persons, heads) on synthetic data "
                        "shaped as each release, every schedule cut to a few steps, the first seed; results under "
                        "RESULTS/rehearsal, reports under REPORTS/rehearsal (on a CPU batches are capped at 4)")
    p.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard event files")
    p.add_argument("--wandb", metavar="PROJECT", default=None, help="also log pretraining to this W&B project")


def _add_bench(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench bench`` and its options."""
    p = sub.add_parser("plan", help="what a run would train and cost (models, keys, memory, GPU-hours)",
                       description=PLAN_HELP, formatter_class=fmt)
    p.add_argument("protocol", nargs="+", help="protocol YAML files or shipped protocol names")
    p.add_argument("--preset", default="paper", help="preset (default paper)")
    p.add_argument("--gpu", default="h100", choices=("h100", "h200"), help="the GPU to forecast for (default h100)")
    p.add_argument("--mfu", type=float, default=None,
                   help="model FLOPs utilisation for the GPU-hours (default: bench's on that GPU, else assumed 0.25)")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="where the run will train: its keys depend on the precision it resolves (default cuda)")
    p.add_argument("--rows", help="comma-separated row ids (default: all)")
    p.add_argument("--seeds", nargs="+", help="seeds overriding the preset's")
    p.add_argument("--dataset", help="override the preset's dataset: NAME or NAME:PATH")
    p.add_argument("--split", help="named split of the dataset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a protocol value, as for run")
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    p.add_argument("--data-root", type=Path, default=None, help="where named datasets are found")
    p.add_argument("--measured", type=Path, action="append", default=[], metavar="DIR",
                   help="also read measured step costs from DIR (a rehearsal's results folder or its forecast/; "
                        "this checkout's CPU rehearsal: benchmarks/results/rehearsal_cpu)")
    p.add_argument("--csv", type=Path, default=None, help="also write the per-model forecast here")

    p = sub.add_parser("bench", help="time pretraining steps of several configurations side by side",
                       description=BENCH_HELP, formatter_class=fmt)
    p.add_argument("--encoder", nargs="+", default=None, help="encoders to time (default: dste sttr)")
    p.add_argument("--preset", default=None, help="encoder preset (default small on a CPU, paper on CUDA)")
    p.add_argument("--hidden-size", type=int, default=None, help="override the preset's hidden size H")
    p.add_argument("--frames", type=int, default=None, help="override the preset's view length T")
    p.add_argument("--batch-size", type=int, nargs="+", default=None,
                   help="global batch sizes (default 32 on a CPU, 356 on CUDA)")
    p.add_argument("--precision", nargs="+", default=None, choices=("fp32", "bf16", "fp16", "auto"),
                   help="precisions (default fp32 on a CPU; fp32 bf16 on CUDA)")
    p.add_argument("--compile", nargs="+", default=None, choices=("off", "on"),
                   help="torch.compile settings (default off on a CPU; off on on CUDA)")
    p.add_argument("--objective", default="mgfd", help="objective (default mgfd)")
    p.add_argument("--drop-path", type=float, default=None, help="DSTE DropPath (default: the preset's)")
    p.add_argument("--steps", type=int, default=5, help="steps per round (default 5)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration (default 2)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (default: known GPUs)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--out", type=Path, default=Path("results/bench"), help="JSON output folder (default results/bench)")


def _add_report(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench report`` and its options."""
    p = sub.add_parser("report", help="regenerate tables and figures from the records", description=REPORT_HELP, formatter_class=fmt)
    p.add_argument("--results", type=Path, default=Path("results"), help="results directory (default results/)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output directory (default reports/)")
    p.add_argument("--official", type=Path, default=None, metavar="DIR",
                   help="also write the reproduction table (reproduction.md, .csv): the official code's NW-UCLA runs "
                        "in DIR (benchmarks/official_nwucla.py) beside the official_comparison records")


def _add_list(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench list`` and its options."""
    p = sub.add_parser("list", help="list registered encoders, objectives, datasets, evaluations", description=LIST_HELP, formatter_class=fmt)
    p.add_argument("--plugin", action="append", default=[], help="also import this module (repeatable)")
    p.add_argument("--protocols", action="store_true", help="list the shipped protocols (run them by name)")


def _add_validate(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench validate`` and its options."""
    p = sub.add_parser("validate", help="check protocol files without running them", description=VALIDATE_HELP, formatter_class=fmt)
    p.add_argument("protocols", nargs="+", help="protocol YAML files or shipped protocol names")
    p.add_argument("--preset", default=None, help="also check this preset's cells and data (default: demo when present)")
    p.add_argument("--data-root", type=Path, default=None, help="where named datasets are found (default $USDRL_DATA, else ./data)")
    p.add_argument("--dataset", help="as run: override the preset's dataset, NAME or NAME:PATH")
    p.add_argument("--split", help="as run: named split of the dataset")
    p.add_argument("--seeds", nargs="+", help="as run: seeds overriding the preset's")
    p.add_argument("--rows", help="as run: comma-separated row ids")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="as run: override a key of the file (repeatable), checked like the file's own")
    q = sub.add_parser("schema", help="print the JSON Schema of a protocol file",
                       description="Print the JSON Schema (draft 2020-12) of a protocol file: keys, types, declared "
                                   "ranges. Point an editor's YAML support at it (docs/protocols.md).",
                       formatter_class=fmt)
    q.add_argument("--output", "-o", type=Path, default=None, help="write it to this file instead")


def _add_data(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench data`` and its options."""
    p = sub.add_parser("data", help="prepare released datasets", description="Prepare released datasets (see `data prepare -h`).",
                       formatter_class=fmt)
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = data_sub.add_parser("prepare", help="prepare a dataset from its official release", description=DATA_PREPARE_HELP,
                            formatter_class=fmt)
    q.add_argument("dataset", choices=("ntu60", "ntu120", "pku1", "pku2", "uav"), help="the release to prepare")
    q.add_argument("--raw", type=Path, required=True, help="the unpacked release")
    q.add_argument("--out", type=Path, default=None, help="output folder (default: the dataset's folder under the data root)")
    q.add_argument("--data-root", type=Path, default=None, help="data root (default $USDRL_DATA, else ./data)")
    q.add_argument("--pipeline", choices=("agcn", "ctrgcn"), default="agcn", help="NTU preprocessing (default agcn)")
    q.add_argument("--workers", type=int, default=None, help="reader processes (default: all cores)")
    q.add_argument("--missing-list", type=Path, action="append", default=None,
                   help="NTU missing-skeleton list (repeatable; default: the official lists found in or beside --raw)")
    q.add_argument("--strict", action="store_true", help="exit with status 3 when any file was skipped")


def _add_score_detection(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench score-detection`` and its options."""
    p = sub.add_parser("score-detection", help="score proposal files with the official PKU-MMD metrics",
                       description=SCORE_HELP, formatter_class=fmt)
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth files <video>.txt")
    p.add_argument("--pred", type=Path, required=True, help="folder of proposal files <video>.txt")
    p.add_argument("--theta", type=float, default=0.5, help="overlap threshold (default 0.5)")
    p.add_argument("--num-actions", type=int, default=51, help="classes 1..N in mAP over actions (PKU-MMD I: 51)")


def _add_score_segmentation(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench score-segmentation`` and its options."""
    p = sub.add_parser("score-segmentation", help="score frame-label files with DeST's Acc, Edit and F1@k",
                       description=SCORE_SEGMENTATION_HELP, formatter_class=fmt)
    p.add_argument("--gt", type=Path, required=True, help="folder of ground-truth files <video>.txt")
    p.add_argument("--pred", type=Path, required=True, help="folder of prediction files <video>.txt")
    p.add_argument("--background", type=int, default=0, help="the background label (default 0)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.25, 0.5],
                   help="IoU thresholds of the F1 scores (default 0.1 0.25 0.5)")


def _add_embed(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench embed`` and its options."""
    p = sub.add_parser("embed", help="encode skeletons with a pretrained encoder", description=EMBED_HELP, formatter_class=fmt)
    p.add_argument("--checkpoint", type=Path, required=True, help="official (.pth.tar) or suite (.pt) checkpoint")
    p.add_argument("--data", type=Path, required=True, help="(N, C, T, V, M) float32 .npy")
    p.add_argument("--out", type=Path, required=True, help="output .npy (features) or .npz (--dense)")
    p.add_argument("--dense", action="store_true", help="write the temporal and spatial token features")
    p.add_argument("--frames", type=int, default=None, help="encoder T for official STTR checkpoints (not inferable; default 64)")
    p.add_argument("--method", default=None,
                   help="read --checkpoint in this method's official format (skeletonclr, aimclr, mamp, cmd, usdrl)")
    p.add_argument("--num-frames", type=Path, default=None,
                   help="(N,) valid frame counts (.npy); default: <prefix>_num_frame.npy beside <prefix>_data_joint.npy")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto")


def _add_export(sub: argparse._SubParsersAction, fmt: type[argparse.HelpFormatter]) -> None:
    """``usdrl-bench export`` and its options."""
    p = sub.add_parser("export", help="write a suite checkpoint in a method's official format", description=EXPORT_HELP,
                       formatter_class=fmt)
    p.add_argument("checkpoint", type=Path, help="a suite checkpoint folder (results/checkpoints/<hash>) or its encoder.pt")
    p.add_argument("--method", required=True, help="the method whose official format to write")
    p.add_argument("--out", type=Path, required=True, help="the file to write")


def _process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 elsewhere): the interpreter's start-up and
    imports count in a run's total time."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def main(argv: list[str] | None = None) -> int:
    from_shell = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter() - (_process_age() if from_shell else 0.0)
    args = _parser().parse_args(argv)
    args.argv = argv
    args.started = started
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        commands = {"run": cmd_run, "report": cmd_report, "list": cmd_list, "validate": cmd_validate, "embed": cmd_embed,
                    "data": cmd_data, "score-detection": cmd_score_detection, "score-segmentation": cmd_score_segmentation,
                    "bench": cmd_bench, "export": cmd_export, "plan": cmd_plan,
                    "schema": cmd_schema}
        return commands[args.command](args)
    except (FileNotFoundError, KeyError, ValueError, ImportError) as exc:  # a ProtocolError is a ValueError
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished checkpoints and records are kept, and a pretraining in progress "
                      "saved its state; run the same command to resume", highlight=False)
        return 130
    except (OSError, RuntimeError, FloatingPointError) as exc:  # disk full, a broken file, a diverged run...
        if args.verbose:
            raise
        where = f" ({exc.filename})" if isinstance(exc, OSError) and getattr(exc, "filename", None) else ""
        console.print(f"[bold red]error:[/] {type(exc).__name__}{where}: {exc}\n"
                      "finished checkpoints and records are kept; run with -v for the traceback", highlight=False)
        return 1


def _count(text: str) -> int:
    """An argparse type: a whole number >= 1 (``--nproc``: processes this command starts itself)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _ints(values: list[str] | None) -> tuple[int, ...] | None:
    """``["0", "1,2"]`` -> ``(0, 1, 2)``; ``None`` when not given."""
    if not values:
        return None
    parts = [p for v in values for p in v.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--seeds must be integers (0 1 2 or 0,1,2), got {' '.join(values)!r}") from None


def _jobs(value: str, device) -> int:
    """``--jobs``: an integer >= 1, or ``auto`` (2 on a CPU with 2 or more cores, else 1)."""
    if value == "auto":
        return 2 if device.type == "cpu" and len(os.sched_getaffinity(0)) >= 2 else 1
    try:
        return int(value)  # the range is the API's (run_protocols: jobs >= 1)
    except ValueError:
        raise ValueError(f"--jobs must be an integer >= 1 or 'auto', got {value!r}") from None


def _without_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            out.append(item)
    return out


def _launch_torchrun(args: argparse.Namespace) -> int:
    """Re-run this command under ``torchrun --standalone --nproc-per-node N``."""
    import subprocess

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "usdrl_bench", *_without_option(args.argv, "--nproc")]
    console.print(f"starting {args.nproc} processes: {' '.join(command[1:])}", highlight=False)
    return subprocess.call(command)


def cmd_run(args: argparse.Namespace) -> int:
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args)
    from usdrl_bench.api import (LauncherOptions, RunTiming, markdown_tables, rehearsal_results, resolve_device,
                                 run_protocols, write_report)

    launcher = None
    if args.launcher != "inline":
        launcher = LauncherOptions(launcher=args.launcher, gpus_per_job=args.gpus_per_job, partition=args.partition,
                                   time_min=args.time_min, max_parallel=args.max_parallel)
    device = resolve_device(args.device)
    timing = RunTiming()
    done = run_protocols(args.protocol, preset=args.preset, rows=args.rows.split(",") if args.rows else None,
                         dataset=args.dataset, split=args.split, seeds=_ints(args.seeds), results=args.results,
                         device=device, launcher=launcher,
                         # a rehearsal trains each model for a step: in this process, so that its weights are
                         # deleted protocol by protocol rather than all held at once (--jobs N still applies)
                         jobs=1 if launcher is not None or (args.rehearse and args.jobs == "auto") else _jobs(args.jobs, device),
                         log_every=args.log_every, tensorboard=not args.no_tensorboard, wandb_project=args.wandb,
                         console=console, overrides=args.overrides, data_root=args.data_root, rehearse=args.rehearse,
                         save_every_s=args.save_every * 60 if args.save_every != 0 else None, timing=timing)
    if not done:  # a torchrun rank other than 0: rank 0 evaluates and reports
        return 0
    for _, records in done:
        for table in markdown_tables(records):
            out.print(table, highlight=False, soft_wrap=True)
    results, reports = args.results, args.reports
    if args.rehearse:
        results, reports = rehearsal_results(args.results), args.reports / "rehearsal"
    written = write_report(results, reports).written
    console.print(f"reports written under {reports}/ ({len(written)} files)")
    total = time.perf_counter() - args.started
    console.print(f"[bold green]finished[/] in {timing.describe(total, 'start-up, data loading, planning, reports')}",
                  highlight=False)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from usdrl_bench.api import ASSUMED_MFU, GPUS, USABLE_MEMORY, forecast_totals, plan_protocols

    frame = plan_protocols(args.protocol, preset=args.preset, gpu=args.gpu, mfu=args.mfu, device=args.device,
                           rows=args.rows.split(",") if args.rows else None, seeds=_ints(args.seeds),
                           dataset=args.dataset, split=args.split, results=args.results, data_root=args.data_root,
                           overrides=args.overrides, measured=args.measured, console=console)
    gpu = GPUS[args.gpu]
    table = RichTable(title=f"plan: preset {args.preset}, forecast for one {gpu.name}", title_justify="left")
    for col in ("key", "protocol", "row", "column", "state", "epochs x batch", "GFLOP/sample", "peak GB @batch",
                f"fits {gpu.memory_gb:.0f} GB", "GPU-h"):
        table.add_column(col, justify="left" if col in ("key", "protocol", "row", "column", "state") else "right")

    def num(row, name, fmt):
        value = row.get(name)
        return "-" if value is None or value != value else format(value, fmt)

    for row in frame.to_dict("records"):
        if row["objective"] == "none (random init)":
            state = "random init"
        else:
            state = "cached" if row["cached"] else "to train"
        fits = row.get("fits")
        fits_text = "-" if fits is None or fits != fits else ("yes" if fits else f"[red]no[/]: --nproc {int(row['gpus_needed'])}")
        table.add_row(row["key"][:12], row["protocols"], str(row["row"]), row["column"], state,
                      f"{int(row['epochs'])} x {int(row['batch'])}" if row.get("epochs") == row.get("epochs") and row.get("epochs") else "-",
                      num(row, "gflops_per_sample", ",.1f"), num(row, "peak_gb", ",.1f"), fits_text, num(row, "gpu_hours", ",.1f"))
    (out if out.is_terminal else Console(width=200)).print(table)
    names = list(dict.fromkeys(n for p in frame["protocols"] for n in p.split(","))) if not frame.empty else []
    for name in names + [None]:
        t = forecast_totals(frame, name)
        what = name or f"all {len(names)} protocol(s)"
        peak = f", largest peak {t['max_peak_gb']:.1f} GB" if t.get("max_peak_gb") else ""
        peak += f", {t['checkpoint_gb']:.1f} GB of new checkpoints" if t.get("checkpoint_gb") else ""
        if t["unmeasured"] and t["unmeasured"] == t["to_train"]:
            hours = "GPU-hours unknown (not measured: run --rehearse)"
        elif t["unmeasured"]:
            hours = (f"{t['gpu_hours']:,.1f} GPU-hours on {gpu.name} for the measured ones ({t['unmeasured']} not "
                     "measured: run --rehearse)")
        else:
            hours = f"{t['gpu_hours']:,.1f} GPU-hours on {gpu.name}"
        out.print(f"{what}: {t['to_train']} model(s) to train, {t['cached']} cached; {hours}{peak}", highlight=False)
    mfu = (f"MFU {args.mfu:.2f} (given)" if args.mfu else
           f"MFU from `usdrl-bench bench` on this GPU where it ran, else {ASSUMED_MFU:.2f} (assumed)")
    out.print(f"assumes: {mfu} of the dense bf16 peak ({gpu.bf16_tflops:.0f} TFLOPS); FLOPs and memory measured by a rehearsal "
              f"(`run --rehearse`) and memory scaled linearly from its two batch sizes to the preset's; a batch fits when "
              f"its peak is within {USABLE_MEMORY:.0%} of the GPU's memory, else --nproc K GPUs keep the global batch "
              "(world-size invariant); evaluations: features once per model and column, fine-tuning 3 forward passes "
              "per sample and epoch; detection and segmentation heads are not priced", highlight=False)
    if args.csv:
        frame.to_csv(args.csv, index=False)
        console.print(f"forecast written to {args.csv}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from usdrl_bench.api import bench_throughput, resolve_device, results_table

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    options = {k: v for k, v in (("hidden_size", args.hidden_size), ("num_frames", args.frames)) if v}
    if args.drop_path is not None:
        options["drop_path"] = args.drop_path
    repeats, steps = args.repeats, args.steps
    encoders, batches = args.encoder or ["dste", "sttr"], args.batch_size or ([356] if cuda else [32])
    precisions = args.precision or (["fp32", "bf16"] if cuda else ["fp32"])
    compiles = [c == "on" for c in (args.compile or (["off", "on"] if cuda else ["off"]))]
    count = len(encoders) * len(batches) * len(precisions) * len(compiles)
    console.print(f"timing {count} configuration(s) on {device} ({__import__('torch').get_num_threads()} threads): "
                  f"{repeats} interleaved rounds of {steps} steps after {args.warmup} warm-up steps, random NTU-shaped "
                  "inputs (3 x 300 x 25 x 2), 4 views per sample", highlight=False)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("bench", total=count * repeats)
        results, path = bench_throughput(
            encoders, preset=args.preset or ("paper" if cuda else "small"), batch_sizes=batches,
            precisions=precisions, compiles=compiles,
            objective=args.objective, encoder_options=options, device=device, steps=steps, repeats=repeats,
            warmup=args.warmup, peak_tflops=args.peak_tflops, out=args.out,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    (out if out.is_terminal else Console(width=170)).print(results_table(results))  # whole rows in logs
    console.print(f"samples/s: whole steps (input, views, forward, backward, optimiser) without synchronisation, median of "
                  f"{repeats} rounds; phase times with a synchronisation after each phase. Written to {path}",
                  highlight=False)
    return 0 if all(r.error is None for r in results) else 1


def cmd_report(args: argparse.Namespace) -> int:
    from usdrl_bench.api import write_report

    summary = write_report(args.results, args.out, official=args.official)
    for message in summary.skipped:
        console.print(f"[bold red]skipped[/] {message}", highlight=False)
    if summary.records.empty:
        console.print(f"no records under {args.results}/records; run a protocol first, e.g. "
                      "`usdrl-bench run protocols/table5_ablation.yaml`")
        return 1
    for table in summary.tables:
        out.print(table, highlight=False, soft_wrap=True)
    if summary.reproduction is not None:
        out.print(summary.reproduction, highlight=False, soft_wrap=True)
    console.print(f"{len(summary.written)} files written under {args.out}/")
    if summary.skipped:
        console.print(f"[bold red]{len(summary.skipped)} unreadable record file(s) skipped[/] (listed above): delete "
                      "them and run the protocol again to recompute them", highlight=False)
        return 1
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from usdrl_bench.api import list_components, shipped_protocol_table

    if args.protocols:
        table = RichTable(title="shipped protocols (usdrl-bench run NAME)", title_justify="left")
        for col in ("name", "paper table", "presets", "rows"):
            table.add_column(col)
        for row in shipped_protocol_table().itertuples(index=False):
            table.add_row(row.name, row.paper_table, row.presets, str(row.rows))
        out.print(table)
        return 0
    for kind, entries in list_components(args.plugin).items():
        table = RichTable(title=kind, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("description")
        extra_cols = [k for k in ("paper", "code", "presets", "components", "splits") if any(k in e.meta for e in entries)]
        for col in extra_cols:
            table.add_column(col)

        def text(value: object) -> str:
            return value if isinstance(value, str) else ", ".join(map(str, value or ()))

        for e in entries:
            table.add_row(e.name, e.description, *[text(e.meta.get(c)) for c in extra_cols])
        out.print(table)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from usdrl_bench.api import validate_protocols

    failures = 0
    for path in args.protocols:
        try:
            (protocol, _), = validate_protocols([path], preset=None, overrides=args.overrides)
            preset = args.preset or ("demo" if "demo" in protocol.presets else None)
            work = validate_protocols([path], preset=preset, rows=args.rows.split(",") if args.rows else None, dataset=args.dataset,
                                      split=args.split, seeds=_ints(args.seeds), data_root=args.data_root,
                                      overrides=args.overrides) if preset else [(protocol, [])]
            cells = work[0][1]
            out.print(f"[green]ok[/] {path}: {len(protocol.rows)} rows, presets {', '.join(protocol.presets)}"
                      + (f"; preset {preset}: {len(cells)} cells" if preset else "")
                      + (f"; with {len(args.overrides)} --set" if args.overrides else ""), highlight=False)
        except Exception as exc:  # report every file, then fail
            failures += 1
            out.print(f"[red]invalid[/] {escape(str(exc))}", highlight=False)
    return 1 if failures else 0


def cmd_schema(args: argparse.Namespace) -> int:
    from usdrl_bench.api import protocol_json_schema

    text = json.dumps(protocol_json_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
        out.print(f"wrote {args.output}", highlight=False)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from usdrl_bench.api import format_summary, prepare_data

    summary = prepare_data(args.dataset, args.raw, args.out, data_root=args.data_root, pipeline=args.pipeline,
                           workers=args.workers, missing_lists=args.missing_list)
    out.print(format_summary(summary, strict=args.strict), highlight=False)
    if args.strict and summary.skipped:
        console.print(f"[bold red]strict:[/] {len(summary.skipped)} samples skipped (see {summary.out}/manifest.json)")
        return 3
    return 0


def cmd_score_detection(args: argparse.Namespace) -> int:
    from usdrl_bench.api import score_detection

    scores, voc, without = score_detection(args.gt, args.pred, theta=args.theta, num_actions=args.num_actions)
    table = RichTable(title=f"{len(scores.per_video)} videos, {scores.num_proposals} proposals, "
                            f"{scores.num_truths} ground-truth instances; theta = {args.theta:g}",
                      title_justify="left")
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    for name, value in scores.as_dict().items():
        table.add_row(f"{name} (official)", f"{100 * value:.2f}")
    table.add_row("mAP_a, VOC-style (not official)", f"{100 * voc:.2f}")
    out.print(table)
    if without:
        console.print(f"{len(without)} ground-truth files have no proposal file and are not scored "
                      f"(as the official script, which lists the proposal folder): {', '.join(without[:5])}"
                      + (" ..." if len(without) > 5 else ""))
    return 0


def cmd_score_segmentation(args: argparse.Namespace) -> int:
    from usdrl_bench.api import score_segmentation

    scores = score_segmentation(args.gt, args.pred, thresholds=args.thresholds, background=args.background)
    table = RichTable(title=f"{scores.num_videos} videos, {scores.num_frames} frames; background = {args.background}",
                      title_justify="left")
    table.add_column("metric")
    table.add_column("value (%)", justify="right")
    table.add_row("Acc", f"{scores.acc:.2f}")
    table.add_row("Edit", f"{scores.edit:.2f}")
    for k, v in scores.f1.items():
        table.add_row(f"F1@{100 * k:g}", f"{v:.2f}")
    out.print(table)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from usdrl_bench.api import embed_file

    done = embed_file(args.checkpoint, args.data, args.out, method=args.method, num_frames=args.num_frames,
                      frames=args.frames, dense=args.dense, batch_size=args.batch_size, device=args.device)
    console.print(f"valid frames: {done.frames}", highlight=False)
    console.print(f"wrote {done.path}: " + ", ".join(f"{k} {v}" for k, v in done.shapes.items()), highlight=False)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from usdrl_bench.api import export_official

    path = export_official(args.checkpoint, args.method, args.out)
    console.print(f"wrote {path} ({args.method}'s official format)", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
