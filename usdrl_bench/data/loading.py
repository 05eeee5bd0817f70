"""Load a dataset named in a protocol through the dataset registry."""

from __future__ import annotations

from usdrl_bench import registry
from usdrl_bench.data.arrays import SkeletonArrays


def load_dataset(name: str, path: str | None, split: str, **options) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) of dataset ``name`` (a registered reader) at ``path`` under ``split``.

    Raises:
        KeyError: unknown dataset or split; FileNotFoundError: missing path; DataFormatError: bad file.
    """
    registry.load_builtins()
    reader = registry.DATASETS.get(name)
    return reader(path, split, **options)
