"""``usdrl-bench data prepare ntu60|ntu120``: the raw NTU RGB+D release into AGCN-layout split folders.

The raw release is a tree of ``SsssCcccPpppRrrrAaaa.skeleton`` files (FACTS §1; NTU-120 ships as two
archives, so the tree is searched recursively). NTU-60 takes setups S001-S017, NTU-120 S001-S032.
Samples on the official missing-skeleton lists (FACTS §1; found in the tree, beside it, or given) are
excluded, as every published pipeline does; a file with no skeleton in any frame is skipped even
without a list. Splits (FACTS §2): NTU-60 ``xsub``, ``xview``; NTU-120 ``xsub``, ``xsetup`` (the
official folder name of the cross-setup split).

Pipelines (FACTS §3): ``agcn`` (default), the 2s-AGCN / UmURL preparation the official USDRL data went
through (:mod:`usdrl_bench.data.readers.ntu_raw`); ``ctrgcn``, the CTR-GCN / SGN denoising
(:mod:`usdrl_bench.data.preparation.ctrgcn`). Both write ``(N, 3, 300, 25, 2)`` float32.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from usdrl_bench.data.arrays import NTU120_XSUB_TRAIN_SUBJECTS, XVIEW_TRAIN_CAMERAS
from usdrl_bench.data.preparation.ctrgcn import ctrgcn_sample
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.ntu_raw import (MISSING_LIST_NAMES, NTU60_MAX_SETUP, NTU_NAME, NUM_JOINTS, SUFFIX,
                                      find_missing_lists, parse_ntu_name, read_missing_list, read_ntu_sample)
from usdrl_bench.data.preparation.prepare import Job, Preparation, PrepareSummary, Sample, Skipped, default_workers, update_manifest
from usdrl_bench.data.preprocess import pre_normalization

log = logging.getLogger(__name__)

PIPELINES = ("agcn", "ctrgcn")
#: Split folders per dataset (the official NTU-120 cross-setup folder is ``xsetup``).
SPLIT_FOLDERS = {"ntu60": ("xsub", "xview"), "ntu120": ("xsub", "xsetup")}
#: Largest setup id of each release.
MAX_SETUP = {"ntu60": NTU60_MAX_SETUP, "ntu120": 32}
#: Samples in the complete releases, and per-split (train, test) counts once the missing-skeleton
#: samples are removed (FACTS §2).
RELEASE_SAMPLES = {"ntu60": 56_880, "ntu120": 114_480}
OFFICIAL_COUNTS = {
    "ntu60": {"xsub": (40_091, 16_487), "xview": (37_646, 18_932)},
    "ntu120": {"xsub": (63_026, 50_919), "xsetup": (54_468, 59_477)},
}
NUM_CLASSES = {"ntu60": 60, "ntu120": 120}
DOWNLOAD_HINT = {
    "ntu60": "nturgbd_skeletons_s001_to_s017.zip from https://rose1.ntu.edu.sg/dataset/actionRecognition/",
    "ntu120": "nturgbd_skeletons_s001_to_s017.zip and nturgbd_skeletons_s018_to_s032.zip from "
              "https://rose1.ntu.edu.sg/dataset/actionRecognition/",
}


def is_train(split: str, meta: dict) -> bool:
    """The official rule of FACTS §2 for one sample's metadata."""
    if split == "xsub":
        return meta["subject"] in NTU120_XSUB_TRAIN_SUBJECTS
    if split == "xview":
        return meta["camera"] in XVIEW_TRAIN_CAMERAS
    if split in ("xset", "xsetup"):
        return meta["setup"] % 2 == 0
    raise KeyError(f"unknown NTU split {split!r}")


def read_agcn_sample(source: str, payload, options: dict) -> list:
    """Reader of the ``agcn`` pipeline: top-2 bodies by energy, then ``pre_normalization`` (FACTS §3A)."""
    x, n = read_ntu_sample(source, max_frames=options["max_frames"])
    if not np.any(x):
        raise DataFormatError(source, "no skeleton in any frame (a sample with missing skeletons)")
    x = pre_normalization(x[None], "ntu25", align_z=options["align_z"])[0]
    return [(x, n)]


def read_ctrgcn_sample(source: str, payload, options: dict) -> list:
    """Reader of the ``ctrgcn`` pipeline (FACTS §3B)."""
    return [ctrgcn_sample(source, max_frames=options["max_frames"])]


READERS = {"agcn": read_agcn_sample, "ctrgcn": read_ctrgcn_sample}


def list_release(raw: Path, dataset: str) -> tuple[list[Path], list[Skipped]]:
    """The ``.skeleton`` files of ``dataset`` under ``raw`` (recursively), sorted by name; files whose name
    does not follow the official pattern, and second copies of a name, are returned as skipped."""
    files, skipped, seen = [], [], {}
    for f in sorted(raw.rglob(f"*{SUFFIX}"), key=lambda p: (p.name, str(p))):
        stem = f.name[: -len(SUFFIX)]
        if not NTU_NAME.fullmatch(stem):
            skipped.append(Skipped(stem, str(f), None, "file name does not follow SsssCcccPpppRrrrAaaa.skeleton"))
            continue
        if stem in seen:
            skipped.append(Skipped(stem, str(f), None, f"a second copy of {stem} (the first is {seen[stem]})"))
            continue
        meta = parse_ntu_name(stem)
        if meta["setup"] > MAX_SETUP[dataset] or meta["action"] > NUM_CLASSES[dataset]:  # type: ignore[index]
            continue  # an NTU-120 file in an NTU-60 preparation
        seen[stem] = f
        files.append(f)
    return files, skipped


def prepare_ntu(
    dataset: str,
    raw: str | Path,
    out: str | Path,
    *,
    pipeline: str = "agcn",
    workers: int | None = None,
    missing_lists: Sequence[str | Path] | None = None,
    max_frames: int = 300,
    align_z: bool = False,
    progress: bool = True,
    on_chunk=None,
) -> PrepareSummary:
    """Prepare NTU RGB+D 60 or 120 from the raw release (module docstring).

    Args:
        dataset: ``ntu60`` or ``ntu120``.
        raw: the directory of ``.skeleton`` files (searched recursively).
        out: output directory; split folders, ``manifest.json`` and ``samples.csv`` go there.
        pipeline: ``agcn`` (FACTS §3A, the default, what USDRL's data went through) or ``ctrgcn`` (§3B).
        workers: reader processes (default: all cores).
        missing_lists: missing-skeleton lists; default: those of :data:`MISSING_LIST_NAMES` found in
            ``raw`` (recursively) or in ``raw/../ntu_meta``.
        max_frames: T (300 as the official data).
        align_z: ``agcn`` only: also align the spine to +z (2s-AGCN; off in UmURL / USDRL).
        progress: show a progress bar on a terminal.
        on_chunk: see :meth:`Preparation.run`.

    Returns:
        the :class:`PrepareSummary` (its ``manifest`` is what ``manifest.json`` holds).

    Raises:
        ValueError: unknown dataset or pipeline.
        FileNotFoundError: ``raw`` is not a directory or holds no ``.skeleton`` file of the dataset.
        RuntimeError: ``out`` holds an unfinished preparation made with other arguments.
    """
    if dataset not in SPLIT_FOLDERS:
        raise ValueError(f"unknown NTU dataset {dataset!r}; expected one of {', '.join(SPLIT_FOLDERS)}")
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}; expected one of {', '.join(PIPELINES)}")
    raw = Path(raw)
    if not raw.is_dir():
        raise FileNotFoundError(f"{raw} is not a directory; download {DOWNLOAD_HINT[dataset]} and unzip it")
    files, bad_names = list_release(raw, dataset)
    if not files:
        raise FileNotFoundError(f"no {dataset} .skeleton files under {raw}; download {DOWNLOAD_HINT[dataset]} and unzip it there")
    if missing_lists is None:
        lists = sorted({f for f in raw.rglob("*.txt") if f.name in MISSING_LIST_NAMES} | set(find_missing_lists(raw)))
    else:
        lists = [Path(p) for p in missing_lists]
    missing: set[str] = set()
    for p in lists:
        missing |= read_missing_list(p)
    if not lists:
        log.warning("no missing-skeleton list (%s) found in %s: samples without skeletons are skipped as they are read",
                    ", ".join(MISSING_LIST_NAMES), raw)
    excluded = [f.name[: -len(SUFFIX)] for f in files if f.name[: -len(SUFFIX)] in missing]
    files = [f for f in files if f.name[: -len(SUFFIX)] not in missing]

    folders = SPLIT_FOLDERS[dataset]
    samples, jobs = [], []
    for i, f in enumerate(files):
        stem = f.name[: -len(SUFFIX)]
        meta = parse_ntu_name(stem)
        assert meta is not None
        parts = tuple(f"{folder}/{'train' if is_train(folder, meta) else 'val'}" for folder in folders)
        samples.append(Sample(stem, meta["action"] - 1, {k: meta[k] for k in ("setup", "camera", "subject", "repetition")}, parts))
        jobs.append(Job(str(f), (i,)))
    release_complete = len(files) + len(excluded) == RELEASE_SAMPLES[dataset]
    options = {"pipeline": pipeline, "max_frames": int(max_frames), "align_z": bool(align_z)}
    prep = Preparation(
        Path(out), samples, jobs, READERS[pipeline], (3, int(max_frames), NUM_JOINTS, 2),
        options=options, fingerprint={"dataset": dataset, "excluded": excluded},
        name_suffix=SUFFIX, parts=[f"{folder}/{p}" for folder in folders for p in ("train", "val")],
        manifest_extra={
            "dataset": dataset, "pipeline": pipeline, "source": str(raw), "num_classes": NUM_CLASSES[dataset],
            "files_found": len(files) + len(excluded), "missing_lists": [str(p) for p in lists],
            "excluded": excluded, "bad_file_names": [s.__dict__ for s in bad_names],
            "release_complete": release_complete,
        },
    )
    summary = prep.run(workers=workers or default_workers(), progress=progress, on_chunk=on_chunk)
    summary.skipped[:0] = bad_names
    _check_official(summary, dataset, release_complete)
    return summary


def _check_official(summary: PrepareSummary, dataset: str, complete: bool) -> None:
    """Compare the per-split counts with FACTS §2 when the release is complete (recorded in the manifest)."""
    official = {f"{k}/{p}": n for k, (tr, te) in OFFICIAL_COUNTS[dataset].items() for p, n in (("train", tr), ("val", te))}
    match = None
    if complete:
        match = all(summary.counts.get(k) == v for k, v in official.items())
        if not match:
            log.warning("%s: counts %s differ from the official %s", dataset, summary.counts, official)
    update_manifest(summary, official_counts=official, official_counts_match=match)
