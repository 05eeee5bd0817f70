"""Row-wise writing of large ``.npy`` files without holding them in memory or mapping them.

A prepared NTU-120 split is about 11 GB as float32; :class:`NpyRowWriter` creates the file at its
final capacity (sparse on disk) and writes each sample's bytes at its offset with ``os.pwrite``, so
the process never holds more than the rows it is writing, and no file pages are mapped into it
(writing through ``np.memmap`` would count every touched page in the resident set).
:func:`shrink_npy` later cuts the file to the rows actually written (a sample that could not be
read leaves no hole).
"""

from __future__ import annotations

import ast
import os
import struct
from pathlib import Path

import numpy as np

_MAGIC = b"\x93NUMPY\x01\x00"
_ALIGN = 64


def npy_header(shape: tuple[int, ...], dtype: np.dtype, total_length: int | None = None) -> bytes:
    """A version-1.0 ``.npy`` header for a C-order array, padded to ``total_length`` bytes (default: the
    smallest multiple of 64 that fits).

    Raises:
        ValueError: the header does not fit in ``total_length``.
    """
    body = ("{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.dtype(dtype).str, tuple(shape))).encode("latin1")
    needed = len(_MAGIC) + 2 + len(body) + 1
    total = total_length if total_length is not None else -(-needed // _ALIGN) * _ALIGN
    if needed > total:
        raise ValueError(f"an .npy header for shape {shape} needs {needed} bytes, more than {total}")
    header = body + b" " * (total - needed) + b"\n"
    return _MAGIC + struct.pack("<H", len(header)) + header


def read_npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, header length in bytes)`` of a C-order ``.npy`` file (versions 1.0 and 2.0)."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        if major == 1:
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if fortran:
            raise ValueError(f"{path}: Fortran-order arrays are not supported here")
        return tuple(shape), np.dtype(dtype), fh.tell()


class NpyRowWriter:
    """Write rows (first-axis items) of a C-order ``.npy`` file of fixed capacity, in any order.

    Args:
        path: the file; created with ``capacity`` rows when it does not exist, reopened (its shape
            checked) when it does, so an interrupted writer can go on where it stopped.
        row_shape: shape of one row, e.g. ``(3, 300, 25, 2)``.
        capacity: number of rows of the file.
        dtype: element type (float32).

    Raises:
        ValueError: an existing file has another shape or dtype.
    """

    def __init__(self, path: str | Path, row_shape: tuple[int, ...], capacity: int, dtype=np.float32) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        shape = (int(capacity),) + self.row_shape
        if self.path.exists():
            found, found_dtype, self.offset = read_npy_header(self.path)
            if found != shape or found_dtype != self.dtype:
                raise ValueError(f"{self.path} holds {found} {found_dtype}, expected {shape} {self.dtype}")
        else:
            header = npy_header(shape, self.dtype)
            tmp = self.path.with_name(self.path.name + ".new")
            with open(tmp, "wb") as fh:
                fh.write(header)
                fh.truncate(len(header) + shape[0] * self.row_bytes)  # sparse: no blocks written
            os.replace(tmp, self.path)
            self.offset = len(header)
        self.capacity = shape[0]
        self._fd = os.open(self.path, os.O_RDWR)

    def write(self, index: int, rows: np.ndarray) -> None:
        """Write ``rows`` (``(k,) + row_shape``, or one row) at row ``index``."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape == self.row_shape:
            rows = rows[None]
        if rows.shape[1:] != self.row_shape or not 0 <= index <= self.capacity - len(rows):
            raise ValueError(f"rows {rows.shape} at {index} do not fit {self.path} ({self.capacity} x {self.row_shape})")
        os.pwrite(self._fd, rows.tobytes(), self.offset + index * self.row_bytes)

    def sync(self) -> None:
        """Flush the written bytes to disk (before recording progress that relies on them)."""
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "NpyRowWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def shrink_npy(path: str | Path, rows: int) -> None:
    """Cut a C-order ``.npy`` file to its first ``rows`` rows in place (header rewritten to the same length,
    file truncated). Idempotent.

    Raises:
        ValueError: ``rows`` exceeds the rows of the file.
    """
    path = Path(path)
    shape, dtype, offset = read_npy_header(path)
    if rows > shape[0]:
        raise ValueError(f"{path} has {shape[0]} rows, cannot keep {rows}")
    new_shape = (int(rows),) + tuple(shape[1:])
    header = npy_header(new_shape, dtype, total_length=offset)
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    with open(path, "r+b") as fh:
        fh.write(header)
        fh.truncate(offset + rows * row_bytes)
        fh.flush()
        os.fsync(fh.fileno())
    # a cheap self-check that numpy reads what was written
    check = ast.literal_eval(header[10:].decode("latin1"))
    assert tuple(check["shape"]) == new_shape
