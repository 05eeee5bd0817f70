"""Load a dataset named in a protocol through the dataset registry, and check what came back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from usdrl_bench import registry
from usdrl_bench.data import readers, synthetic  # noqa: F401 - importing them registers the built-in datasets
from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.root import locate_dataset
from usdrl_bench.skeleton import LAYOUTS

#: samples checked per block when scanning (possibly memory-mapped) arrays for non-finite values
_CHUNK = 512


def check_arrays(arrays: SkeletonArrays, part: str) -> None:
    """Reject what would silently give a wrong number: non-finite coordinates (an all-NaN probe still
    "scores" a top-1) and labels outside ``[0, num_classes)`` (which would become an extra class).

    Scans memory-mapped data block by block (NTU-60 xsub's 7.2 GB: a few seconds), once per dataset.

    Raises:
        ValueError: naming the source, the part, the first offending sample (index and name) and the value.
    """
    def where(i: int) -> str:
        name = arrays.names[i] if i < len(arrays.names) else ""
        return f"{arrays.source} ({part} part), sample {i}" + (f" ({name})" if name else "")

    labels = np.asarray(arrays.labels)
    bad = np.flatnonzero((labels < 0) | (labels >= arrays.num_classes))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where(i)}: label {int(labels[i])} is outside [0, {arrays.num_classes}) "
                         f"({bad.size} such samples); check the label file or the reader's num_classes")
    for lo in range(0, len(arrays), _CHUNK):
        block = np.asarray(arrays.data[lo:lo + _CHUNK])
        finite = np.isfinite(block).reshape(len(block), -1).all(axis=1)
        if not finite.all():
            i = lo + int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{where(i)}: non-finite coordinates (NaN or infinity); repair or drop the sample")


def read_dataset(name: str, path: str | None, split: str, **options: Any) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) of dataset ``name`` (a registered reader) read from ``path`` (already located:
    :func:`~usdrl_bench.data.root.locate_dataset`; None for a reader that needs no files) under ``split``, with
    the reader's ``options``, checked (registered layout with the arrays' joint count, :func:`check_arrays`).

    Raises:
        KeyError: unknown dataset or split.
        FileNotFoundError: missing path.
        DataFormatError: a malformed file (named).
        ValueError: non-finite coordinates or a label outside the class range (naming the sample), or a
            layout that is not registered or has another joint count.
        TypeError: the reader returned something other than two SkeletonArrays.
    """
    registry.load_entry_points()
    reader = registry.DATASETS.get(name)
    result = reader(path, split, **options)
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(a, SkeletonArrays) for a in result)):
        raise TypeError(f"dataset {name!r}: the reader must return (train, test), two usdrl_bench.SkeletonArrays; "
                        f"got {type(result).__name__}")
    train, test = result
    for part, arrays in (("training", train), ("test", test)):
        if arrays.layout not in LAYOUTS:
            raise ValueError(f"dataset {name!r} ({part} part): layout {arrays.layout!r} is not registered "
                             f"(usdrl_bench.register_layout); known: {', '.join(sorted(LAYOUTS))}")
        if LAYOUTS[arrays.layout].num_joints != arrays.shape[3]:
            raise ValueError(f"dataset {name!r} ({part} part): V = {arrays.shape[3]} joints but layout "
                             f"{arrays.layout!r} has {LAYOUTS[arrays.layout].num_joints}")
    check_arrays(train, "training")
    check_arrays(test, "test")
    return train, test


def load_dataset(name: str, path: str | Path | None = None, split: str | None = None, *,
                 data_root: str | Path | None = None, **options: Any) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) of dataset ``name`` at ``path`` under ``split`` (default: the dataset's default split):
    located (:func:`~usdrl_bench.data.root.locate_dataset`: a named dataset without a path is found by its
    registered ``locate`` under ``data_root``, default ``$USDRL_DATA``, else ``./data``), then
    :func:`read_dataset`. The one call for a script; a run locates when it plans and reads with
    :func:`read_dataset`.

    Raises:
        FileNotFoundError: a named dataset not under the data root (the message says what to download).
        KeyError: unknown dataset or split; and what :func:`read_dataset` raises.
    """
    registry.load_entry_points()
    entry = registry.DATASETS.entry(name)
    location = locate_dataset(name, path, data_root).require()
    return read_dataset(name, location, split if split is not None else entry.meta.get("default_split", "xsub"),
                        **options)
