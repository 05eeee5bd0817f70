"""The public decorator that makes a reader a dataset (:func:`register_dataset`): the built-in readers register
through it as a plug-in's do (``usdrl_bench.register_dataset``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

from usdrl_bench.registry import DATASETS

if TYPE_CHECKING:
    from usdrl_bench.data.arrays import SkeletonArrays

__all__ = ["register_dataset", "Reader"]

#: A dataset reader: ``(path, split, **options) -> (train, test)``.
Reader = Callable[..., "tuple[SkeletonArrays, SkeletonArrays]"]
R = TypeVar("R", bound=Callable[..., Any])


def register_dataset(name: str, *, splits: Sequence[str], default_split: str | None = None, description: str = "",
                     locate: Callable[[Path], str | Path] | None = None, files: bool = True) -> Callable[[R], R]:
    """Function decorator registering a dataset reader as dataset ``name``.

    The reader is called as ``reader(path, split, **options)``: ``path`` is where the data are, resolved once
    when the run is planned (a ``str``: the protocol's ``path``, or the ``PATH`` of ``--dataset name:PATH``,
    made absolute; or, for a dataset registered with ``locate``, what ``locate`` returned), ``split`` one of
    ``splits``, ``options`` the protocol's ``options`` (checked against the reader's keyword parameters
    before any work). It returns ``(train, test)``, two :class:`SkeletonArrays` whose ``layout`` is a
    registered :class:`Layout` with the arrays' joint count. The suite then checks labels and coordinates (a
    label outside ``[0, num_classes)`` or a NaN is an error naming the sample). A reader that normalises its
    sequences can use :mod:`usdrl_bench.data.normalize` (``normalize_arrays``: centre, shoulder alignment,
    scaling, for any layout).

    The reader's module is part of every cache key built on the data: editing it re-trains what used it.

    Args:
        name: the name protocols and ``--dataset`` use.
        splits: the named splits the reader knows (``("xview",)``); the first is the default unless
            ``default_split``.
        default_split: the split used when a protocol names none.
        description: one line for ``usdrl-bench list`` (default: the reader's docstring's first line).
        locate: makes ``name`` a named dataset, found without a path: ``locate(root)`` receives the run's data
            root (a :class:`~pathlib.Path`: ``--data-root``, else ``$USDRL_DATA``, else ``./data``) and returns
            the dataset's folder (or file) under it, or raises ``FileNotFoundError`` saying what to download.
            The run's plan calls it once; the reader receives its answer as ``path``.
        files: False for a reader that makes its data (``synthetic``): it needs neither a path nor ``locate``
            (``path`` is None).
    Raises:
        TypeError: the reader is not callable or does not take ``(path, split)`` positionally.
        ValueError: ``name`` is taken, ``splits`` is empty, or ``default_split`` is not one of ``splits``.
    """
    splits = tuple(splits)
    if not splits:
        raise ValueError(f"register_dataset({name!r}): splits must name at least one split")
    default = default_split if default_split is not None else splits[0]
    if default not in splits:
        raise ValueError(f"register_dataset({name!r}): default_split {default!r} is not one of {splits}")

    def decorator(reader: R) -> R:
        if not callable(reader):
            raise TypeError(f"register_dataset({name!r}) decorates a reader function, got {reader!r}")
        params = [p for p in inspect.signature(reader).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) < 2:
            raise TypeError(f"register_dataset({name!r}): the reader must take (path, split, **options); "
                            f"{getattr(reader, '__qualname__', reader)} takes {len(params)} positional parameter(s)")
        doc = description or (reader.__doc__ or "").strip().split("\n")[0]
        DATASETS.register(name, description=doc, splits=splits, default_split=default,
                          needs_path=files and locate is None, named=locate is not None, locate=locate)(reader)
        return reader

    return decorator
