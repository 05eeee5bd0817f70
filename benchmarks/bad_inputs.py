"""Feed the command line the bad inputs users have fed it, and print what each gets: the exit code and the
first line of the message, as a Markdown table (the one on docs/safety.md).

    python benchmarks/bad_inputs.py [--data DATA_ROOT]      # about a minute and a half on 2 CPU cores

Each case runs ``python -m usdrl_bench ...`` in a fresh temporary folder; nothing is trained (every case is
refused before any work, or, for the data cases, when the data loads).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TINY = """\
name: bad_inputs
version: 1
rows:
  - {id: "7", label: "DSTE, MG-FD", encoder: dste, objective: mgfd}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {seed: 0, num_classes: 3, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations: {knn: {k: 1}}
"""


def cases(folder: Path, data: Path | None) -> list[tuple[str, list[str]]]:
    """(what the input is, the command's arguments) of every case."""
    tiny = folder / "tiny.yaml"
    tiny.write_text(TINY)
    binary = folder / "binary.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    broken = folder / "broken.yaml"
    broken.write_text("name: x\nrows: [\n")
    blocker = folder / "a-file"
    blocker.write_text("")
    out = [
        ("negative epochs", ["run", "table5_ablation", "--set", "presets.demo.pretrain.epochs=-1"]),
        ("negative epochs, validate", ["validate", "table5_ablation", "--set", "presets.demo.pretrain.epochs=-1"]),
        ("epochs 2.5", ["run", "table5_ablation", "--set", "presets.demo.pretrain.epochs=2.5"]),
        ("a misspelt key", ["run", "table5_ablation", "--set", "presets.demo.pretrain.epohcs=3"]),
        ("lr 0", ["run", "table5_ablation", "--set", "presets.demo.pretrain.lr=0"]),
        ("momentum 1.5", ["run", "table5_ablation", "--set", "presets.demo.pretrain.momentum=1.5"]),
        ("milestones out of order", ["run", "table5_ablation", "--set", "presets.demo.pretrain.milestones=[5, 2]"]),
        ("shear probability 1.5", ["run", "table5_ablation", "--set", "presets.demo.pretrain.views.p_shear=1.5"]),
        ("crop scales crossed", ["run", "table5_ablation", "--set",
                                 "presets.demo.pretrain.views={min_scale: 0.9, max_scale: 0.5}"]),
        ("an encoder option out of range", ["run", str(tiny), "--set", "rows.0.encoder_options={alpha: 2}"]),
        ("an encoder configuration that cannot be built", ["run", str(tiny), "--set",
                                                           "presets.demo.encoder_options={num_heads: 3}"]),
        ("an objective option out of range", ["run", str(tiny), "--set", "rows.0.objective_options={xc_weight: -1}"]),
        ("kNN k 0", ["run", str(tiny), "--set", "presets.demo.evaluations.knn.k=0"]),
        ("a dataset option out of range", ["run", str(tiny), "--set", "presets.demo.dataset.options.num_classes=0"]),
        ("an unknown encoder", ["run", str(tiny), "--set", "rows.0.encoder=dstee"]),
        ("a binary file as protocol", ["run", str(binary)]),
        ("invalid YAML", ["validate", str(broken)]),
        ("a results folder that cannot be written", ["run", str(tiny), "--results", str(blocker / "results")]),
        ("--save-every -1", ["run", str(tiny), "--save-every", "-1"]),
        ("--jobs 0", ["run", str(tiny), "--jobs", "0"]),
        ("a missing data path", ["run", str(tiny), "--dataset", "ntu_raw:/nonexistent/ntu"]),
    ]
    nwucla = data / "nwucla" / "all_sqe" if data is not None else None
    if nwucla is not None and nwucla.is_dir():
        root = folder / "two-files"
        (root / "nwucla" / "all_sqe").mkdir(parents=True)
        for name in ("a01_s01_e00_v01.json", "a01_s01_e00_v03.json"):
            shutil.copy(nwucla / name, root / "nwucla" / "all_sqe" / name)
        out.append(("an NW-UCLA folder of 2 files (1 training, 1 test sample)",
                    ["run", "nwucla", "--data-root", str(root), "--rows", "R-DSTE"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    print("| bad input | command | exit | message |")
    print("|:--|:--|--:|:--|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for what, argv in cases(folder, args.data if args.data.is_dir() else None):
            command = [sys.executable, "-m", "usdrl_bench", *argv]
            if argv[0] == "run" and "--results" not in argv:
                command += ["--results", str(folder / "results")]
            proc = subprocess.run(command, capture_output=True, text=True, cwd=folder)
            text = " ".join((proc.stderr + proc.stdout).split())
            message = text.split("error: ", 1)[-1] if "error: " in text else text.split("invalid ", 1)[-1]
            message = message.replace(str(folder), "…").replace(str(Path.cwd()), ".")[:240]
            shown = " ".join(a.replace(str(folder), "…") for a in argv)
            print(f"| {what} | `usdrl-bench {shown}` | {proc.returncode} | {message.replace('|', '/')} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
