"""Reader and writer for the 2s-AGCN / UmURL preprocessed layout that the official USDRL code reads.

One directory per split protocol (FACTS §3A item 7), e.g. ``NTU-RGB-D-60-AGCN/xsub/``, holding:

* ``{train,val}_data_joint.npy``: ``(N, 3, T, V, M)`` float32 (T = 300, V = 25, M = 2 for NTU);
* ``{train,val}_label.pkl``: a pickled pair ``(names, labels)``: sample names with the
  ``.skeleton`` suffix and 0-based int labels (PKU-MMD clips use names like ``0291-L.txt_3``);
* ``{train,val}_num_frame.npy``: ``(N,)`` valid frames per sample.

USDRL reads ``root + NTU-RGB-D-60-AGCN/xsub/train_data_joint.npy`` etc. (FACTS §3A item 9).
:func:`save_agcn` writes the same layout, so the output of the raw readers can be prepared once.

Pickles can run code when loaded: read ``*_label.pkl`` files only from sources you trust.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap

from usdrl_bench.data.arrays import META_COLUMNS, SkeletonArrays
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.ntu_raw import NTU60_MAX_SETUP, parse_ntu_name
from usdrl_bench.data.safe_pickle import load_pickle
from usdrl_bench.data.registration import register_dataset
from usdrl_bench.skeleton import LAYOUTS

log = logging.getLogger(__name__)

PARTS: tuple[str, str] = ("train", "val")  # val = the test set, as in the official file names
#: Folder names of the official releases for our split names (the NTU-120 cross-setup folder is "xsetup").
SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {"xset": ("xset", "xsetup"), "xsetup": ("xsetup", "xset")}
NAME_SUFFIX = ".skeleton"
_CHUNK = 256


#: a UAV-Human file stem: person, setup, ..., action, replicate (the release's naming)
UAV_NAME = re.compile(r"P(\d{3})S(\d{2})G(\d{2})B(\d{2})H(\d{2})UC(\d{6})LC(\d{6})A(\d{3})R(\d)_(\d{8})$")


def parse_uav_name(name: str) -> dict[str, int] | None:
    """``{"person", "setup", "action", "replicate"}`` of a UAV-Human file stem, None for another name."""
    m = UAV_NAME.match(name)
    if m is None:
        return None
    return {"person": int(m.group(1)), "setup": int(m.group(2)), "action": int(m.group(8)), "replicate": int(m.group(9))}


def agcn_files(directory: str | Path, part: str) -> dict[str, Path]:
    """The three files of one part (``train`` or ``val``) in ``directory``."""
    directory = Path(directory)
    return {
        "data": directory / f"{part}_data_joint.npy",
        "label": directory / f"{part}_label.pkl",
        "num_frame": directory / f"{part}_num_frame.npy",
    }


def _resolve_directory(path: Path, split: str) -> Path:
    """``path`` itself when it holds the files, else ``path/<split folder>`` (``xset`` also tries ``xsetup``)."""
    if agcn_files(path, "train")["data"].is_file():
        return path
    for folder in SPLIT_FOLDERS.get(split, (split,)):
        if agcn_files(path / folder, "train")["data"].is_file():
            return path / folder
    raise FileNotFoundError(
        f"no AGCN-layout data in {path}: expected train_data_joint.npy, train_label.pkl, train_num_frame.npy "
        f"(and val_*) there or in {path / split}"
    )


def read_label_pickle(path: str | Path) -> tuple[list[str], np.ndarray]:
    """``(names, labels)`` from an official ``*_label.pkl`` (Python 2 pickles are read as latin-1).

    Names lose a trailing ``.skeleton``; labels are returned as int64 (some pipelines store floats).

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: the pickle is not a pair of equally long sequences, or labels are not integral.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    obj = load_pickle(path)  # restricted: a label file cannot run code
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataFormatError(path, f"expected a pickled pair (names, labels), got {type(obj).__name__}")
    names, labels = obj
    if len(names) != len(labels):
        raise DataFormatError(path, f"{len(names)} names but {len(labels)} labels")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    names = [n[: -len(NAME_SUFFIX)] if n.endswith(NAME_SUFFIX) else n for n in names]
    labels = np.asarray(labels)
    if labels.size and not np.array_equal(labels, np.round(labels)):
        raise DataFormatError(path, "labels are not integers")
    return names, labels.astype(np.int64).reshape(-1)


def _meta_from_names(names: Sequence[str]) -> tuple[pd.DataFrame, bool, int]:
    """Meta columns parsed from NTU (or UAV-Human) names (-1 otherwise); whether all names are NTU; the
    largest NTU setup."""
    rows, all_ntu, max_setup = [], True, -1

    for name in names:
        parsed = parse_ntu_name(name)
        if parsed is None:
            all_ntu = False
            uav = parse_uav_name(str(name))  # UAV-Human: person, setup and replicate ids
            rows.append({c: -1 for c in META_COLUMNS} if uav is None else
                        {"setup": uav["setup"], "camera": -1, "subject": uav["person"], "repetition": uav["replicate"]})
        else:
            rows.append({c: parsed[c] for c in META_COLUMNS})
            max_setup = max(max_setup, parsed["setup"])
    return pd.DataFrame(rows, columns=list(META_COLUMNS)).astype(np.int64), all_ntu and bool(names), max_setup


def _read_part(directory: Path, part: str, layout: str | None) -> dict:
    files = agcn_files(directory, part)
    for what, f in files.items():
        if not f.is_file() and what != "num_frame":
            raise FileNotFoundError(f"AGCN layout incomplete: {f} not found")
    data = np.load(files["data"], mmap_mode="r")
    if data.ndim != 5 or data.shape[1] != 3:
        raise DataFormatError(files["data"], f"expected (N, 3, T, V, M) joint data, got shape {data.shape}")
    names, labels = read_label_pickle(files["label"])
    if len(names) != len(data):
        raise DataFormatError(files["label"], f"{len(names)} labels for {len(data)} samples in {files['data'].name}")
    if files["num_frame"].is_file():
        num_frames = np.load(files["num_frame"]).astype(np.int64).reshape(-1)
        if len(num_frames) != len(data):
            raise DataFormatError(files["num_frame"], f"{len(num_frames)} frame counts for {len(data)} samples")
    else:  # some releases lack it: count up to the last non-zero frame
        log.warning("agcn: %s not found; taking the frames up to the last non-zero one", files["num_frame"])
        num_frames = np.array([_last_valid_frame(x) for x in data], dtype=np.int64)
    num_frames = np.clip(num_frames, 1, data.shape[2])  # PKU clips store the untruncated length (FACTS §4)
    if layout is None:
        by_v: dict[int, str] = {}
        for name, lay in LAYOUTS.items():  # the first layout of each joint count (ntu25, kinect20, coco17)
            by_v.setdefault(lay.num_joints, name)
        if data.shape[3] not in by_v:
            raise DataFormatError(files["data"], f"V={data.shape[3]} joints matches no known layout ({', '.join(LAYOUTS)}); pass layout=")
        layout = by_v[data.shape[3]]
    return {"data": data, "names": names, "labels": labels, "num_frames": num_frames, "layout": layout}


def files_have_frames(directory: Path) -> bool:
    """Whether both parts of an AGCN folder carry their ``*_num_frame.npy``."""
    return all(agcn_files(directory, part)["num_frame"].is_file() for part in PARTS)


def _last_valid_frame(x: np.ndarray) -> int:
    valid = np.flatnonzero(np.any(np.asarray(x) != 0, axis=(0, 2, 3)))
    return int(valid[-1]) + 1 if len(valid) else 1


@register_dataset(
    "agcn",
    description="2s-AGCN/UmURL preprocessed .npy + .pkl directories, as read by the official USDRL code",
    splits=("xsub", "xview", "xset"),
    default_split="xsub",
)
def load_agcn(
    path: str | Path,
    split: str = "xsub",
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    layout: str | None = None,
) -> tuple[SkeletonArrays, SkeletonArrays]:
    """Read one AGCN-layout directory as (train = ``train_*``, test = ``val_*``). What was inferred rather
    than given (layout from V, number of classes, frame counts) is stated in ``extra["assumed"]``.

    The split is decided by the directory: ``path`` itself when it holds ``train_data_joint.npy``,
    otherwise ``path/<split>`` (``xset`` also finds the official ``xsetup`` folder). ``split`` is
    then only recorded (``extra["split"]``); any name is accepted.

    Args:
        path: the split directory, or its parent.
        split: label of the split (and sub-folder to use when ``path`` is the parent).
        num_classes: default: 60/120 for NTU names (setups <= 17 or not), else the largest label + 1.
            A label outside ``[0, num_classes)`` is an error (naming the label file and the sample).
        class_names: optional, one per class.
        layout: skeleton layout name; default from ``V`` (25: ``ntu25``, 20: ``kinect20``, 17: ``coco17``).

    Returns:
        ``(train, test)`` with ``data`` memory-mapped ``(N, 3, T, V, M)``; meta parsed from
        ``SsssCcccPpppRrrrAaaa`` names, -1 for other names (e.g. PKU-MMD clips).

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        DataFormatError: inconsistent files (counts, shapes, label pickle).
        ValueError: a label outside ``[0, num_classes)``.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"AGCN data directory not found: {path}")
    directory = _resolve_directory(path, split)
    parts = {part: _read_part(directory, part, layout) for part in PARTS}
    if parts["train"]["layout"] != parts["val"]["layout"] or parts["train"]["data"].shape[1:] != parts["val"]["data"].shape[1:]:
        raise DataFormatError(directory, f"train and val data differ in shape: {parts['train']['data'].shape} vs {parts['val']['data'].shape}")
    metas = {part: _meta_from_names(p["names"]) for part, p in parts.items()}
    all_labels = np.concatenate([p["labels"] for p in parts.values()])
    max_label = int(all_labels.max()) if all_labels.size else -1
    assumed = []
    if layout is None:
        assumed.append(f"layout {parts['train']['layout']} from V={parts['train']['data'].shape[3]} joints")
    if num_classes is None:
        if all(m[1] for m in metas.values()):
            num_classes = 60 if max(m[2] for m in metas.values()) <= NTU60_MAX_SETUP else 120
            assumed.append(f"{num_classes} classes (NTU names, setups up to S{max(m[2] for m in metas.values()):03d})")
        else:
            num_classes = max_label + 1
            assumed.append(f"{num_classes} classes (the largest label + 1)")
    if not files_have_frames(directory):
        assumed.append("valid frames up to the last non-zero one (no *_num_frame.npy)")
    for part, p in parts.items():  # a label outside the classes would silently become an extra class
        bad = np.flatnonzero((p["labels"] < 0) | (p["labels"] >= num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{agcn_files(directory, part)['label']}: sample {i} ({p['names'][i]}) has label "
                             f"{int(p['labels'][i])}, outside [0, {num_classes}) ({bad.size} such samples); pass "
                             f"num_classes if the dataset has more classes")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"agcn: {len(class_names)} class names for {num_classes} classes")

    out = []
    for part in PARTS:
        p = parts[part]
        out.append(SkeletonArrays(
            data=p["data"], labels=p["labels"], num_frames=p["num_frames"], meta=metas[part][0], names=p["names"],
            num_classes=num_classes, layout=p["layout"], class_names=list(class_names) if class_names is not None else None,
            source=str(directory), extra={"split": split, "part": part, "assumed": "; ".join(assumed)},
        ))
    return out[0], out[1]


def save_agcn(directory: str | Path, train: SkeletonArrays, test: SkeletonArrays, *, name_suffix: str = NAME_SUFFIX) -> Path:
    """Write ``train`` and ``test`` in the AGCN layout (``train_*`` and ``val_*``) to ``directory``.

    Data are copied in chunks (memory maps stay on disk); each file is written under a temporary
    name and renamed into place. Names get ``name_suffix`` unless they already end with it, as the
    official pickles hold ``S001C001P001R001A001.skeleton``.

    Returns:
        ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for part, arrays in zip(PARTS, (train, test)):
        files = agcn_files(directory, part)
        data = arrays.data
        _atomic_write(files["data"], lambda tmp: _write_data(tmp, data))
        names = [n if n.endswith(name_suffix) else n + name_suffix for n in arrays.names]
        labels = [int(x) for x in arrays.labels]
        _atomic_write(files["label"], lambda tmp: tmp.write_bytes(pickle.dumps((names, labels))))
        num_frames = np.asarray(arrays.num_frames, dtype=np.int64)
        _atomic_write(files["num_frame"], lambda tmp: np.save(tmp, num_frames))
    return directory


def _write_data(tmp: Path, data: np.ndarray) -> None:
    if len(data) == 0:
        np.save(tmp, np.zeros(data.shape, dtype=np.float32))
        return
    out = open_memmap(tmp, mode="w+", dtype=np.float32, shape=tuple(data.shape))
    for start in range(0, len(data), _CHUNK):
        out[start : start + _CHUNK] = data[start : start + _CHUNK]
    out.flush()
    del out


def _atomic_write(target: Path, write) -> None:
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
