"""Where a dataset's files are: the data root, and a dataset's location under it.

The route is one: the run's data root is resolved once (``--data-root`` / ``data_root=`` of the API, else
``$USDRL_DATA``, else ``./data``: :func:`resolve_data_root`); the run's plan then resolves each dataset's
location once (:func:`locate_dataset`: the path a protocol gives, else the registered ``locate(root)`` of a
named dataset under that root) and hands it to whoever loads the data, worker processes included. A reader
receives a path and nothing else about where data live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from usdrl_bench import registry

__all__ = ["DATA_ROOT_ENV", "DEFAULT_ROOT", "Location", "locate_dataset", "resolve_data_root"]

#: the environment variable naming the default data root
DATA_ROOT_ENV = "USDRL_DATA"
#: the data root when neither ``--data-root`` nor ``$USDRL_DATA`` names one
DEFAULT_ROOT = "data"


def resolve_data_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else ``$USDRL_DATA``, else ``./data`` (``~`` expanded; not required to exist)."""
    return Path(root if root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_ROOT).expanduser()


@dataclass(frozen=True)
class Location:
    """Where a dataset's reader reads, as resolved when the run was planned.

    Attributes:
        path: the path handed to the reader (absolute); None for a reader that needs no files (``synthetic``).
        missing: why a named dataset is not there (the registered ``locate``'s ``FileNotFoundError`` text), or
            None. Planning records it rather than failing, so that a run whose records all exist, or a forecast
            priced from the release's sizes, needs no data.
    """

    path: str | None
    missing: str | None = None

    def require(self) -> str | None:
        """:attr:`path`, or ``FileNotFoundError`` with :attr:`missing`."""
        if self.missing is not None:
            raise FileNotFoundError(self.missing)
        return self.path


def locate_dataset(name: str, path: str | Path | None, root: str | Path | None) -> Location:
    """The location of dataset ``name``: ``path`` when given (``~`` and ``$VARS`` expanded, made absolute); else,
    for a named dataset, its registered ``locate(root)`` under the data root ``root``
    (:func:`resolve_data_root` of it); else none (a reader that needs no files).

    Raises:
        KeyError: ``name`` is not a registered dataset.
    """
    if path is not None:
        return Location(str(Path(os.path.expandvars(os.path.expanduser(str(path)))).resolve()))
    locate = registry.DATASETS.entry(name).meta.get("locate")
    if locate is None:
        return Location(None)
    try:
        return Location(str(Path(locate(resolve_data_root(root))).resolve()))
    except FileNotFoundError as exc:
        return Location(None, missing=str(exc.args[0]) if exc.args else str(exc))
