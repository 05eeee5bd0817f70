"""Per-video frame-label files: ``<video>.txt``, one integer label per frame, a line each (0 = background).

The format ``usdrl-bench score-segmentation`` reads and the ``segmentation`` evaluation writes beside its
records (predictions and ground truth), so any method's output can be scored the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.io import is_safe_name, write_text_atomic

__all__ = ["read_label_file", "read_label_folder", "write_label_file"]


def read_label_file(path: str | Path) -> np.ndarray:
    """``(T,)`` int64 frame labels of one file; blank lines at the end are allowed.

    Raises:
        DataFormatError: a line that is not one integer >= 0 (file:line), or no frame at all.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    labels = []
    for i, line in enumerate(lines, 1):
        text = line.strip()
        try:
            value = int(text)
        except ValueError:
            raise DataFormatError(path, f"expected one integer frame label per line, got {line!r}", i) from None
        if value < 0:
            raise DataFormatError(path, f"frame label {value} is negative (0 = background)", i)
        labels.append(value)
    if not labels:
        raise DataFormatError(path, "no frame labels (one integer per frame, a line each)")
    return np.asarray(labels, dtype=np.int64)


def read_label_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """``{video: labels}`` of every ``<video>.txt`` in ``folder``.

    Raises:
        FileNotFoundError: not a folder, or no ``.txt`` file in it.
        DataFormatError: a malformed file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder of <video>.txt frame-label files: {folder}")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no <video>.txt frame-label file in {folder}")
    return {f.stem: read_label_file(f) for f in files}


def write_label_file(folder: str | Path, video: str, labels: np.ndarray) -> Path:
    """Write ``folder/<video>.txt`` atomically.

    Raises:
        ValueError: a video name that is not a plain file name.
    """
    if not is_safe_name(video):
        raise ValueError(f"video name {video!r} is not a plain file name")
    text = "\n".join(str(int(v)) for v in np.asarray(labels).reshape(-1)) + "\n"
    return write_text_atomic(Path(folder) / f"{video}.txt", text)
