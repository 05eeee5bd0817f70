"""Reader for MSR Action3D skeletons (Li et al., CVPR Workshops 2010; Kinect v1, 20 joints).

Files ``aAA_sSS_eEE_skeleton3D.txt`` (action 1-20, subject 1-10, repetition 1-3) hold one row
``x y z confidence`` per joint, 20 rows per frame (joint order: :data:`usdrl_bench.skeleton.KINECT20`).

Decisions (checked on the full dataset):

* **Units.** x, y, z are camera-space metres with the same convention as NTU's Kinect v2 data
  (y up, z = distance from the sensor): over all files x lies in [-1.05, 0.87], y in [-1.88, 1.15]
  and z in [1.39, 3.88]. They are used as they are (``scale`` multiplies them if a copy in other
  units is read); the confidence column is dropped.
* **Sequences.** By default only the 557 sequences of ``files_used_in_cvpr12_paper.txt`` (the list
  in common use; its lines are bare names such as ``a01_s01_e01``, CRLF). ``sequences="all"``
  reads all 567.
* **a13_s09_e02** is all zeros (38 frames). It is *not* in the common list, so the default never
  reads it; with ``sequences="all"`` it is kept as an all-zero sample with ``num_frames = 38``
  (normalisation leaves all-zero samples untouched). Frames where tracking was lost (all-zero rows
  inside 19 sequences, e.g. during "bend") are kept as zeros, as NTU's are.
* **Preparation.** The same :func:`~usdrl_bench.data.preprocess.pre_normalization` as NTU (centre:
  spine, joint 4; shoulders 1 -> 2 along +x; padding by repetition), so arrays look like NTU's.
  ``T`` = the longest selected sequence (76 frames for the common list) unless ``max_frames``.
* **Split.** Cross-subject ``xsub``: odd subjects train, even subjects test (284 / 273 of the 557).
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from usdrl_bench.data.arrays import SkeletonArrays, split_by_rule
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.root import DATA_ROOT_ENV
from usdrl_bench.data.preprocess import pre_normalization
from usdrl_bench.data.registration import register_dataset
from usdrl_bench.skeleton import KINECT20

log = logging.getLogger(__name__)

FILE_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_skeleton3D\.txt")
SEQUENCE_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})")
COMMON_LIST = "files_used_in_cvpr12_paper.txt"
NUM_JOINTS = 20
ROW_VALUES = 4  # x y z confidence

#: a01-a20, from the dataset's description.
CLASS_NAMES: tuple[str, ...] = (
    "high arm wave", "horizontal arm wave", "hammer", "hand catch", "forward punch", "high throw",
    "draw x", "draw tick", "draw circle", "hand clap", "two hand wave", "side boxing", "bend",
    "forward kick", "side kick", "jogging", "tennis swing", "tennis serve", "golf swing",
    "pick up and throw",
)

#: Cross-subject protocol: odd subjects train, even subjects test.
MSR_SPLITS = {"xsub": lambda meta: (meta["subject"] % 2 == 1).to_numpy()}


def parse_msr_skeleton(text: str, file: str | Path = "<string>") -> np.ndarray:
    """Parse one ``*_skeleton3D.txt``: ``(F, 20, 4)`` float32 rows ``x y z confidence``.

    CRLF and blank lines are accepted; line numbers in errors count every line of the file.

    Raises:
        DataFormatError: (file, 1-based line) a row without 4 values, a non-numeric value, no rows,
            or a row count that is not a multiple of 20.
    """
    if not text.strip():
        raise DataFormatError(file, "empty file; expected rows of 'x y z confidence', 20 per frame", line=1)
    try:  # fast path: numpy's C parser (skips blank lines; raises on ragged rows or bad numbers)
        values = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2)
    except ValueError:
        values = None
    if values is None or values.shape[1] != ROW_VALUES or not np.isfinite(values).all():
        _raise_first_bad_row(text, file)
    if len(values) % NUM_JOINTS:  # type: ignore[arg-type]
        rows = [i for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
        start = rows[len(rows) - len(rows) % NUM_JOINTS]
        raise DataFormatError(
            file, f"{len(rows)} rows is not a multiple of {NUM_JOINTS} (one row per joint); the frame starting here is incomplete",
            line=start,
        )
    return values.reshape(-1, NUM_JOINTS, ROW_VALUES).astype(np.float32)  # type: ignore[union-attr]


def _raise_first_bad_row(text: str, file: str | Path) -> None:
    """Find the first malformed row of ``text`` and raise the matching :class:`DataFormatError`."""
    for i, line in enumerate(text.splitlines(), start=1):
        row = line.split()
        if not row:
            continue
        if len(row) != ROW_VALUES:
            raise DataFormatError(file, f"expected {ROW_VALUES} values (x y z confidence), got {len(row)}", line=i)
        try:
            ok = all(np.isfinite(float(t)) for t in row)
        except ValueError:
            ok = False
        if not ok:
            raise DataFormatError(file, f"expected 4 finite numbers (x y z confidence), got {line.strip()[:80]!r}", line=i)
    raise DataFormatError(file, "could not parse the file as rows of 'x y z confidence'")


def read_common_list(path: str | Path) -> list[str]:
    """Sequence names (``a01_s01_e01``) of ``files_used_in_cvpr12_paper.txt``; blank lines skipped.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: a line that is not a sequence name (the ``_skeleton3D.txt`` suffix is allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MSR Action3D sequence list not found: {path} (use sequences='all' to read every file)")
    names = []
    for i, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        line = raw.strip().removesuffix("_skeleton3D.txt")
        if not line:
            continue
        if not SEQUENCE_NAME.fullmatch(line):
            raise DataFormatError(path, f"expected a sequence name like a01_s01_e01, got {line[:80]!r}", line=i)
        names.append(line)
    return names


#: the folder of the skeleton text files under the data root
MSR_FOLDER = "MSRAction3D"


def locate_msr_action3d(root: Path) -> Path:
    """``MSRAction3D`` under the data root ``root``.

    Raises:
        FileNotFoundError: it is not there; the message says what to download and where to put it.
    """
    folder = root / MSR_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset msr_action3d not found: expected the skeleton files (a01_s01_e01_skeleton3D.txt ...) in {folder}. "
            f"Download MSR Action3D (the skeleton text files) and unpack them there; set the data root with "
            f"--data-root or ${DATA_ROOT_ENV} (now {root})")
    return folder


@register_dataset(
    "msr_action3d",
    description="MSR Action3D (Kinect v1, 20 joints, 20 actions), the 557 common sequences, cross-subject",
    splits=("xsub",),
    default_split="xsub",
    locate=locate_msr_action3d,
)
def load_msr_action3d(
    path: str | Path,
    split: str = "xsub",
    *,
    sequences: Literal["cvpr12", "all"] = "cvpr12",
    sequence_list: str | Path | None = None,
    max_frames: int | None = None,
    scale: float = 1.0,
    normalize: bool = True,
    align_z: bool = False,
) -> tuple[SkeletonArrays, SkeletonArrays]:
    """Read MSR Action3D and return the cross-subject (train, test) split.

    Args:
        path: directory of ``aAA_sSS_eEE_skeleton3D.txt`` files (by name: ``MSRAction3D`` under the data
            root, :func:`locate_msr_action3d`).
        split: ``xsub`` (odd subjects train, even test).
        sequences: ``cvpr12``: the sequences of ``sequence_list`` (557); ``all``: every file (567).
        sequence_list: default ``<path>/files_used_in_cvpr12_paper.txt``.
        max_frames: ``T``; default the longest selected sequence. Longer sequences are truncated.
        scale: factor applied to x, y, z (the files are in metres: 1.0).
        normalize: apply :func:`~usdrl_bench.data.preprocess.pre_normalization` (as for NTU).
        align_z: its z-alignment step (hip centre -> spine along +z), off as for NTU.

    Returns:
        ``(train, test)``: ``data`` ``(N, 3, T, 20, 1)`` float32 metres, labels = action - 1 (20
        classes), meta subject = sSS, repetition = eEE, camera = setup = -1; layout ``kinect20``.

    Raises:
        KeyError: unknown ``split``.
        FileNotFoundError: ``path``, the list, or a listed sequence's file is missing.
        DataFormatError: a malformed file (file and line named).
    """
    path = Path(path)
    if split not in MSR_SPLITS:
        raise KeyError(f"Unknown split {split!r} for msr_action3d; available: {', '.join(MSR_SPLITS)}")
    if sequences not in ("cvpr12", "all"):
        raise ValueError(f"msr_action3d: sequences must be 'cvpr12' or 'all', got {sequences!r}")
    if not path.is_dir():
        raise FileNotFoundError(f"MSR Action3D directory not found: {path}")
    files = {m.group(0)[: -len("_skeleton3D.txt")]: f for f in path.iterdir() if (m := FILE_NAME.fullmatch(f.name))}
    if sequences == "all":
        names = sorted(files)
        if not names:
            raise FileNotFoundError(f"no aAA_sSS_eEE_skeleton3D.txt files in {path}")
    else:
        names = sorted(set(read_common_list(sequence_list if sequence_list is not None else path / COMMON_LIST)))
        absent = [n for n in names if n not in files]
        if absent:
            raise FileNotFoundError(f"{len(absent)} listed sequences have no file in {path}: {', '.join(absent[:5])}")

    raw = [parse_msr_skeleton(files[n].read_text(encoding="latin-1"), files[n]) for n in names]
    lengths = np.array([len(x) for x in raw], dtype=np.int64)
    T = int(max_frames) if max_frames is not None else int(lengths.max())
    if T < 1:
        raise ValueError(f"msr_action3d: max_frames must be >= 1, got {T}")
    data = np.zeros((len(raw), 3, T, NUM_JOINTS, 1), dtype=np.float32)
    for i, x in enumerate(raw):
        n = min(len(x), T)
        data[i, :, :n, :, 0] = x[:n, :, :3].transpose(2, 0, 1) * scale
    if np.abs(data).max() > 20:
        log.warning("msr_action3d: coordinates up to %.1f; the files do not look like metres (see scale=)", float(np.abs(data).max()))
    if normalize:
        data = pre_normalization(data, KINECT20, align_z=align_z)

    parsed = [SEQUENCE_NAME.fullmatch(n).groups() for n in names]  # type: ignore[union-attr]
    action, subject, repetition = (np.array([int(p[k]) for p in parsed], dtype=np.int64) for k in range(3))
    bad = [n for n, a in zip(names, action) if not 1 <= a <= len(CLASS_NAMES)]
    if bad:
        raise DataFormatError(files[bad[0]], f"action a{bad[0][1:3]} outside a01-a{len(CLASS_NAMES):02d}")
    meta = pd.DataFrame({"subject": subject, "camera": -1, "setup": -1, "repetition": repetition})
    full = SkeletonArrays(
        data=data, labels=action - 1, num_frames=np.clip(lengths, 1, T), meta=meta, names=names,
        num_classes=len(CLASS_NAMES), layout=KINECT20.name, class_names=list(CLASS_NAMES), source=str(path),
        extra={"split": split, "sequences": sequences, "scale": scale},
    )
    return split_by_rule(full, split, MSR_SPLITS)
