"""Reader for NTU RGB+D 60 / 120 raw ``.skeleton`` directories, prepared the 2s-AGCN / UmURL way.

The text format (FACTS §1) follows ``NTU:Matlab/read_skeleton_file.m``; body selection and
normalisation follow ``UmURL:data_gen/ntu_gendata.py`` and ``preprocess.py`` (FACTS §3A), which is
how the official USDRL data were made:

1. up to 4 bodies per frame, by their order inside the frame (not tracked by body id);
2. energy of a body = std(x) + std(y) + std(z) over its non-zero frames; keep the 2 most energetic;
3. ``(C=3, T=300, V=25, M=2)`` float32, zero-filled; ``num_frames`` = the header frame count;
4. :func:`usdrl_bench.data.preprocess.pre_normalization` (z alignment off, as in UmURL).

Differences from the official script, all documented in :func:`load_ntu_raw`: samples are sorted by
name (the official order is ``os.listdir``'s), sequences longer than ``max_frames`` are truncated
(the official script would fail), equal energies keep the body order, and the result is cached.

Example::

    from usdrl_bench.data.registration import register_dataset
    train, test = DATASETS.get("ntu_raw")("data/nturgb+d_skeletons", split="xsub")
    train.data.shape  # (N, 3, 300, 25, 2), a read-only memory map
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from numpy.lib.format import open_memmap

from usdrl_bench.data.arrays import META_COLUMNS, NTU_SPLITS, SkeletonArrays, split_by_rule
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.preprocess import pre_normalization
from usdrl_bench.data.progress import progress_bar
from usdrl_bench.data.registration import register_dataset
from usdrl_bench.skeleton import NTU25

log = logging.getLogger(__name__)

#: ``SsssCcccPpppRrrrAaaa`` (FACTS §1), e.g. ``S001C002P003R002A013``.
NTU_NAME = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
SUFFIX = ".skeleton"
NUM_JOINTS = 25
BODY_INFO_VALUES = 10  # bodyID clipedEdges handLeft{Confidence,State} handRight{..} isResticted leanX leanY trackingState
JOINT_VALUES = 12  # x y z depthX depthY colorX colorY orientation{W,X,Y,Z} trackingState
NTU60_MAX_SETUP = 17

#: Official missing-skeleton lists (FACTS §1), looked for beside the data (see :func:`find_missing_lists`).
MISSING_LIST_NAMES: tuple[str, ...] = (
    "samples_with_missing_skeletons.txt",
    "NTU_RGBD_samples_with_missing_skeletons.txt",
    "NTU_RGBD120_samples_with_missing_skeletons.txt",
)
CLASS_NAMES_CSV = "ntu120_actions.csv"
META_DIR = "ntu_meta"

CACHE_VERSION = 1
_CHUNK = 256  # samples parsed and normalised at a time (bounds memory for the full dataset)


# --- names -----------------------------------------------------------------------------------------


def parse_ntu_name(name: str) -> dict[str, int] | None:
    """``{"setup", "camera", "subject", "repetition", "action"}`` (1-based ints) from a name like
    ``S001C002P003R002A013`` (optionally followed by a suffix such as ``.skeleton``); ``None`` when the
    name does not start with that pattern."""
    m = NTU_NAME.match(name)
    if m is None:
        return None
    setup, camera, subject, repetition, action = (int(g) for g in m.groups())
    return {"setup": setup, "camera": camera, "subject": subject, "repetition": repetition, "action": action}


# --- the .skeleton text format ---------------------------------------------------------------------


def _scan(text: str, file: str | Path, num_joints: int) -> tuple[list[str], int, list[tuple[int, int, str, int]]]:
    """Walk the structure of a ``.skeleton`` text: ``(lines, frame count, blocks)`` where each block is
    ``(frame, body slot in the frame, bodyID, index of its first joint line)``, for every body.

    Raises:
        DataFormatError: a count, a body-info line or the file length does not follow FACTS §1.
    """
    lines = text.splitlines()
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    pos = 0

    def read_count(what: str) -> int:
        nonlocal pos
        if pos >= end:
            raise DataFormatError(file, f"file ends early; expected {what}", line=pos + 1)
        line = lines[pos].strip()
        try:
            value = int(line)
        except ValueError:
            raise DataFormatError(file, f"expected {what} (one integer), got {line[:80]!r}", line=pos + 1) from None
        if value < 0:
            raise DataFormatError(file, f"expected {what} (a non-negative integer), got {value}", line=pos + 1)
        pos += 1
        return value

    num_frames = read_count("the frame count")
    blocks: list[tuple[int, int, str, int]] = []
    for frame in range(num_frames):
        num_bodies = read_count(f"the body count of frame {frame + 1}/{num_frames}")
        for body in range(num_bodies):
            if pos >= end:
                raise DataFormatError(file, f"file ends early; expected the body-info line of body {body + 1} in frame {frame + 1}", line=pos + 1)
            info = lines[pos].split()
            if len(info) != BODY_INFO_VALUES:
                raise DataFormatError(
                    file, f"expected a body-info line with {BODY_INFO_VALUES} values (frame {frame + 1}, body {body + 1}), got {len(info)} values", line=pos + 1
                )
            pos += 1
            n_joints = read_count(f"the joint count ({num_joints}) of body {body + 1} in frame {frame + 1}")
            if n_joints != num_joints:
                raise DataFormatError(file, f"expected {num_joints} joints per body, got {n_joints}", line=pos)
            if pos + n_joints > end:
                raise DataFormatError(
                    file, f"file ends early; expected {n_joints} joint lines for body {body + 1} in frame {frame + 1}", line=end + 1
                )
            blocks.append((frame, body, info[0], pos))
            pos += n_joints
    if pos < end:
        raise DataFormatError(
            file, f"unexpected content after the last frame (the header announces {num_frames} frames): {lines[pos].strip()[:80]!r}", line=pos + 1
        )
    return lines, num_frames, blocks


def _joint_xyz(lines: list[str], starts: Sequence[int], num_joints: int, file: str | Path) -> np.ndarray:
    """``(len(starts), num_joints, 3)`` float64 x, y, z of the joint blocks starting at ``starts``."""
    if not starts:
        return np.zeros((0, num_joints, 3))
    rows = _check_joint_rows(lines, starts, num_joints, file)
    try:
        xyz = np.array([r[:3] for r in rows], dtype=np.float64)
    except ValueError:
        xyz = None
    if xyz is None or not np.isfinite(xyz).all():
        _raise_first_bad_number(rows, starts, num_joints, file)
    return xyz.reshape(len(starts), num_joints, 3)  # type: ignore[union-attr]


def parse_skeleton(text: str, file: str | Path = "<string>", *, max_bodies: int = 4, num_joints: int = NUM_JOINTS) -> np.ndarray:
    """Parse the text of one NTU ``.skeleton`` file (FACTS §1).

    CRLF line endings and blank trailing lines are accepted. Bodies are stored by their order inside
    each frame; bodies after the first ``max_bodies`` of a frame are checked but dropped (as the
    official ``read_xyz`` with ``max_body=4`` does).

    Args:
        text: the whole file.
        file: the file name, for error messages.
        max_bodies: body slots kept per frame.
        num_joints: joints per body (25 for Kinect v2).

    Returns:
        ``(max_bodies, F, V, 3)`` float32 camera-space x, y, z (metres), zeros where a frame has
        fewer bodies; ``F`` is the frame count of the header.

    Raises:
        DataFormatError: naming the file and the 1-based line, and what was expected there.
    """
    lines, num_frames, blocks = _scan(text, file, num_joints)
    dropped = [b[3] for b in blocks if b[1] >= max_bodies]
    if dropped:  # still check the columns of dropped bodies
        _check_joint_rows(lines, dropped, num_joints, file)
    kept = [b for b in blocks if b[1] < max_bodies]
    out = np.zeros((max_bodies, num_frames, num_joints, 3), dtype=np.float32)
    if kept:
        xyz = _joint_xyz(lines, [b[3] for b in kept], num_joints, file)
        out[[b[1] for b in kept], [b[0] for b in kept]] = xyz
    return out


def parse_skeleton_bodies(text: str, file: str | Path = "<string>", *, num_joints: int = NUM_JOINTS) -> tuple[int, np.ndarray, list[str], np.ndarray]:
    """Parse a ``.skeleton`` text keeping the Kinect body ids (for pipelines that track bodies by id,
    e.g. the CTR-GCN / SGN denoising of :mod:`usdrl_bench.data.preparation.ctrgcn`).

    Returns:
        ``(num_frames, frame (K,) int, body_ids (K,), xyz (K, V, 3) float32)``: one entry per body
        block in file order (frame-major), ``num_frames`` as in the header.

    Raises:
        DataFormatError: as :func:`parse_skeleton`.
    """
    lines, num_frames, blocks = _scan(text, file, num_joints)
    xyz = _joint_xyz(lines, [b[3] for b in blocks], num_joints, file).astype(np.float32)
    return num_frames, np.array([b[0] for b in blocks], dtype=np.int64), [b[2] for b in blocks], xyz


def _check_joint_rows(lines: list[str], starts: Sequence[int], num_joints: int, file: str | Path) -> list[list[str]]:
    rows = [line.split() for s in starts for line in lines[s : s + num_joints]]
    for i, row in enumerate(rows):
        if len(row) != JOINT_VALUES:
            line = starts[i // num_joints] + i % num_joints + 1
            raise DataFormatError(file, f"expected a joint line with {JOINT_VALUES} values (x y z depthX depthY colorX colorY oW oX oY oZ state), got {len(row)}", line=line)
    return rows


def _raise_first_bad_number(rows: list[list[str]], starts: Sequence[int], num_joints: int, file: str | Path) -> None:
    for i, row in enumerate(rows):
        for token in row[:3]:
            try:
                ok = np.isfinite(float(token))
            except ValueError:
                ok = False
            if not ok:
                line = starts[i // num_joints] + i % num_joints + 1
                raise DataFormatError(file, f"expected finite numbers for x y z, got {' '.join(row[:3])!r}", line=line)
    raise AssertionError("unreachable")  # pragma: no cover


def read_skeleton_file(path: str | Path, *, max_bodies: int = 4) -> np.ndarray:
    """Read one ``.skeleton`` file; see :func:`parse_skeleton` (``(max_bodies, F, V, 3)`` float32)."""
    path = Path(path)
    return parse_skeleton(path.read_text(encoding="latin-1"), path, max_bodies=max_bodies)


def body_energy(bodies: np.ndarray) -> np.ndarray:
    """Per-body "energy" of ``(B, F, V, 3)``: std(x) + std(y) + std(z) over the body's non-zero frames
    (all joints pooled; population std), 0 for a body that never appears (FACTS §3A item 2)."""
    energy = np.zeros(len(bodies), dtype=np.float64)
    for b, body in enumerate(bodies):
        present = body[np.any(body != 0, axis=(1, 2))]
        if len(present):
            energy[b] = present.reshape(-1, 3).astype(np.float64).std(axis=0).sum()
    return energy


def select_bodies(bodies: np.ndarray, num_bodies: int = 2) -> np.ndarray:
    """Keep the ``num_bodies`` most energetic bodies of ``(B, F, V, 3)`` and return ``(3, F, V, M)``.

    Bodies of equal energy keep their slot order (a stable sort; the official ``argsort()[::-1]``
    reverses ties, which only matters for bodies that are absent or perfectly still).
    """
    order = np.argsort(-body_energy(bodies), kind="stable")[:num_bodies]
    picked = bodies[order]
    if len(picked) < num_bodies:
        picked = np.concatenate([picked, np.zeros((num_bodies - len(picked),) + picked.shape[1:], picked.dtype)])
    return np.ascontiguousarray(picked.transpose(3, 1, 2, 0))


def read_ntu_sample(path: str | Path, *, max_frames: int = 300, max_bodies: int = 4, num_bodies: int = 2) -> tuple[np.ndarray, int]:
    """One sample before normalisation: ``((3, max_frames, 25, num_bodies) float32, num_frames)``.

    ``num_frames`` is the header frame count clamped to ``[1, max_frames]``; frames beyond
    ``max_frames`` are dropped (after the body energies were computed on the whole sequence).
    """
    x = select_bodies(read_skeleton_file(path, max_bodies=max_bodies), num_bodies)
    out = np.zeros((3, max_frames, x.shape[2], num_bodies), dtype=np.float32)
    n = min(x.shape[1], max_frames)
    out[:, :n] = x[:, :n]
    return out, max(1, n)


def _read_sample_job(args: tuple[str, int, int, int]) -> tuple[np.ndarray, int]:
    path, max_frames, max_bodies, num_bodies = args
    return read_ntu_sample(path, max_frames=max_frames, max_bodies=max_bodies, num_bodies=num_bodies)


# --- side files: missing-skeleton lists and class names -----------------------------------------------


def find_missing_lists(directory: str | Path) -> list[Path]:
    """The official missing-skeleton lists found in ``directory`` or ``directory/../ntu_meta``.

    All of :data:`MISSING_LIST_NAMES` that exist are returned; their union is used (the NTU-120 list
    contains the NTU-60 one, FACTS §1).
    """
    directory = Path(directory)
    found = []
    for folder in (directory, directory.parent / META_DIR):
        for name in MISSING_LIST_NAMES:
            if (folder / name).is_file():
                found.append(folder / name)
    return found


def read_missing_list(path: str | Path) -> set[str]:
    """Sample names of a missing-skeleton list (one per line, ``.skeleton`` suffix optional).

    Lines before the first sample name are a header (the official files start with two sentences
    and a blank line, the CTR-GCN/CMD copies have none); blank lines are skipped.

    Raises:
        FileNotFoundError: the file does not exist.
        DataFormatError: a non-blank line after the first name is not an NTU sample name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing-skeleton list not found: {path}")
    names: set[str] = set()
    for i, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        line = raw.strip()
        if line.endswith(SUFFIX):
            line = line[: -len(SUFFIX)]
        if NTU_NAME.fullmatch(line):
            names.add(line)
        elif line and names:
            raise DataFormatError(path, f"expected a sample name like S001C002P005R002A008, got {line[:80]!r}", line=i)
    return names


def read_class_names(path: str | Path) -> list[str]:
    """Action names from a CSV with columns ``action`` (1-based) and ``name`` (``ntu120_actions.csv``)."""
    path = Path(path)
    table = pd.read_csv(path)
    if not {"action", "name"} <= set(table.columns):
        raise DataFormatError(path, f"expected columns 'action' and 'name', got {list(table.columns)}", line=1)
    table = table.sort_values("action")
    if table["action"].tolist() != list(range(1, len(table) + 1)):
        raise DataFormatError(path, "expected actions numbered 1, 2, ... without gaps")
    return [str(n) for n in table["name"]]


def _find_class_names_csv(directory: Path) -> Path | None:
    for folder in (directory, directory.parent / META_DIR):
        if (folder / CLASS_NAMES_CSV).is_file():
            return folder / CLASS_NAMES_CSV
    return None


# --- building and caching ------------------------------------------------------------------------


def _iter_samples(files: Sequence[Path], max_frames: int, max_bodies: int, num_bodies: int, num_workers: int) -> Iterator[tuple[np.ndarray, int]]:
    jobs = [(str(f), max_frames, max_bodies, num_bodies) for f in files]
    if num_workers > 1:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            yield from pool.map(_read_sample_job, jobs, chunksize=16)
    else:
        for job in jobs:
            yield _read_sample_job(job)


def _build(files: Sequence[Path], out: np.ndarray, *, max_frames: int, max_bodies: int, num_bodies: int,
           align_z: bool, num_workers: int) -> np.ndarray:
    """Parse ``files`` and write the normalised samples into ``out`` ``(N, 3, T, V, M)``; return num_frames."""
    num_frames = np.zeros(len(files), dtype=np.int64)
    progress = progress_bar()
    buffer = np.zeros((min(_CHUNK, len(files)), 3, max_frames, NUM_JOINTS, num_bodies), dtype=np.float32)
    with progress:
        task = progress.add_task("parsing NTU .skeleton files", total=len(files))
        samples = _iter_samples(files, max_frames, max_bodies, num_bodies, num_workers)
        for start in range(0, len(files), _CHUNK):
            stop = min(start + _CHUNK, len(files))
            for i in range(start, stop):
                buffer[i - start], num_frames[i] = next(samples)
                progress.advance(task)
            out[start:stop] = pre_normalization(buffer[: stop - start], NTU25, align_z=align_z)
    return num_frames


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/usdrl-bench/ntu_raw`` (``~/.cache/usdrl-bench/ntu_raw`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "usdrl-bench" / "ntu_raw"


def cache_key(files: Sequence[Path], options: dict) -> str:
    """Hash of the sorted file names, sizes and modification times plus the options that change the arrays."""
    entries = []
    for f in sorted(files, key=lambda p: p.name):
        st = f.stat()
        entries.append([f.name, st.st_size, st.st_mtime_ns])
    blob = json.dumps({"version": CACHE_VERSION, "options": options, "files": entries}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _write_cache(target: Path, files: Sequence[Path], meta: pd.DataFrame, labels: np.ndarray, build_kwargs: dict, info: dict) -> None:
    """Build the cache in a temporary sibling directory and rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        shape = (len(files), 3, build_kwargs["max_frames"], NUM_JOINTS, build_kwargs["num_bodies"])
        data = open_memmap(tmp / "data_joint.npy", mode="w+", dtype=np.float32, shape=shape)
        num_frames = _build(files, data, **build_kwargs)
        data.flush()
        del data
        np.save(tmp / "label.npy", labels)
        np.save(tmp / "num_frame.npy", num_frames)
        meta.to_csv(tmp / "meta.csv", index=False)
        (tmp / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same cache first
            if not (target / "info.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _cached_part(cache: Path, split: str, part: str, index: np.ndarray) -> np.ndarray:
    """``data[index]`` of the cache as its own ``.npy`` (written once, atomically), memory-mapped."""
    target = cache / f"{split}_{part}_data_joint.npy"
    full = np.load(cache / "data_joint.npy", mmap_mode="r")
    if len(index) == 0:  # an empty array cannot be memory-mapped
        return np.zeros((0,) + full.shape[1:], dtype=np.float32)
    if not target.is_file():
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", suffix=".npy", dir=cache)
        os.close(fd)
        try:
            out = open_memmap(tmp_name, mode="w+", dtype=np.float32, shape=(len(index),) + full.shape[1:])
            for start in range(0, len(index), _CHUNK):
                out[start : start + _CHUNK] = full[index[start : start + _CHUNK]]
            out.flush()
            del out
            os.replace(tmp_name, target)
        finally:
            if os.path.exists(tmp_name):
                os.remove(tmp_name)
    return np.load(target, mmap_mode="r")


# --- the reader ------------------------------------------------------------------------------------


def _list_files(path: Path) -> list[Path]:
    files = sorted(path.glob(f"*{SUFFIX}"))
    if not files:
        raise FileNotFoundError(f"no {SUFFIX} files in {path}")
    for f in files:
        if not NTU_NAME.fullmatch(f.name[: -len(SUFFIX)]):
            raise DataFormatError(f, f"file name does not follow SsssCcccPpppRrrrAaaa{SUFFIX} (e.g. S001C002P003R002A013{SUFFIX})")
    return files


def _resolve_missing(path: Path, missing_list: str | Path | Iterable[str | Path] | bool | None) -> tuple[set[str], list[Path]]:
    if missing_list is False:
        return set(), []
    if missing_list is None or missing_list is True:
        lists = find_missing_lists(path)
        if missing_list is True and not lists:
            raise FileNotFoundError(f"no missing-skeleton list ({', '.join(MISSING_LIST_NAMES)}) in {path} or {path.parent / META_DIR}")
    elif isinstance(missing_list, (str, Path)):
        lists = [Path(missing_list)]
    else:
        lists = [Path(p) for p in missing_list]
    names: set[str] = set()
    for p in lists:
        names |= read_missing_list(p)
    return names, lists


def _prepared_arrays(path: Path, files: list[Path], meta: pd.DataFrame, labels: np.ndarray, build_kwargs: dict,
                     options: dict, cache: bool,
                     cache_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, Path | None]:
    """``(data, num_frames, labels, cache folder)`` of ``files``: parsed and prepared here, or (``cache``)
    memory-mapped from the cache, written first when absent (None: not cached).

    Raises:
        RuntimeError: the cache holds other samples than ``files``."""
    t0 = time.perf_counter()
    if not cache:
        data = np.zeros((len(files), 3, build_kwargs["max_frames"], NUM_JOINTS, 2), dtype=np.float32)
        num_frames = _build(files, data, **build_kwargs)
        log.info("ntu_raw: parsed %d files in %.1f s", len(files), time.perf_counter() - t0)
        return data, num_frames, labels, None
    cache_path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    cache_path = cache_path / cache_key(files, options)
    if (cache_path / "info.json").is_file():
        log.info("ntu_raw: using the cache %s", cache_path)
    else:
        info = {"version": CACHE_VERSION, "source": str(path), "options": options, "num_samples": len(files)}
        _write_cache(cache_path, files, meta, labels, build_kwargs, info)
        log.info("ntu_raw: parsed %d files in %.1f s into %s", len(files), time.perf_counter() - t0, cache_path)
    cached_meta = pd.read_csv(cache_path / "meta.csv")
    if cached_meta["name"].tolist() != meta["name"].tolist():
        raise RuntimeError(f"ntu_raw cache {cache_path} does not match {path}; delete it and retry")
    data: np.ndarray = np.load(cache_path / "data_joint.npy", mmap_mode="r")
    return data, np.load(cache_path / "num_frame.npy"), np.load(cache_path / "label.npy"), cache_path


def _classes(path: Path, meta: pd.DataFrame, labels: np.ndarray, num_classes: int | None,
             class_names_csv: str | Path | None) -> tuple[int, list[str] | None]:
    """The class count (default 60 when every setup is <= 17, else 120) and the class names (from
    ``class_names_csv`` or the table found beside the files; None when there is none).

    Raises:
        ValueError: an action beyond ``num_classes``. DataFormatError: fewer names than classes."""
    if num_classes is None:
        num_classes = 60 if int(meta["setup"].max()) <= NTU60_MAX_SETUP else 120
    if int(labels.max()) >= num_classes:
        raise ValueError(f"ntu_raw: num_classes={num_classes} but {path} holds action A{int(labels.max()) + 1:03d}")
    csv = Path(class_names_csv) if class_names_csv is not None else _find_class_names_csv(path)
    class_names = read_class_names(csv)[:num_classes] if csv is not None else None
    if class_names is not None and len(class_names) < num_classes:
        raise DataFormatError(csv, f"{len(class_names)} action names for {num_classes} classes")  # type: ignore[arg-type]
    return num_classes, class_names


@register_dataset(
    "ntu_raw",
    description="NTU RGB+D 60/120 raw .skeleton files, 2s-AGCN/UmURL preprocessing (cached)",
    splits=("xsub", "xview", "xset"),
    default_split="xsub",
)
def load_ntu_raw(
    path: str | Path,
    split: str = "xsub",
    *,
    max_frames: int = 300,
    align_z: bool = False,
    missing_list: str | Path | Sequence[str | Path] | bool | None = None,
    num_classes: int | None = None,
    class_names_csv: str | Path | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    num_workers: int = 0,
) -> tuple[SkeletonArrays, SkeletonArrays]:
    """Read a directory of NTU RGB+D ``.skeleton`` files and return the (train, test) split.

    Each sample is ``(C=3, T=max_frames, V=25, M=2)`` float32 after the 2s-AGCN/UmURL preparation
    (module docstring); x, y, z in metres, centred on the middle of the spine of body 0, shoulders
    of frame 0 along +x, padded by repeating the sequence.

    Args:
        path: directory holding ``S...A....skeleton`` files (not searched recursively).
        split: ``xsub`` (NTU-120 training subjects, identical to NTU-60's on S001-S017), ``xview``
            (cameras 2, 3 train) or ``xset`` (even setups train); FACTS §2.
        max_frames: ``T``; 300 as in the official data. Longer sequences are truncated.
        align_z: also make base-of-spine -> middle-of-spine parallel to +z (2s-AGCN; off in UmURL/USDRL).
        missing_list: samples to skip. ``None`` (default): the union of the official lists named in
            :data:`MISSING_LIST_NAMES` found in ``path`` or ``path/../ntu_meta`` (none found: skip
            nothing); ``True``: the same, but it is an error when none is found; ``False``: skip
            nothing; or a path / list of paths.
        num_classes: default 60 when every setup is <= 17 (NTU-60), else 120.
        class_names_csv: ``action,name`` table; default ``ntu120_actions.csv`` in ``path`` or
            ``path/../ntu_meta`` when present (else no class names).
        cache: keep the prepared arrays in ``cache_dir`` and memory-map them on later calls.
        cache_dir: cache root; the arrays go to ``<cache_dir>/<key>/`` where the key hashes the file
            names, sizes, mtimes and the options that change the arrays (default root
            :func:`default_cache_root`). Directories and files are written under temporary names
            and renamed into place, so an interrupted run leaves no half cache.
        num_workers: parse with this many processes (0 or 1: in this process).

    Returns:
        ``(train, test)`` :class:`SkeletonArrays`, each sorted by sample name; labels = action - 1.
        ``data`` is a read-only memory map when cached. ``extra`` records the split, the excluded
        samples, the lists used and the cache directory.

    Raises:
        KeyError: unknown ``split``.
        FileNotFoundError: ``path`` (or a given missing list) does not exist, or holds no ``.skeleton`` file.
        DataFormatError: a file name or file content does not follow the NTU format (file and line named).
        ValueError: ``num_classes`` smaller than the largest action number.
    """
    path = Path(path)
    if max_frames < 1:
        raise ValueError(f"ntu_raw: max_frames must be >= 1, got {max_frames}")
    if split not in NTU_SPLITS:
        raise KeyError(f"Unknown split {split!r} for ntu_raw; available: {', '.join(NTU_SPLITS)}")
    if not path.is_dir():
        raise FileNotFoundError(f"NTU raw skeleton directory not found: {path}")
    files = _list_files(path)
    missing, lists = _resolve_missing(path, missing_list)
    excluded = [f.name[: -len(SUFFIX)] for f in files if f.name[: -len(SUFFIX)] in missing]
    files = [f for f in files if f.name[: -len(SUFFIX)] not in missing]
    if excluded:
        log.info("ntu_raw: skipping %d samples listed as having missing skeletons", len(excluded))
    if not files:
        raise FileNotFoundError(f"every .skeleton file in {path} is on the missing-skeleton list")

    names = [f.name[: -len(SUFFIX)] for f in files]
    parsed = [parse_ntu_name(n) for n in names]
    meta = pd.DataFrame({"name": names, **{c: [p[c] for p in parsed] for c in META_COLUMNS}})  # type: ignore[index]
    labels = np.array([p["action"] - 1 for p in parsed], dtype=np.int64)  # type: ignore[index]

    build_kwargs = dict(max_frames=int(max_frames), max_bodies=4, num_bodies=2, align_z=bool(align_z), num_workers=int(num_workers))
    options = {k: v for k, v in build_kwargs.items() if k != "num_workers"} | {"layout": NTU25.name}
    data, num_frames, labels, cache_path = _prepared_arrays(path, files, meta, labels, build_kwargs, options,
                                                            cache, cache_dir)

    num_classes, class_names = _classes(path, meta, labels, num_classes, class_names_csv)

    extra = {
        "split": split,
        "excluded_missing": excluded,
        "missing_lists": [str(p) for p in lists],
        "cache_dir": str(cache_path) if cache_path is not None else None,
        "align_z": bool(align_z),
    }
    full = SkeletonArrays(
        data=data, labels=labels, num_frames=num_frames, meta=meta[list(META_COLUMNS)], names=names,
        num_classes=num_classes, layout=NTU25.name, class_names=class_names, source=str(path), extra=extra,
    )
    if cache_path is None:
        return split_by_rule(full, split, NTU_SPLITS)

    train_mask = np.asarray(NTU_SPLITS[split](full.meta), dtype=bool)
    parts = []
    for part, index in (("train", np.flatnonzero(train_mask)), ("test", np.flatnonzero(~train_mask))):
        parts.append(SkeletonArrays(
            data=_cached_part(cache_path, split, part, index), labels=labels[index], num_frames=num_frames[index],
            meta=full.meta.iloc[index].reset_index(drop=True), names=[names[i] for i in index],
            num_classes=num_classes, layout=NTU25.name, class_names=class_names, source=str(path), extra=dict(extra),
        ))
    return parts[0], parts[1]
