"""Reader for Northwestern-UCLA Multiview Action3D (NW-UCLA; Wang et al., CVPR 2014), cross-view protocol.

The layout read is the one the skeleton literature uses (CTR-GCN's ``data/NW-UCLA/all_sqe``): one JSON
file per sequence, ``aAA_sSS_eEE_vVV.json`` (action, subject, episode, view), holding
``{"file_name": "aAA_sSS_eEE_vVV", "label": 1-10, "skeletons": [[[x, y, z] x 20] x T]}``: one person,
Kinect v1 joints (:data:`usdrl_bench.skeleton.NWUCLA20`, SDK order), metres, camera coordinates,
``T`` from 1 to 201 frames (median 31). 1,484 sequences; labels 1-10 are the actions a01, a02, a03, a04,
a05, a06, a08, a09, a11, a12 in that order (the file's ``label`` is checked against the file name).

**Split** ``xview`` (the standard cross-view protocol): train on views v01 and v02 (1,020 sequences), test
on view v03 (464), the same files as CTR-GCN's ``feeders/feeder_ucla.py`` lists.

**Preprocessing** (CTR-GCN ``feeders/feeder_ucla.py``, its evaluation branch, applied once at load time;
every step a switch; the steps are the public building blocks of :mod:`usdrl_bench.data.normalize`, which a
reader of any layout with a centre and shoulders can apply):

1. ``centre="first_frame"``: subtract joint 2 (spine) of the first frame from every frame (the trajectory
   is kept: "walk around" moves); ``"per_frame"`` subtracts each frame's own spine (NTU's
   ``pre_normalization``); ``"none"`` keeps camera coordinates.
2. ``align="none"`` (CTR-GCN); ``"shoulders"`` rotates each sequence about the vertical (y) axis so that
   its first frame's left -> right shoulder vector points along +x in the x-z plane: the body faces the
   same way in every view, which removes most of the difference between the cameras.
3. ``scaling="minmax"``: per sequence and axis, ``2 (x - min) / (max - min) - 1`` over all its frames and
   joints (CTR-GCN), so every sequence fills ``[-1, 1]^3``; ``"torso"`` divides by the mean spine ->
   shoulder-centre length (scale, not aspect, normalised); ``"none"`` keeps metres.

CTR-GCN then samples 52 frames (random with replacement while training, evenly spaced when testing)
and trains with random rotations of +-60 degrees about x and y and scales in [0.5, 1.5]. Here the valid
frames are kept as they are, zero-padded to the longest sequence (``num_frames`` holds each length), and the
suite's own temporal crops and resizing (64 frames: :func:`usdrl_bench.data.augment.resize_valid`) apply,
as for every dataset. Augmentations belong to the pretraining views (``views: {rotation: ...}``), not here.

**Short sequences.** 10 sequences have fewer than 10 frames; ``a02_s09_e04_v02`` (training) has one. They
are kept: a one-frame sequence is resized to 64 copies of its frame (a still pose; its motion stream is
zero), and random crops take short sequences whole. ``min_frames`` drops sequences shorter than it
(default 1: none dropped).

Source of the facts: CTR-GCN (Chen et al., ICCV 2021) ``feeders/feeder_ucla.py`` (centre, min-max scaling,
52 frames, bone pairs); the dataset's documentation (joint order, action names).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from usdrl_bench.data.arrays import SkeletonArrays, split_by_rule
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.normalize import Align, Centre, Scaling, normalize_sequence
from usdrl_bench.data.root import DATA_ROOT_ENV
from usdrl_bench.data.registration import register_dataset
from usdrl_bench.skeleton import NWUCLA20

FILE_NAME = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_v(\d{2})\.json")
SEQUENCES_FOLDER = "all_sqe"
#: folders under the data root that may hold ``all_sqe/`` (the first found is used)
ROOT_FOLDERS: tuple[str, ...] = ("nwucla", "NW-UCLA")
NUM_JOINTS = 20
#: the joint that ends the torso for ``scaling="torso"`` (0-based; Kinect v1's shoulder centre)
SHOULDER_CENTRE = 2
#: the dataset's action ids, in label order (label 1 = a01, ..., label 10 = a12)
ACTIONS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12)
CLASS_NAMES: tuple[str, ...] = (
    "pick up with one hand", "pick up with two hands", "drop trash", "walk around", "sit down", "stand up",
    "donning", "doffing", "throw", "carry",
)
#: expected cross-view counts (train, test): CTR-GCN's lists
XVIEW_COUNTS = (1020, 464)
NWUCLA_SPLITS = {"xview": lambda meta: meta["camera"].isin((1, 2)).to_numpy()}
SITE = "http://wangjiangb.github.io/my_data.html"


def read_sequence(file: str | Path) -> tuple[np.ndarray, int]:
    """One ``aAA_sSS_eEE_vVV.json``: ``(skeletons (T, 20, 3) float32, label 1-10)``.

    Raises:
        DataFormatError: (naming the file) not JSON, no ``skeletons`` or ``label``, skeletons that are
            not ``T x 20 x 3`` finite numbers with ``T >= 1``, or a label that disagrees with the file
            name's action.
    """
    file = Path(file)
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise DataFormatError(file, f"not valid JSON ({exc.__class__.__name__}: {exc})", line=line) from None
    if not isinstance(content, dict) or "skeletons" not in content or "label" not in content:
        raise DataFormatError(file, "expected an object with keys 'file_name', 'label' and 'skeletons'")
    try:
        skeletons = np.asarray(content["skeletons"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataFormatError(file, "'skeletons' is not a rectangular T x 20 x 3 array of numbers") from None
    if skeletons.ndim != 3 or skeletons.shape[1:] != (NUM_JOINTS, 3) or len(skeletons) < 1:
        raise DataFormatError(file, f"'skeletons' must be T x {NUM_JOINTS} x 3 with T >= 1, got shape {skeletons.shape}")
    if not np.isfinite(skeletons).all():
        frame = int(np.flatnonzero(~np.isfinite(skeletons).reshape(len(skeletons), -1).all(axis=1))[0])
        raise DataFormatError(file, f"non-finite coordinate in frame {frame} (0-based)")
    label = content["label"]
    if not isinstance(label, int) or not 1 <= label <= len(ACTIONS):
        raise DataFormatError(file, f"'label' must be an integer in 1-{len(ACTIONS)}, got {label!r}")
    m = FILE_NAME.fullmatch(file.name)
    if m and int(m.group(1)) != ACTIONS[label - 1]:
        raise DataFormatError(file, f"label {label} is action a{ACTIONS[label - 1]:02d}, but the file name says a{m.group(1)}")
    return skeletons.astype(np.float32), label


def preprocess(x: np.ndarray, *, centre: Centre = "first_frame", align: Align = "none",
               scaling: Scaling = "minmax") -> np.ndarray:
    """The per-sequence preprocessing of the module docstring on one ``(T, 20, 3)`` sequence (metres):
    :func:`~usdrl_bench.data.normalize.normalize_sequence` with the NW-UCLA layout, the torso ending at joint 3
    (shoulder centre).

    Returns:
        a new ``(T, 20, 3)`` float32 array.
    Raises:
        ValueError: an unknown option value.
    """
    return normalize_sequence(x, NWUCLA20, centre=centre, align=align, scaling=scaling, neck=SHOULDER_CENTRE)


def locate_nwucla(root: str | Path) -> Path:
    """The ``all_sqe`` folder of NW-UCLA under the data root ``root`` (``nwucla/all_sqe`` or
    ``NW-UCLA/all_sqe``): the registered ``locate`` of ``nwucla_xview``.

    Raises:
        FileNotFoundError: neither is there; the message says where to get the data and where to put it.
    """
    base = Path(root)
    for folder in ROOT_FOLDERS:
        if (base / folder / SEQUENCES_FOLDER).is_dir():
            return base / folder / SEQUENCES_FOLDER
    raise FileNotFoundError(
        f"dataset nwucla_xview not found: expected {base / ROOT_FOLDERS[0] / SEQUENCES_FOLDER} (or "
        f"{base / ROOT_FOLDERS[1] / SEQUENCES_FOLDER}) holding aAA_sSS_eEE_vVV.json files, the layout of CTR-GCN's "
        f"data/NW-UCLA/all_sqe (dataset: {SITE}). The data root is --data-root or ${DATA_ROOT_ENV} (now {base})")


@register_dataset(
    "nwucla",
    description="NW-UCLA Multiview Action3D (Kinect v1, 20 joints, 10 actions), CTR-GCN's all_sqe JSON; cross-view",
    splits=("xview",), default_split="xview",
)
def load_nwucla(
    path: str | Path,
    split: str = "xview",
    *,
    centre: Centre = "first_frame",
    align: Align = "none",
    scaling: Scaling = "minmax",
    min_frames: int = 1,
    check_counts: bool = True,
) -> tuple[SkeletonArrays, SkeletonArrays]:
    """Read NW-UCLA and return the cross-view (train, test) split.

    Args:
        path: the ``all_sqe`` folder, or a folder holding it (by name, ``nwucla_xview``: found under the data
            root by :func:`locate_nwucla`).
        split: ``xview`` (train v01 + v02, test v03).
        centre, align, scaling: the preprocessing switches of the module docstring (defaults: CTR-GCN's).
        min_frames: drop sequences with fewer frames (default 1: keep all, the one-frame one included).
        check_counts: require the full release's 1,020 / 464 split when every file is read (a folder
            holding only some of the files turns this off; a subset drawn by ``min_frames`` is not checked).

    Returns:
        ``(train, test)``: ``data`` ``(N, 3, T, 20, 1)`` float32 zero-padded to the longest sequence,
        labels 0-9, meta subject = sSS, camera = view, repetition = episode, setup = -1; layout
        ``nwucla20``.

    Raises:
        KeyError: unknown ``split``.
        FileNotFoundError: no such folder, or no ``aAA_sSS_eEE_vVV.json`` file in it.
        DataFormatError: a malformed file (named); ValueError: the split counts differ from 1,020 / 464 on
            a full folder, or an unknown option value.
    """
    if split not in NWUCLA_SPLITS:
        raise KeyError(f"Unknown split {split!r} for nwucla; available: {', '.join(NWUCLA_SPLITS)}")
    folder = Path(path)
    if folder.is_dir() and (folder / SEQUENCES_FOLDER).is_dir():
        folder = folder / SEQUENCES_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"NW-UCLA folder not found: {folder}")
    files = sorted(f for f in folder.iterdir() if FILE_NAME.fullmatch(f.name))
    if not files:
        raise FileNotFoundError(f"no aAA_sSS_eEE_vVV.json files in {folder}")
    sequences, labels, names, meta_rows = [], [], [], []
    for f in files:
        skeletons, label = read_sequence(f)
        if len(skeletons) < min_frames:
            continue
        action, subject, episode, view = (int(g) for g in FILE_NAME.fullmatch(f.name).groups())  # type: ignore[union-attr]
        sequences.append(preprocess(skeletons, centre=centre, align=align, scaling=scaling))
        labels.append(label - 1)
        names.append(f.name[: -len(".json")])
        meta_rows.append((subject, view, -1, episode))
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    data = np.zeros((len(sequences), 3, int(lengths.max()), NUM_JOINTS, 1), dtype=np.float32)
    for i, s in enumerate(sequences):
        data[i, :, : len(s), :, 0] = s.transpose(2, 0, 1)
    meta = pd.DataFrame(meta_rows, columns=["subject", "camera", "setup", "repetition"])
    full = SkeletonArrays(
        data=data, labels=np.array(labels), num_frames=lengths, meta=meta, names=names, num_classes=len(ACTIONS),
        layout=NWUCLA20.name, class_names=list(CLASS_NAMES), source=str(folder),
        extra={"split": split, "centre": centre, "align": align, "scaling": scaling, "min_frames": min_frames},
    )
    train, test = split_by_rule(full, split, NWUCLA_SPLITS)
    if check_counts and min_frames <= 1 and len(files) == sum(XVIEW_COUNTS):
        if (len(train), len(test)) != XVIEW_COUNTS:
            raise ValueError(f"nwucla: {folder} gives {len(train)} / {len(test)} training / test sequences; the "
                             f"cross-view protocol has {XVIEW_COUNTS[0]} / {XVIEW_COUNTS[1]}")
    return train, test


# the same reader, addressed by name: with no path it looks under the data root (locate_nwucla)
register_dataset(
    "nwucla_xview",
    description="NW-UCLA cross-view under the data root (nwucla/all_sqe or NW-UCLA/all_sqe)",
    splits=("xview",), default_split="xview", locate=locate_nwucla,
)(load_nwucla)
