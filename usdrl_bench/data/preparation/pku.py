"""PKU-MMD Phase 1 and 2 (FACTS §4): text formats, and ``usdrl-bench data prepare pku1|pku2``.

Release layout read (folder names as in the release, case-insensitive): ``skeleton/`` with one
``<video>.txt`` per untrimmed video (one line per frame: 150 floats = body 1's 25 Kinect-v2 joints ×
xyz, then body 2's, zeros when absent), ``label/`` with ``<video>.txt`` (``label,start,end,confidence``
per action instance, labels 1-51) and ``split/`` with the official lists (``cross-subject.txt`` for
phase 1, ``cross_subject_v2.txt`` for phase 2; ``cross-view*.txt`` when present): 4 lines,
"Training videos:", a comma-separated list, "Validataion videos:" (sic), a list.

**Trimmed clips for recognition** (the PCM3 / CMD clip generation, FACTS §4): each instance becomes
one sample, the skeleton rows ``[start, end)`` as ``(3, T, 25, 2)``, truncated to 300 frames, put
through ``pre_normalization`` with the z-axis step on; label = id - 1 (51 classes, phase 2 keeps the
phase-1 ids); name ``<video>.txt_<k>`` (k-th instance of the video). Written as ``OUT/xsub/`` (and
``OUT/xview/``) in the AGCN layout by :class:`~usdrl_bench.data.preparation.prepare.Preparation`. ``num_frame``
holds the clip length clamped to 300 (PCM3 stores the untruncated length; its feeders clamp it).

**Untrimmed videos for detection (phase 1) and segmentation (phase 2)**: ``OUT/untrimmed/<train|val>/<video>.npy``, the whole
video as ``(3, T, 25, 2)`` float32 in the file's camera coordinates (not normalised, as the detection
code reads them), and ``<video>_label.npy``, ``(T,)`` int64 per-frame labels, 0 = background, 1-51 =
the action (a later instance wins where two overlap).

A video of a split list without a skeleton file is reported (manifest ``missing_videos``), not fatal;
a malformed line skips its video (or instance) with the file and line named.
"""

from __future__ import annotations

import logging
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.preparation.prepare import (Job, Preparation, PrepareSummary, Sample, Skipped, default_workers,
                                      update_manifest)
from usdrl_bench.data.preprocess import pre_normalization
from usdrl_bench.io import is_safe_name, save_npy_atomic

log = logging.getLogger(__name__)

NUM_CLASSES = 51
MAX_FRAMES = 300
VALUES_PER_FRAME = 150
SPLIT_FILES = {
    "pku1": {"xsub": ("cross-subject.txt", "cross_subject.txt"), "xview": ("cross-view.txt", "cross_view.txt")},
    "pku2": {"xsub": ("cross_subject_v2.txt", "cross-subject-v2.txt", "cross-subject.txt"),
             "xview": ("cross_view_v2.txt", "cross-view-v2.txt", "cross-view.txt")},
}
VIDEO_NAME = {"pku1": re.compile(r"\d{4}-[LMR]"), "pku2": re.compile(r"A\d{2}N\d{2}-[LMR]")}


# --- text formats -------------------------------------------------------------------------------------


def read_pku_skeleton(path: str | Path) -> np.ndarray:
    """One untrimmed video: ``(3, T, 25, 2)`` float32 from its skeleton text (150 floats per line).

    Raises:
        DataFormatError: a line without 150 numbers, or a non-finite value (file and line named); an
            empty file.
    """
    path = Path(path)
    lines = path.read_text(encoding="latin-1").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataFormatError(path, "empty skeleton file", line=1)
    try:
        values = np.array(" ".join(lines).split(), dtype=np.float64)
    except ValueError:
        values = None
    if values is None or len(values) != VALUES_PER_FRAME * len(lines) or not np.isfinite(values).all():
        for i, line in enumerate(lines, start=1):
            tokens = line.split()
            if len(tokens) != VALUES_PER_FRAME:
                raise DataFormatError(path, f"expected {VALUES_PER_FRAME} numbers (2 bodies x 25 joints x xyz), got {len(tokens)}", line=i)
            try:
                ok = np.isfinite(np.array(tokens, dtype=np.float64)).all()
            except ValueError:
                ok = False
            if not ok:
                raise DataFormatError(path, "expected finite numbers", line=i)
        raise AssertionError("unreachable")  # pragma: no cover
    return np.ascontiguousarray(values.reshape(len(lines), 2, 25, 3).transpose(3, 0, 2, 1).astype(np.float32))


def read_pku_labels(path: str | Path) -> list[tuple[int, int, int, int]]:
    """Action instances of one video, ``(label 1-51, start, end, confidence)`` (``end`` exclusive, as the
    clip generation uses it), in file order.

    Raises:
        DataFormatError: a line that is not 4 integers, a label outside 1..51, ``end <= start``.
    """
    path = Path(path)
    out = []
    for i, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split(",")]
        try:
            label, start, end, confidence = (int(float(p)) for p in parts)
        except ValueError:
            raise DataFormatError(path, f"expected label,start,end,confidence (4 integers), got {line[:80]!r}", line=i) from None
        if not 1 <= label <= NUM_CLASSES:
            raise DataFormatError(path, f"label {label} outside 1..{NUM_CLASSES}", line=i)
        if end <= start or start < 0:
            raise DataFormatError(path, f"instance [{start}, {end}) is empty or negative", line=i)
        out.append((label, start, end, confidence))
    return out


def frame_labels(num_frames: int, instances: list[tuple[int, int, int, int]]) -> np.ndarray:
    """``(num_frames,)`` int64 per-frame labels of a video: 0 = background, the instance's label over its
    ``[start, end)`` (a later instance wins where two overlap)."""
    labels = np.zeros(num_frames, dtype=np.int64)
    for label, start, end, _ in instances:
        labels[start:min(end, num_frames)] = label
    return labels


def read_split_file(path: str | Path) -> tuple[list[str], list[str]]:
    """``(train videos, test videos)`` from an official 4-line split file.

    Raises:
        DataFormatError: not two headed lists.
    """
    path = Path(path)
    lines = [l.strip() for l in path.read_text(encoding="latin-1").splitlines() if l.strip()]
    if len(lines) != 4 or not lines[0].lower().startswith("train") or not lines[2].lower().startswith("valid"):
        raise DataFormatError(path, "expected 4 lines: 'Training videos:', a list, 'Validataion videos:', a list")

    numbered = [(i + 1, l.strip()) for i, l in enumerate(path.read_text(encoding="latin-1").splitlines()) if l.strip()]

    def names(k: int) -> list[str]:
        line_no, line = numbered[k]
        out = [n.strip() for n in line.split(",") if n.strip()]
        for name in out:  # video names become file names under the output folder
            if not is_safe_name(name):
                raise DataFormatError(path, f"video name {name!r} is not a plain file name (letters, digits, '.', "
                                            "'_', '-'; no '/' or '..')", line=line_no)
        return out

    return names(1), names(3)


def find_subdir(raw: Path, name: str) -> Path:
    """The folder ``name`` of a release (``skeleton``, ``label``, ``split``), matched case-insensitively.

    Raises:
        FileNotFoundError: there is none.
    """
    for p in sorted(raw.iterdir()):
        if p.is_dir() and p.name.lower() == name:
            return p
    raise FileNotFoundError(f"{raw} has no {name}/ folder; expected the PKU-MMD release layout skeleton/, label/, split/")


def find_split_file(split_dir: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` present in ``split_dir`` (the lists' file names vary between copies), else None."""
    for n in names:
        if (split_dir / n).is_file():
            return split_dir / n
    return None


# --- readers (run in worker processes) -------------------------------------------------------------------


def read_pku_clips(source: str, payload: list[tuple[int, int, int]], options: dict) -> list:
    """Reader for :class:`Preparation`: the instances ``(label, start, end)`` of one video as normalised clips."""
    video = read_pku_skeleton(source)
    T = options["max_frames"]
    out: list = []
    for label, start, end in payload:
        if end > video.shape[1]:
            out.append(DataFormatError(source, f"instance {label},{start},{end} ends after the video's {video.shape[1]} frames"))
            continue
        clip = np.zeros((3, T, 25, 2), dtype=np.float32)
        n = min(end - start, T)
        clip[:, :n] = video[:, start:start + n]
        clip = pre_normalization(clip[None], "ntu25", align_z=True)[0]
        out.append((clip, n))
    return out


def _write_untrimmed(args: tuple[str, str, list[tuple[int, int, int, int]]]) -> tuple[str, int] | DataFormatError:
    source, target, instances = args
    target_path = Path(target)
    labels_path = target_path.with_name(target_path.stem + "_label.npy")
    try:
        video = read_pku_skeleton(source)
    except (DataFormatError, OSError) as exc:
        return exc if isinstance(exc, DataFormatError) else DataFormatError(source, str(exc))
    frames = frame_labels(video.shape[1], instances)
    if not (target_path.is_file() and labels_path.is_file()):  # resumable: finished videos are kept
        save_npy_atomic(labels_path, frames)
        save_npy_atomic(target_path, video)
    return target, int(video.shape[1])


# --- prepare -----------------------------------------------------------------------------------------------


def prepare_pku(dataset: str, raw: str | Path, out: str | Path, *, workers: int | None = None, progress: bool = True,
                on_chunk=None) -> PrepareSummary:
    """Prepare PKU-MMD ``pku1`` (phase 1) or ``pku2`` (phase 2) from the release (module docstring).

    Returns:
        the :class:`PrepareSummary`; its manifest also lists missing videos and, for phase 1, the
        untrimmed videos written.

    Raises:
        ValueError: unknown dataset.
        FileNotFoundError: missing ``skeleton/``, ``label/`` or ``split/`` folder, or no cross-subject list.
    """
    if dataset not in SPLIT_FILES:
        raise ValueError(f"unknown PKU-MMD dataset {dataset!r}; expected pku1 or pku2")
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw} is not a directory; download PKU-MMD (skeletons, labels, split files) and unpack it")
    skel_dir, label_dir, split_dir = (find_subdir(raw, n) for n in ("skeleton", "label", "split"))
    splits = {}
    for split, names in SPLIT_FILES[dataset].items():
        f = find_split_file(split_dir, names)
        if f is not None:
            splits[split] = read_split_file(f)
    if "xsub" not in splits:
        raise FileNotFoundError(f"no cross-subject list ({' or '.join(SPLIT_FILES[dataset]['xsub'])}) in {split_dir}")
    part_of = {}
    for split, (train, test) in splits.items():
        for v in train:
            part_of.setdefault(v, []).append(f"{split}/train")
        for v in test:
            part_of.setdefault(v, []).append(f"{split}/val")
    videos = sorted(part_of)
    skipped: list[Skipped] = []
    missing_videos, samples, jobs, instances_of = [], [], [], {}
    for video in videos:
        skel, lab = skel_dir / f"{video}.txt", label_dir / f"{video}.txt"
        if not skel.is_file() or not lab.is_file():
            missing_videos.append(video)
            continue
        try:
            instances = read_pku_labels(lab)
        except DataFormatError as exc:
            skipped.append(Skipped(video, exc.file, exc.line, exc.message))
            continue
        instances_of[video] = instances
        first = len(samples)
        for k, (label, start, end, _) in enumerate(instances):
            samples.append(Sample(f"{video}.txt_{k}", label - 1, {"setup": -1, "camera": -1, "subject": -1, "repetition": -1},
                                  tuple(sorted(part_of[video]))))
        jobs.append(Job(str(skel), tuple(range(first, len(samples))), [(l, s, e) for l, s, e, _ in instances]))
    if missing_videos:
        log.warning("%s: %d videos of the split lists have no skeleton or label file in %s (listed in the manifest)",
                    dataset, len(missing_videos), raw)
    if not jobs:
        raise FileNotFoundError(f"no video of the split lists has both skeleton/<video>.txt and label/<video>.txt under {raw}")
    prep = Preparation(
        Path(out), samples, jobs, read_pku_clips, (3, MAX_FRAMES, 25, 2),
        options={"max_frames": MAX_FRAMES, "align_z": True}, fingerprint={"dataset": dataset},
        parts=[f"{split}/{p}" for split in splits for p in ("train", "val")],
        manifest_extra={"dataset": dataset, "pipeline": "pcm3_clips", "source": str(raw), "num_classes": NUM_CLASSES,
                        "videos": len(jobs), "missing_videos": missing_videos,
                        "label_errors": [s.__dict__ for s in skipped]},
    )
    workers = workers or default_workers()
    summary = prep.run(workers=workers, progress=progress, on_chunk=on_chunk)
    summary.skipped[:0] = skipped
    summary.excluded = []
    _prepare_untrimmed(summary, skel_dir, instances_of, part_of, workers)  # detection (I), segmentation (II)
    return summary


def _prepare_untrimmed(summary: PrepareSummary, skel_dir: Path, instances_of: dict, part_of: dict, workers: int) -> None:
    """Whole videos and per-frame labels, per cross-subject part: detection (phase 1) and segmentation
    (phase 2, DeST's PKU-subject split: the 775 training videos, of which DeST holds 77 out for model
    selection, and the 234 test videos)."""
    jobs = []
    for video, instances in instances_of.items():
        part = next(p for p in part_of[video] if p.startswith("xsub/")).split("/")[1]
        target = summary.out / "untrimmed" / part / f"{video}.npy"
        target.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(skel_dir / f"{video}.txt"), str(target), instances))
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_write_untrimmed, jobs, chunksize=4))
    else:
        results = [_write_untrimmed(j) for j in jobs]
    written = {}
    for (source, target, _), r in zip(jobs, results):
        if isinstance(r, DataFormatError):
            continue  # already skipped (and reported) with its clips
        written[str(Path(target).relative_to(summary.out))] = r[1]
    update_manifest(summary, untrimmed={"videos": dict(sorted(written.items())),
                                        "labels": "per-frame int64, 0 = background, 1-51 = action id",
                                        "coordinates": "camera space (metres) as in the files, not normalised"})
