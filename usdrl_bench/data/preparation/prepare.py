"""Resumable, parallel preparation of released datasets into the AGCN layout the protocols read.

:class:`Preparation` is the engine shared by NTU RGB+D (:func:`prepare_ntu`) and PKU-MMD
(:mod:`usdrl_bench.data.preparation.pku`): a list of *samples* (name, label, metadata and the split parts it goes
to, e.g. ``xsub/train`` and ``xview/val``) read by *jobs* (one source file each, giving one or more
samples). Jobs run in worker processes, a chunk at a time, in a fixed order; each good sample is
written at the next row of every part it belongs to, straight to disk (:class:`NpyRowWriter`), so
memory stays at a few chunks whatever the dataset size.

**Nothing is lost.** After each chunk the rows are synced and the progress (jobs done, per-sample
status) is written atomically under ``OUT/.partial/``; an interrupted run, started again with the same
arguments, continues after the last recorded chunk and produces byte-identical files. Finished parts
are moved into place only when every job is done.

**Damaged input.** A file that cannot be read (truncated, malformed, no skeleton at all) is skipped,
with its file, line and reason, in the manifest and the summary; the rest are written. The CLI exits
non-zero for such files only with ``--strict``.

Output, per split folder (``OUT/xsub/`` ...): ``{train,val}_data_joint.npy`` ``(N, 3, T, V, M)``
float32, ``{train,val}_num_frame.npy`` and ``{train,val}_label.pkl`` (names, 0-based labels), exactly
what :func:`usdrl_bench.data.readers.agcn.load_agcn` and the official code read; and in ``OUT/``:
``manifest.json`` (pipeline, version, options, per-part counts, class histograms and SHA-256 of every
file, skipped and excluded samples, official counts) and ``samples.csv`` (one line per sample).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from usdrl_bench._version import __version__
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.npy_writer import NpyRowWriter, shrink_npy
from usdrl_bench.data.progress import progress_bar
from usdrl_bench.io import atomic_write, save_npy_atomic, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
MANIFEST = "manifest.json"
SAMPLES_CSV = "samples.csv"
MANIFEST_FORMAT = "usdrl-bench/prepared-v1"
CHUNK_JOBS = 128  # jobs per progress record

#: A worker: ``(source, payload, options) -> one result per sample of the job``; a result is
#: ``(array (C, T, V, M), num_frames)`` or a :class:`DataFormatError` / ``OSError`` instance.
Reader = Callable[[str, Any, dict], list]


@dataclass(frozen=True)
class Sample:
    """One output sample: its name (written with ``suffix`` in the label pickle), 0-based label,
    metadata (``setup``, ``camera``, ``subject``, ``repetition``, -1 when unknown) and the parts it goes
    to, as ``"<split folder>/<train|val>"``."""

    name: str
    label: int
    meta: dict
    parts: tuple[str, ...]


@dataclass(frozen=True)
class Job:
    """One source file and the indices of the samples it yields (in order), with what the reader needs."""

    source: str
    samples: tuple[int, ...]
    payload: Any = None


@dataclass
class Skipped:
    """A sample that was not written: its name, the file, 1-based line (when known) and why."""

    name: str
    file: str
    line: int | None
    reason: str


@dataclass
class PrepareSummary:
    """What a preparation did: per-part sample counts, skipped samples, timing."""

    out: Path
    counts: dict[str, int]
    skipped: list[Skipped]
    excluded: list[str]
    files: int
    seconds: float
    resumed_from: int = 0
    manifest: dict = field(default_factory=dict)

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else float("nan")


def _run_job(reader: Reader, job: Job, options: dict) -> list:
    """Worker entry point: never raises for bad input (the error becomes the sample's result)."""
    try:
        results = reader(job.source, job.payload, options)
        if len(results) != len(job.samples):
            raise DataFormatError(job.source, f"reader returned {len(results)} samples, expected {len(job.samples)}")
        return results
    except MemoryError:
        raise
    except Exception as exc:  # any failure on one file (a damaged file can break a reader in many ways)
        if not isinstance(exc, DataFormatError):
            exc = DataFormatError(job.source, f"could not be read: {type(exc).__name__}: {exc}")
        return [exc] * len(job.samples)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class Preparation:
    """A resumable preparation (see the module docstring).

    Args:
        out: output directory.
        samples: every candidate sample, in output order.
        jobs: the jobs that read them, in order (each sample belongs to exactly one job).
        reader: the per-job worker function (module level, so processes can run it).
        row_shape: ``(C, T, V, M)`` of one sample.
        options: passed to the reader, and part of the fingerprint.
        fingerprint: everything that changes the output (dataset, pipeline, options, sample list); a
            partial run with another fingerprint is refused rather than mixed in.
        name_suffix: appended to the names in the label pickles (``.skeleton`` for NTU).
        manifest_extra: stored in the manifest.
        parts: parts to write even when no sample goes there (a split folder always has train and val).
    """

    def __init__(self, out: Path, samples: Sequence[Sample], jobs: Sequence[Job], reader: Reader,
                 row_shape: tuple[int, ...], *, options: dict, fingerprint: dict, name_suffix: str = "",
                 manifest_extra: dict | None = None, parts: Sequence[str] = ()) -> None:
        self.out = Path(out)
        self.samples = list(samples)
        self.jobs = list(jobs)
        self.reader = reader
        self.row_shape = tuple(row_shape)
        self.options = dict(options)
        self.name_suffix = name_suffix
        self.manifest_extra = dict(manifest_extra or {})
        self.parts = sorted({p for s in self.samples for p in s.parts} | set(parts))
        self.fingerprint = hashlib.sha256(json.dumps(
            {**fingerprint, "options": self.options, "row_shape": self.row_shape, "version": MANIFEST_FORMAT,
             "samples": [[s.name, s.label, list(s.parts)] for s in self.samples]}, sort_keys=True).encode()).hexdigest()
        self.partial = self.out / PARTIAL_DIR

    # --- state ---------------------------------------------------------------------------------------
    def _load_state(self) -> tuple[int, np.ndarray, list[Skipped]]:
        progress = self.partial / "progress.json"
        status = np.zeros(len(self.samples), dtype=np.int64)  # 0 pending, > 0 frames written, -1 skipped
        if not progress.is_file():
            if self.partial.exists():
                shutil.rmtree(self.partial)
            self.partial.mkdir(parents=True)
            write_json_atomic(progress, {"fingerprint": self.fingerprint, "jobs_done": 0, "skipped": []})
            save_npy_atomic(self.partial / "status.npy", status)
            return 0, status, []
        state = json.loads(progress.read_text())
        if state.get("fingerprint") != self.fingerprint:
            raise RuntimeError(
                f"{self.partial} holds an unfinished preparation with other inputs or options; run it again "
                f"with the same arguments to finish it, or delete {self.partial} to start over"
            )
        status = np.load(self.partial / "status.npy")
        jobs_done = int(state["jobs_done"])
        # a crash between saving the status and the progress record leaves a chunk marked that the
        # progress does not count: forget it, it is read again
        for job in self.jobs[jobs_done:]:
            status[list(job.samples)] = 0
        skipped = [Skipped(**s) for s in state["skipped"]]
        return jobs_done, status, skipped

    def _save_state(self, jobs_done: int, status: np.ndarray, skipped: list[Skipped]) -> None:
        save_npy_atomic(self.partial / "status.npy", status)
        write_json_atomic(self.partial / "progress.json", {
            "fingerprint": self.fingerprint, "jobs_done": jobs_done, "skipped": [s.__dict__ for s in skipped]})

    # --- running -------------------------------------------------------------------------------------
    def run(self, *, workers: int = 1, progress: bool = True, on_chunk: Callable[[int], None] | None = None) -> PrepareSummary:
        """Read every pending job and write the parts; then finalise (move into place, manifest).

        Args:
            workers: reader processes (1: in this process).
            progress: show a progress bar on a terminal.
            on_chunk: called with the number of jobs done after each recorded chunk (tests use it to
                interrupt a run).
        """
        started = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        jobs_done, status, skipped = self._load_state()
        resumed_from = jobs_done
        if jobs_done:
            log.info("resuming the preparation in %s after %d of %d files", self.out, jobs_done, len(self.jobs))
        capacity = {p: sum(p in s.parts for s in self.samples) for p in self.parts}
        # next row of each part: the samples already written before this run
        position = {p: int(sum(1 for i, s in enumerate(self.samples) if status[i] > 0 and p in s.parts)) for p in self.parts}
        writers = {p: NpyRowWriter(self.partial / f"{p.replace('/', '__')}_data_joint.npy", self.row_shape, max(capacity[p], 1))
                   for p in self.parts}

        bar = progress_bar() if progress else None
        pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
        try:
            if bar is not None:
                bar.start()
                task = bar.add_task(f"preparing {self.out.name}", total=len(self.jobs), completed=jobs_done)

            def submit(start: int) -> list:
                chunk = self.jobs[start:start + CHUNK_JOBS]
                if pool is None:
                    return chunk
                return [pool.submit(_run_job, self.reader, job, self.options) for job in chunk]

            pending = submit(jobs_done) if jobs_done < len(self.jobs) else []
            for start in range(jobs_done, len(self.jobs), CHUNK_JOBS):
                current = pending
                nxt = start + CHUNK_JOBS
                pending = submit(nxt) if nxt < len(self.jobs) else []  # keep the workers busy meanwhile
                for offset, item in enumerate(current):
                    job = self.jobs[start + offset]
                    results = _run_job(self.reader, job, self.options) if pool is None else item.result()
                    self._store(job, results, status, skipped, position, writers)
                    if bar is not None:
                        bar.advance(task)
                for w in writers.values():
                    w.sync()
                done = min(nxt, len(self.jobs))
                self._save_state(done, status, skipped)
                if on_chunk is not None:
                    on_chunk(done)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            for w in writers.values():
                w.close()
            if bar is not None:
                bar.stop()
        manifest = self._finalise(status, skipped)
        counts = {p: manifest["parts"][p]["samples"] for p in self.parts}
        return PrepareSummary(out=self.out, counts=counts, skipped=skipped,
                              excluded=list(self.manifest_extra.get("excluded", [])), files=len(self.jobs) - resumed_from,
                              seconds=time.perf_counter() - started, resumed_from=resumed_from, manifest=manifest)

    def _store(self, job: Job, results: list, status: np.ndarray, skipped: list[Skipped], position: dict[str, int],
               writers: dict[str, NpyRowWriter]) -> None:
        for sample_index, result in zip(job.samples, results):
            sample = self.samples[sample_index]
            if isinstance(result, Exception):
                status[sample_index] = -1
                err = result if isinstance(result, DataFormatError) else DataFormatError(job.source, str(result))
                skipped.append(Skipped(name=sample.name, file=err.file, line=err.line, reason=err.message))
                log.warning("skipped %s: %s", sample.name, err)
                continue
            array, frames = result
            for part in sample.parts:
                writers[part].write(position[part], array)
                position[part] += 1
            status[sample_index] = max(1, int(frames))

    # --- finalising ----------------------------------------------------------------------------------
    def _finalise(self, status: np.ndarray, skipped: list[Skipped]) -> dict:
        parts_info: dict[str, dict] = {}
        for part in self.parts:
            folder, which = part.split("/")
            target_dir = self.out / folder
            target_dir.mkdir(parents=True, exist_ok=True)
            index = [i for i, s in enumerate(self.samples) if part in s.parts and status[i] > 0]
            data_tmp = self.partial / f"{part.replace('/', '__')}_data_joint.npy"
            data_final = target_dir / f"{which}_data_joint.npy"
            if data_tmp.exists():
                shrink_npy(data_tmp, len(index))
                os.replace(data_tmp, data_final)
            names = [self.samples[i].name + self.name_suffix for i in index]
            labels = [int(self.samples[i].label) for i in index]
            label_file = target_dir / f"{which}_label.pkl"
            write_bytes_atomic(label_file, pickle.dumps((names, labels), protocol=4))
            frames_file = target_dir / f"{which}_num_frame.npy"
            save_npy_atomic(frames_file, status[index].astype(np.int64))
            histogram = np.bincount(np.asarray(labels, dtype=np.int64),
                                    minlength=int(self.manifest_extra.get("num_classes", 0))).tolist()
            parts_info[part] = {
                "samples": len(index), "class_histogram": histogram,
                "files": {f.name: _sha256(f) for f in (data_final, label_file, frames_file)},
            }
        self._write_samples_csv(status, skipped)
        manifest = {
            "format": MANIFEST_FORMAT, "package_version": __version__, **self.manifest_extra,
            "options": self.options, "parts": parts_info,
            "skipped": [s.__dict__ for s in skipped], "fingerprint": self.fingerprint,
        }
        write_json_atomic(self.out / MANIFEST, manifest)
        shutil.rmtree(self.partial, ignore_errors=True)
        return manifest

    def _write_samples_csv(self, status: np.ndarray, skipped: list[Skipped]) -> None:
        reasons = {s.name: s.reason for s in skipped}
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "label", "setup", "camera", "subject", "repetition", "parts", "num_frames", "status"])
        for i, s in enumerate(self.samples):
            state = "ok" if status[i] > 0 else f"skipped: {reasons.get(s.name, 'not read')}"
            writer.writerow([s.name, s.label, *(s.meta.get(k, -1) for k in ("setup", "camera", "subject", "repetition")),
                             " ".join(s.parts), int(max(status[i], 0)), state])
        write_text_atomic(self.out / SAMPLES_CSV, buffer.getvalue())


def update_manifest(summary: PrepareSummary, **fields: Any) -> None:
    """Add ``fields`` to a finished preparation's ``manifest.json`` (and to ``summary.manifest``)."""
    path = summary.out / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    write_json_atomic(path, manifest)
    summary.manifest.update(fields)


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def format_summary(summary: PrepareSummary, *, strict: bool = False) -> str:
    """A human-readable end-of-run summary: counts per part, skipped files with file:line, excluded."""
    lines = [f"prepared {summary.out} in {summary.seconds:.1f} s "
             f"({summary.files} files read this run, {summary.files_per_second:.1f} files/s)"]
    if summary.resumed_from:
        lines.append(f"  resumed after {summary.resumed_from} files done earlier")
    for part, n in summary.counts.items():
        lines.append(f"  {part:<16} {n:>7} samples")
    official = summary.manifest.get("official_counts")
    if official:
        status = summary.manifest.get("official_counts_match")
        if status is None:
            lines.append("  official counts (FACTS §2) not checked: the release is incomplete")
        else:
            lines.append("  official counts (FACTS §2): " + ("match" if status else "DIFFER: " + json.dumps(official)))
    if summary.excluded:
        lines.append(f"  {len(summary.excluded)} samples excluded by the missing-skeleton list")
    if summary.skipped:
        lines.append(f"  {len(summary.skipped)} samples skipped ({'error' if strict else 'listed in manifest.json'}):")
        for s in summary.skipped[:20]:
            where = s.file if s.line is None else f"{s.file}:{s.line}"
            lines.append(f"    {where}: {s.reason}")
        if len(summary.skipped) > 20:
            lines.append(f"    ... and {len(summary.skipped) - 20} more (manifest.json)")
    return "\n".join(lines)
