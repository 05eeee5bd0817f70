"""One generic registry per kind of component (encoders, objectives, datasets, evaluations, methods): the tables.

Components register themselves at import time through the public decorators (``usdrl_bench.register_encoder``,
``register_objective``, ``register_dataset``, ``register_method``), built-in and plug-in alike, the way timm's
``register_model`` fills a plain dict. The table knows no module: a package imports its own members, the
built-ins are loaded by importing their packages (:func:`usdrl_bench.components.load_builtins`), a protocol's
plug-ins by the names it gives (:func:`load_plugins`), installed plug-ins by their entry points
(:func:`load_entry_points`).

``ENCODERS.get("my_encodr")`` raises ``KeyError`` with "Did you mean: my_encoder?" and the list of
available names.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered component: its name, the object (usually a factory), and a one-line description."""

    name: str
    obj: T
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """A name -> component mapping for one kind of component.

    Args:
        kind: what the registry holds, singular ("encoder"); used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str = "", **meta: Any) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``.

        Raises:
            ValueError: if ``name`` is already registered to a different object.
        """

        def decorator(obj: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing.obj is not obj:
                qual = getattr(existing.obj, "__qualname__", repr(existing.obj))
                raise ValueError(f"{self.kind} {name!r} is already registered (to {qual})")
            doc = description or (obj.__doc__ or "").strip().split("\n")[0]
            self._entries[name] = Entry(name=name, obj=obj, description=doc, meta=dict(meta))
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the component registered as ``name``.

        Raises:
            KeyError: unknown name; the message suggests close matches and lists what is available.
        """
        return self.entry(name).obj

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._entries), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._entries)) or '(none)'}"

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching a shell-style ``pattern`` (``"dste*"``)."""
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


ENCODERS: Registry[Callable[..., Any]] = Registry("encoder")
OBJECTIVES: Registry[Callable[..., Any]] = Registry("objective")
DATASETS: Registry[Callable[..., Any]] = Registry("dataset")
EVALUATIONS: Registry[Callable[..., Any]] = Registry("evaluation")
#: published methods: encoder + objective + presets + paper (:mod:`usdrl_bench.methods`)
METHODS: Registry[Any] = Registry("method")

ALL = {"methods": METHODS, "encoders": ENCODERS, "objectives": OBJECTIVES, "datasets": DATASETS,
       "evaluations": EVALUATIONS}


#: entry-point group of pip-installed plug-in packages (``[project.entry-points."usdrl_bench.plugins"]``)
ENTRY_POINT_GROUP = "usdrl_bench.plugins"
_entry_points_loaded = False


def load_entry_points() -> None:
    """Import every installed plug-in of the entry-point group :data:`ENTRY_POINT_GROUP` (once; idempotent). The
    built-in components are registered by their packages' imports (:func:`usdrl_bench.components.load_builtins`),
    never by a module name here.

    Raises:
        ImportError: an installed plug-in fails to import (naming it and its package).
    """
    global _entry_points_loaded
    if not _entry_points_loaded:
        _entry_points_loaded = True

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plug-in is named, not hidden
                dist = getattr(ep, "dist", None)
                raise ImportError(f"installed plug-in {ep.name!r} ({ep.value}"
                                  f"{', package ' + dist.name if dist is not None else ''}) failed to import: {exc}") from exc


def load_plugins(modules: list[str] | tuple[str, ...], relative_to: str | os.PathLike | None = None) -> None:
    """Import user modules (a protocol's ``plugins:``) so that their components register themselves.

    A module is found relative to ``relative_to`` (the protocol file's folder: ``plugins: [my_method]`` next
    to the YAML), then on ``sys.path`` (the working directory included, so that ``baselines.x`` resolves
    from a checkout, as with ``python -m``), or as an installed package.

    Raises:
        ImportError: naming the module that could not be imported.
    """
    if modules:
        for folder in (os.getcwd(), os.fspath(relative_to) if relative_to is not None else None):
            if folder and folder not in sys.path:
                sys.path.insert(0, folder)
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ImportError(f"could not import plugin module {module!r}: {exc}") from exc
