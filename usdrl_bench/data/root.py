"""The data root: where named datasets are found.

``--data-root`` / ``data_root=`` of the API (carried by the run's plan, passed to the readers and set for
the duration of a load with :func:`using_data_root`), else ``$USDRL_DATA``, else ``./data``.
"""

from __future__ import annotations

import contextlib
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

__all__ = ["DATA_ROOT_ENV", "DEFAULT_ROOT", "resolve_data_root", "using_data_root"]

#: the environment variable naming the default data root
DATA_ROOT_ENV = "USDRL_DATA"
#: the data root when neither ``--data-root`` nor ``$USDRL_DATA`` names one
DEFAULT_ROOT = "data"

#: the data root of the load in progress (:func:`using_data_root`); None outside one
_ACTIVE_ROOT: ContextVar[Path | None] = ContextVar("usdrl_bench_data_root", default=None)


def resolve_data_root(root: str | Path | None = None) -> Path:
    """``root`` if given, else the root of the load in progress (:func:`using_data_root`), else
    ``$USDRL_DATA``, else ``./data``."""
    if root is None:
        root = _ACTIVE_ROOT.get()
    return Path(root if root is not None else os.environ.get(DATA_ROOT_ENV) or DEFAULT_ROOT).expanduser()


@contextlib.contextmanager
def using_data_root(root: str | Path | None) -> Iterator[None]:
    """Within the block, :func:`resolve_data_root` (and so ``usdrl_bench.data_root()`` in a plug-in's
    ``locate``) answers ``root``; ``None`` changes nothing. Scoped to the block and the current context
    (thread, task); the process environment is not touched."""
    if root is None:
        yield
        return
    token = _ACTIVE_ROOT.set(Path(root))
    try:
        yield
    finally:
        _ACTIVE_ROOT.reset(token)
