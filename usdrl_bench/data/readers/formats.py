"""Readers for the other preprocessed formats in common use.

* ``ctrgcn_npz``: CTR-GCN / SGN ``NTU60_CS.npz`` ... (FACTS §3B item 7): ``x_train (N, T, 150)`` with
  body 1's 25 joints × xyz then body 2's, one-hot ``y_train (N, K)``, and ``x_test``/``y_test``.
* ``pyskl``: the pyskl / mmaction2 annotation pickle (``ntu60_3danno.pkl`` ...): ``{"split": {"xsub_train":
  [names], ...}, "annotations": [{"frame_dir", "label", "keypoint" (M, T, V, C), "total_frames"}, ...]}``.
* ``pku_pickle``: the PKU-MMD II pickles the USDRL / FSM code reads (FACTS §4): ``PKUv2_xsub_{train,val}.pkl``,
  a dict with ``data`` (items ``3 × T × 25 × 2``), ``num_frames`` and 1-based ``label``.
  :func:`read_pku_v1_windows` reads the Phase-1 detection windows (``PKUv1_xsub_{train,val}.pkl``).

Every reader checks the layout it is given against the one it expects and says which it assumed
(``extra["assumed"]``, logged and printed by ``usdrl-bench run``); nothing is inferred silently. The
arrays are converted once, a chunk at a time, into ``(N, 3, T, V, M)`` ``.npy`` files in a cache (like
:mod:`usdrl_bench.data.readers.ntu_raw`'s) and memory-mapped afterwards.

Pickles can run code when loaded: read them only from sources you trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from usdrl_bench.data.arrays import META_COLUMNS, SkeletonArrays
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.safe_pickle import load_pickle
from usdrl_bench.data.npy_writer import NpyRowWriter
from usdrl_bench.data.readers.ntu_raw import parse_ntu_name
from usdrl_bench.data.registration import register_dataset
from usdrl_bench.skeleton import LAYOUTS

log = logging.getLogger(__name__)

CACHE_VERSION = 1
_CHUNK = 512
#: ``NTU{60,120}_{CS,CV,CSub,CSet}.npz`` per split name.
CTRGCN_FILES = {"xsub": ("NTU60_CS.npz", "NTU120_CSub.npz"), "xview": ("NTU60_CV.npz",), "xset": ("NTU120_CSet.npz",)}


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/usdrl-bench/formats`` (``~/.cache/usdrl-bench/formats`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "usdrl-bench" / "formats"


def _cache_dir(source: Path, options: dict, cache_dir: str | Path | None) -> Path:
    st = source.stat()
    key = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "source": str(source.resolve()), "size": st.st_size,
                                     "mtime": st.st_mtime_ns, "options": options}, sort_keys=True).encode()).hexdigest()[:20]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    return root / key


def _convert(target: Path, parts: dict[str, tuple[int, tuple[int, ...], Iterator[tuple[int, np.ndarray]]]]) -> None:
    """Write each part's rows (``(start, rows)`` chunks) to ``<part>_data_joint.npy`` in a temporary sibling
    directory, then rename it to ``target`` (an interrupted conversion leaves no half cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        for part, (n, row_shape, chunks) in parts.items():
            with NpyRowWriter(tmp / f"{part}_data_joint.npy", row_shape, n) as writer:
                for start, rows in chunks:
                    writer.write(start, rows)
        (tmp / "done").write_text("1")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "done").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _valid_frames(x: np.ndarray) -> np.ndarray:
    """``(N,)`` frames up to the last non-zero one of ``(N, C, T, V, M)`` (at least 1)."""
    nonzero = np.any(x != 0, axis=(1, 3, 4))  # N, T
    last = np.where(nonzero.any(axis=1), x.shape[2] - np.argmax(nonzero[:, ::-1], axis=1), 1)
    return last.astype(np.int64)


def _meta(names: Sequence[str]) -> pd.DataFrame:
    rows = []
    for n in names:
        parsed = parse_ntu_name(n)
        rows.append({c: (parsed[c] if parsed else -1) for c in META_COLUMNS})
    return pd.DataFrame(rows, columns=list(META_COLUMNS)).astype(np.int64)


# --- CTR-GCN npz ----------------------------------------------------------------------------------------


def _npz_member(zf: zipfile.ZipFile, name: str, file: Path) -> tuple[Any, tuple[int, ...], np.dtype]:
    """An open stream on ``name.npy`` inside the npz, positioned after its header."""
    member = f"{name}.npy"
    if member not in zf.namelist():
        raise DataFormatError(file, f"no array {name!r} (found: {', '.join(n[:-4] for n in zf.namelist())}); "
                                    f"expected the CTR-GCN keys x_train, y_train, x_test, y_test")
    fh = zf.open(member)
    version = np.lib.format.read_magic(fh)
    shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version[0] == 1 else
                             np.lib.format.read_array_header_2_0(fh))
    if fortran:
        raise DataFormatError(file, f"{name}: Fortran-order arrays are not supported")
    return fh, tuple(shape), np.dtype(dtype)


def _read_rows(fh, shape: tuple[int, ...], dtype: np.dtype, count: int) -> np.ndarray:
    """The next ``count`` rows of an open npy member stream."""
    row = int(np.prod(shape[1:])) * dtype.itemsize
    raw = fh.read(row * count)
    return np.frombuffer(raw, dtype=dtype).reshape((count,) + shape[1:])


def _ctrgcn_labels(zf: zipfile.ZipFile, key: str, n: int, file: Path) -> tuple[np.ndarray, int]:
    """``(labels, number of classes)``: from one-hot rows (their width) or class ids (largest + 1)."""
    fh, shape, dtype = _npz_member(zf, key, file)
    y = _read_rows(fh, shape, dtype, shape[0]) if shape else np.zeros(0)
    if y.ndim == 1:
        labels = y.astype(np.int64)
        width = int(labels.max()) + 1 if len(labels) else 0
    elif y.ndim == 2 and np.allclose(y.sum(axis=1), 1) and np.isin(y, (0, 1)).all():
        labels, width = y.argmax(axis=1).astype(np.int64), y.shape[1]
    else:
        raise DataFormatError(file, f"{key}: expected one-hot labels (N, K) or class ids (N,), got shape {y.shape}")
    if len(labels) != n:
        raise DataFormatError(file, f"{key}: {len(labels)} labels for {n} samples")
    return labels, width


@register_dataset("ctrgcn_npz", description="CTR-GCN/SGN NTU60_CS.npz-style arrays (x (N, T, 150), one-hot y)",
                  splits=("xsub", "xview", "xset"), default_split="xsub")
def load_ctrgcn_npz(path: str | Path, split: str = "xsub", *, num_classes: int | None = None,
                    cache_dir: str | Path | None = None) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) from a CTR-GCN ``.npz`` (or a folder holding ``NTU60_CS.npz`` / ``NTU60_CV.npz`` /
    ``NTU120_CSub.npz`` / ``NTU120_CSet.npz``, picked by ``split``).

    Each row of ``x`` is read as T frames × (body 1: 25 joints × xyz, body 2: the same), the CTR-GCN layout
    (FACTS §3B); samples become ``(3, T, 25, 2)``. ``num_frames`` counts up to the last non-zero frame
    (the format stores none). Sample names are ``<file stem>_<part>_<index>`` (the format has none), so
    metadata are -1.

    Args:
        num_classes: default: the width of the one-hot labels.
        cache_dir: where the converted arrays are kept (default :func:`default_cache_root`).

    Raises:
        FileNotFoundError: no such file / no file for ``split`` in the folder.
        DataFormatError: missing keys, a row width that is not 150, labels that are not one-hot.
    """
    path = Path(path)
    if path.is_dir():
        found = [path / f for f in CTRGCN_FILES.get(split, ()) if (path / f).is_file()]
        if not found:
            raise FileNotFoundError(f"no {' or '.join(CTRGCN_FILES.get(split, ('?',)))} in {path} for split {split!r}")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"CTR-GCN npz not found: {path}")
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DataFormatError(path, f"not an .npz archive ({exc})") from None
    with zf:
        info = {}
        for part, key in (("train", "x_train"), ("test", "x_test")):
            fh, shape, dtype = _npz_member(zf, key, path)
            fh.close()
            if len(shape) != 3 or shape[2] != 150:
                raise DataFormatError(path, f"{key}: expected (N, T, 150) = 2 bodies x 25 joints x xyz per frame, got {shape}")
            info[part] = shape
        read = {part: _ctrgcn_labels(zf, f"y_{part}", info[part][0], path) for part in info}
    labels = {part: r[0] for part, r in read.items()}
    k = num_classes or max(r[1] for r in read.values())
    assumed = (f"{path.name}: x (N, T, 150) read as T frames x 2 bodies x 25 joints (NTU order) x xyz, "
               f"the CTR-GCN layout; labels from one-hot y ({k} classes); valid frames up to the last non-zero one")
    log.info("ctrgcn_npz: %s", assumed)
    cache = _cache_dir(path, {"format": "ctrgcn_npz"}, cache_dir)
    if not (cache / "done").is_file():
        def chunks(key: str, n: int) -> Iterator[tuple[int, np.ndarray]]:
            with zipfile.ZipFile(path) as z:
                fh, shape, dtype = _npz_member(z, key, path)
                with fh:
                    for start in range(0, n, _CHUNK):
                        rows = _read_rows(fh, shape, dtype, min(_CHUNK, n - start))
                        t = rows.shape[1]
                        yield start, rows.reshape(len(rows), t, 2, 25, 3).transpose(0, 4, 1, 3, 2)

        _convert(cache, {part: (shape[0], (3, shape[1], 25, 2), chunks(f"x_{part}", shape[0]))
                         for part, shape in info.items()})
    out = []
    for part in ("train", "test"):
        data = np.load(cache / f"{part}_data_joint.npy", mmap_mode="r")
        frames = np.concatenate([_valid_frames(np.asarray(data[i:i + _CHUNK])) for i in range(0, len(data), _CHUNK)]) \
            if len(data) else np.zeros(0, np.int64)
        names = [f"{path.stem}_{part}_{i:06d}" for i in range(len(data))]
        out.append(SkeletonArrays(data=data, labels=labels[part], num_frames=frames, meta=_meta(names), names=names,
                                  num_classes=k, layout="ntu25", source=str(path),
                                  extra={"split": split, "assumed": assumed, "cache_dir": str(cache)}))
    return out[0], out[1]


# --- pyskl / mmaction2 annotation pickle -----------------------------------------------------------------


def _load_pickle(path: Path) -> Any:
    """A dataset pickle through the restricted unpickler (:mod:`usdrl_bench.data.safe_pickle`): no code runs."""
    return load_pickle(path)


def read_pyskl(path: Path, split: str, required: tuple[str, ...] = ("frame_dir", "label", "keypoint")
               ) -> tuple[list, dict[str, dict], dict[str, list[str]]]:
    """A pyskl / mmaction2 annotation pickle ``{split, annotations}`` (through the restricted unpickler):
    ``(annotations, {frame_dir: annotation}, {"train": names, "test": names})`` with the names of
    ``split["<split>_train"]`` and ``split["<split>_val"]``.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: not that dict, an unknown split key, an annotation without the ``required`` keys,
            names of the split without an annotation.
    """
    obj = _load_pickle(path)
    if not isinstance(obj, dict) or "split" not in obj or "annotations" not in obj:
        raise DataFormatError(path, "expected a dict with keys 'split' and 'annotations' (the pyskl format)")
    splits, annotations = obj["split"], obj["annotations"]
    keys = (f"{split}_train", f"{split}_val")
    if any(k not in splits for k in keys):
        raise DataFormatError(path, f"split keys {keys} not found; the file has {', '.join(sorted(splits))}")
    by_name = {}
    for i, a in enumerate(annotations):
        if not isinstance(a, dict) or not set(required) <= set(a):
            raise DataFormatError(path, f"annotation {i} lacks {' / '.join(required)}")
        by_name[str(a["frame_dir"])] = a
    parts = {}
    for part, key in zip(("train", "test"), keys):
        names = [str(n) for n in splits[key]]
        missing = [n for n in names if n not in by_name]
        if missing:
            raise DataFormatError(path, f"{len(missing)} names of split {key!r} have no annotation (e.g. {missing[0]})")
        parts[part] = names
    return annotations, by_name, parts


@register_dataset("pyskl", description="pyskl/mmaction2 annotation pickle ({'split', 'annotations'}), 3-D keypoints",
                  splits=("xsub", "xview", "xset"), default_split="xsub")
def load_pyskl(path: str | Path, split: str = "xsub", *, num_classes: int | None = None, max_frames: int | None = None,
               cache_dir: str | Path | None = None) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) from a pyskl annotation pickle: the names of ``split["<split>_train"]`` and
    ``split["<split>_val"]``, each annotation's ``keypoint (M, T, V, C)`` read as M bodies × T frames × V
    joints × xyz and written ``(3, T, V, M)``, zero-padded to the longest sequence (or ``max_frames``)
    and to the largest M; ``num_frames`` = ``total_frames``.

    Raises:
        FileNotFoundError: no such file.
        DataFormatError: missing ``split`` / ``annotations`` keys, an unknown split key, names without an
            annotation, 2-D keypoints (C = 2: the encoders take 3-D joints), a V with no known layout.
    """
    path = Path(path)
    _, by_name, parts = read_pyskl(path, split)
    first = next(iter(by_name.values()), None)
    if first is None:
        raise DataFormatError(path, "no annotations")
    kp = np.asarray(first["keypoint"])
    if kp.ndim != 4:
        raise DataFormatError(path, f"keypoint of {first['frame_dir']}: expected (M, T, V, C), got shape {kp.shape}")
    V, C = kp.shape[2], kp.shape[3]
    if C != 3:
        raise DataFormatError(path, f"keypoints have C={C} coordinates; only 3-D joints (C=3, e.g. ntu60_3danno.pkl) "
                                    "are read here; 2-D HRNet keypoints (C=2, ntu60_hrnet.pkl) are read by the pyskl_2d reader")
    layout = next((name for name, lay in LAYOUTS.items() if lay.num_joints == V), None)
    if layout is None:
        raise DataFormatError(path, f"V={V} joints matches no known layout ({', '.join(LAYOUTS)})")
    used = [by_name[n] for names in parts.values() for n in names]
    T = max_frames or max(np.asarray(a["keypoint"]).shape[1] for a in used)
    M = max(np.asarray(a["keypoint"]).shape[0] for a in used)
    k = num_classes or (max(int(a["label"]) for a in used) + 1)
    assumed = (f"{path.name}: keypoint (M, T, V, C) read as bodies x frames x {V} joints ({layout}) x xyz, padded "
               f"to T={T}, M={M}; labels 0-based ({k} classes)")
    log.info("pyskl: %s", assumed)
    cache = _cache_dir(path, {"format": "pyskl", "split": split, "T": T, "M": M}, cache_dir)
    if not (cache / "done").is_file():
        def chunks(names: list[str]) -> Iterator[tuple[int, np.ndarray]]:
            for start in range(0, len(names), _CHUNK):
                block = np.zeros((min(_CHUNK, len(names) - start), 3, T, V, M), dtype=np.float32)
                for j, n in enumerate(names[start:start + _CHUNK]):
                    x = np.asarray(by_name[n]["keypoint"], dtype=np.float32)  # M, T, V, C
                    if x.shape[2:] != (V, 3):
                        raise DataFormatError(path, f"keypoint of {n}: shape {x.shape}, expected (M, T, {V}, 3)")
                    t = min(x.shape[1], T)
                    block[j, :, :t, :, : x.shape[0]] = x[:, :t].transpose(3, 1, 2, 0)
                yield start, block

        _convert(cache, {part: (len(names), (3, T, V, M), chunks(names)) for part, names in parts.items()})
    out = []
    for part, names in parts.items():
        frames = np.array([min(int(by_name[n].get("total_frames", np.asarray(by_name[n]["keypoint"]).shape[1])), T)
                           for n in names], dtype=np.int64)
        labels = np.array([int(by_name[n]["label"]) for n in names], dtype=np.int64)
        out.append(SkeletonArrays(data=np.load(cache / f"{part}_data_joint.npy", mmap_mode="r"), labels=labels,
                                  num_frames=np.maximum(frames, 1), meta=_meta(names), names=names, num_classes=k,
                                  layout=layout, source=str(path), extra={"split": split, "assumed": assumed}))
    return out[0], out[1]


# --- PKU-MMD pickles of the USDRL / FSM code ----------------------------------------------------------------


def _pku_file(path: Path, phase: int, split: str, part: str) -> Path:
    name = f"PKUv{phase}_{split}_{part}.pkl"
    if path.is_file():
        return path.with_name(name)
    return path / name


@register_dataset("pku_pickle", description="PKU-MMD II pickles of the USDRL/FSM code (PKUv2_xsub_{train,val}.pkl)",
                  splits=("xsub", "xview"), default_split="xsub")
def load_pku_pickle(path: str | Path, split: str = "xsub", *, num_classes: int = 51, max_frames: int | None = None,
                    cache_dir: str | Path | None = None) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) from ``PKUv2_<split>_train.pkl`` and ``PKUv2_<split>_val.pkl`` in ``path`` (a folder,
    or one of the two files): dicts with ``data`` (items ``(3, T, 25, 2)``), ``num_frames`` and 1-based
    ``label`` (FACTS §4; labels keep the phase-1 id space, so 51 classes by default).

    Raises:
        FileNotFoundError: a file is missing.
        DataFormatError: missing keys, lengths that differ, items that are not ``(3, T, 25, 2)``, labels
            outside ``1..num_classes``.
    """
    path = Path(path)
    out = []
    for part, which in (("train", "train"), ("test", "val")):
        file = _pku_file(path, 2, split, which)
        obj = _load_pickle(file)
        if not isinstance(obj, dict) or not {"data", "num_frames", "label"} <= set(obj):
            raise DataFormatError(file, "expected a dict with keys data, num_frames, label (the USDRL PKU-MMD II pickle)")
        data, frames, labels = obj["data"], np.asarray(obj["num_frames"]).reshape(-1), np.asarray(obj["label"]).reshape(-1)
        if not len(data) == len(frames) == len(labels):
            raise DataFormatError(file, f"{len(data)} samples, {len(frames)} frame counts, {len(labels)} labels")
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise DataFormatError(file, f"labels span {labels.min()}..{labels.max()}; expected 1-based ids 1..{num_classes}")
        shapes = {np.asarray(x).shape for x in data}
        if any(len(s) != 4 or s[0] != 3 or s[2] != 25 for s in shapes):
            raise DataFormatError(file, f"items must be (3, T, 25, M); found shapes {sorted(shapes)[:3]}")
        T = max_frames or max(s[1] for s in shapes)
        M = max(s[3] for s in shapes)
        block = np.zeros((len(data), 3, T, 25, M), dtype=np.float32)
        for i, x in enumerate(data):
            x = np.asarray(x, dtype=np.float32)
            t = min(x.shape[1], T)
            block[i, :, :t, :, : x.shape[3]] = x[:, :t]
        names = [f"pkuv2_{split}_{which}_{i:05d}" for i in range(len(data))]
        assumed = (f"{file.name}: data items (3, T, 25, M), T padded to {T}; labels 1-based ids, made 0-based "
                   f"({num_classes} classes, the phase-1 id space); num_frames clamped to [1, {T}]")
        log.info("pku_pickle: %s", assumed)
        out.append(SkeletonArrays(data=block, labels=labels.astype(np.int64) - 1,
                                  num_frames=np.clip(frames.astype(np.int64), 1, T), meta=_meta(names), names=names,
                                  num_classes=num_classes, layout="ntu25", source=str(file),
                                  extra={"split": split, "assumed": assumed}))
    return out[0], out[1]


def read_pku_v1_windows(path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The PKU-MMD I detection windows of the USDRL / FSM code (``PKUv1_xsub_{train,val}.pkl``, FACTS §4):
    a list of dicts with ``name`` (the video's label file, e.g. ``0291-L.txt``), ``data`` ``(3, 64, 25, 2)``
    and ``label``, 64 per-frame ints (0 = background, 1-51 = action).

    Returns:
        ``(data (N, 3, 64, 25, 2) float32, frame_labels (N, 64) int64, names)`` in file order (windows tile
        each video in temporal order, which the official scorer relies on).

    Raises:
        DataFormatError: not a list of such dicts, a window that is not 64 frames, labels outside 0..51.
    """
    path = Path(path)
    obj = _load_pickle(path)
    if not isinstance(obj, list) or not all(isinstance(w, dict) and {"name", "data", "label"} <= set(w) for w in obj):
        raise DataFormatError(path, "expected a list of dicts with keys name, data, label (the USDRL PKU-MMD I windows)")
    data = np.zeros((len(obj), 3, 64, 25, 2), dtype=np.float32)
    labels = np.zeros((len(obj), 64), dtype=np.int64)
    for i, w in enumerate(obj):
        x = np.asarray(w["data"], dtype=np.float32)
        if x.size != 3 * 64 * 25 * 2:
            raise DataFormatError(path, f"window {i} ({w['name']}): {x.shape}, expected 3 x 64 x 25 x 2")
        data[i] = x.reshape(3, 64, 25, 2)
        y = np.asarray(w["label"]).reshape(-1)
        if len(y) != 64 or y.min() < 0 or y.max() > 51:
            raise DataFormatError(path, f"window {i} ({w['name']}): labels must be 64 ints in 0..51")
        labels[i] = y
    log.info("pku v1 windows: %s: %d windows of 64 frames, per-frame labels 0 = background, 1-51 = actions",
             path.name, len(obj))
    return data, labels, [str(w["name"]) for w in obj]


