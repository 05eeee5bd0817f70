"""UAV-Human skeletons (the journal extension's transferred setting; FACTS-foundation §4): the release's text
files, the CSv1 / CSv2 cross-subject splits, and ``usdrl-bench data prepare uav``.

**Files**: ``P{3}S{2}G{2}B{2}H{2}UC{6}LC{6}A{3}R{1}_{8}.txt`` (person, setup, genders, backpack, hat, upper and
lower clothing, action, replicate, timestamp), in the NTU ``.skeleton`` text format with 17 joints per body
(COCO order, :data:`usdrl_bench.skeleton.COCO17`); labels ``int(A)``, already 0-based, 155 classes.

**Splits**: cross-subject by person id ``int(P)``: the training ids of CSv1 and CSv2 below (UAV-Human's
README, as FACTS-foundation §4 lists them), every other id tests. The official preparation expects the files
already copied into ``train/`` and ``test/`` folders (a script the FSM code does not ship); here the split is
computed from the names, so ``--raw`` is the flat skeleton folder (sub-folders are searched too).

**Preparation** (as FSM's ``uav_gendata.py``): up to 4 bodies read, the 2 most energetic kept, 300 frames,
``pre_normalization`` with the pad step, the z-axis aligned from the left hip to the left shoulder and no
x-axis step, as FSM's defaults; the origin is the left hip (:data:`~usdrl_bench.skeleton.COCO17`'s centre)
where FSM centres on joint 1, the left eye. Output ``OUT/csv1/`` and ``OUT/csv2/`` in the AGCN layout
(``(N, 3, 300, 17, 2)``), read by the named datasets ``uav_csv1`` and ``uav_csv2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.ntu_raw import parse_skeleton, select_bodies
from usdrl_bench.data.preparation.prepare import Job, Preparation, PrepareSummary, Sample, Skipped, default_workers
from usdrl_bench.data.preprocess import pre_normalization
from usdrl_bench.data.readers.agcn import parse_uav_name

NUM_CLASSES = 155
NUM_JOINTS = 17
MAX_FRAMES = 300


def _ids(spec: str) -> frozenset[int]:
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.strip().partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return frozenset(out)


#: training person ids of the two cross-subject protocols (FACTS-foundation §4); the rest test
TRAIN_PERSONS = {
    "csv1": _ids("0,2,5,6,7,8,10-21,25-30,32-40,42-53,55,56,57,59,61-65,67-71,73,76-90,98,100,102,103,105,106,"
                 "110,111,112,114-118"),
    "csv2": _ids("0,3,4,5,6,8,10,11,12,14,16,18-22,24,26,29-32,35-40,43-47,49,52,54,56,57,59-64,66,67,69-75,77-81,"
                 "83,84,86-89,91-97,99-104,106-115,117,118"),
}


def read_uav_sample(source: str, payload, options: dict) -> list:
    """One UAV-Human file -> ``[((3, 300, 17, 2) float32, num_frames)]`` (module docstring)."""
    path = Path(source)
    bodies = parse_skeleton(path.read_text(encoding="latin-1"), path, max_bodies=4, num_joints=NUM_JOINTS)
    x = select_bodies(bodies, 2)
    if not np.any(x):
        raise DataFormatError(path, "no skeleton in any frame")
    out = np.zeros((3, MAX_FRAMES, NUM_JOINTS, 2), np.float32)
    n = min(x.shape[1], MAX_FRAMES)
    out[:, :n] = x[:, :n]
    out = pre_normalization(out[None], "coco17", align_z=True, z_axis=(11, 5), align_x=False)[0]
    return [(out, max(1, n))]


def prepare_uav(raw: str | Path, out: str | Path, *, workers: int | None = None, progress: bool = True,
                on_chunk=None) -> PrepareSummary:
    """Prepare UAV-Human (module docstring) into ``out/csv1`` and ``out/csv2``.

    Raises:
        FileNotFoundError: ``raw`` is not a folder or holds no UAV-Human file.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw} is not a directory; download UAV-Human's skeleton files and unpack them")
    files, bad = [], []
    for f in sorted(raw.rglob("*.txt")):
        meta = parse_uav_name(f.stem)
        if meta is None:
            bad.append(Skipped(f.stem, str(f), None, "not a UAV-Human file name (P...S...G...B...H...UC...LC...A...R..._...)"))
        elif not 0 <= meta["action"] < NUM_CLASSES:
            bad.append(Skipped(f.stem, str(f), None, f"action A{meta['action']:03d} outside 0..{NUM_CLASSES - 1}"))
        else:
            files.append((f, meta))
    if not files:
        raise FileNotFoundError(f"no UAV-Human skeleton file (P000S00G10B10H10UC022000LC021000A000R0_08241716.txt ...) "
                                f"under {raw}")
    samples, jobs = [], []
    for i, (f, meta) in enumerate(files):
        parts = tuple(f"{split}/{'train' if meta['person'] in persons else 'val'}" for split, persons in TRAIN_PERSONS.items())
        samples.append(Sample(f.stem, meta["action"], {"setup": meta["setup"], "camera": -1, "subject": meta["person"],
                                                       "repetition": meta["replicate"]}, parts))
        jobs.append(Job(str(f), (i,)))
    prep = Preparation(
        Path(out), samples, jobs, read_uav_sample, (3, MAX_FRAMES, NUM_JOINTS, 2),
        options={"max_frames": MAX_FRAMES, "center": "left hip", "z_axis": [11, 5]}, fingerprint={"dataset": "uav"},
        parts=[f"{split}/{p}" for split in TRAIN_PERSONS for p in ("train", "val")],
        manifest_extra={"dataset": "uav", "pipeline": "fsm_uav_gendata", "source": str(raw), "num_classes": NUM_CLASSES,
                        "layout": "coco17", "bad_file_names": [s.__dict__ for s in bad]},
    )
    summary = prep.run(workers=workers or default_workers(), progress=progress, on_chunk=on_chunk)
    summary.skipped[:0] = bad
    return summary
