"""Every built-in component, registered: the packages that hold them, imported (each imports its own members,
which register themselves through the public decorators), plus the installed plug-ins' entry points; and the
error for a name nothing registered.

The built-ins: the datasets (:mod:`usdrl_bench.data.readers`, :mod:`usdrl_bench.data.synthetic`), the encoders
(:mod:`usdrl_bench.encoders`), the objectives (:mod:`usdrl_bench.objectives`), the evaluations
(:mod:`usdrl_bench.evaluate`, :mod:`usdrl_bench.detection`, :mod:`usdrl_bench.segmentation`) and USDRL the
method (:mod:`usdrl_bench.methods`). The peer methods shipped beside the suite are plug-ins
(:mod:`usdrl_bench.methods.shipped`).
"""

from __future__ import annotations

from typing import Any

from usdrl_bench import detection, encoders, evaluate, methods, objectives, registry, segmentation  # noqa: F401
from usdrl_bench.data import readers, synthetic  # noqa: F401 - importing a package registers its members
from usdrl_bench.methods.shipped import load_shipped_baselines

__all__ = ["load_builtins", "unknown_name_message"]


def load_builtins() -> None:
    """Every built-in component is registered (by this module's imports) and every installed plug-in of the
    entry-point group :data:`~usdrl_bench.registry.ENTRY_POINT_GROUP` is imported (idempotent).

    Raises:
        ImportError: an installed plug-in fails to import (naming it and its package).
    """
    registry.load_entry_points()


def unknown_name_message(reg: registry.Registry[Any], name: str) -> str:
    """The error for a name a protocol uses that ``reg`` does not hold, listing what ``usdrl-bench list``
    lists: the shipped baselines are loaded first (as ``list`` loads them), so a name one of them provides
    is named with the ``plugins:`` entry it needs, and the "Available" list is the same as ``list``'s."""
    try:
        load_shipped_baselines()
    except ImportError:  # a checkout without the baselines: the built-ins alone
        pass
    if name in reg:
        module = getattr(reg.entry(name).obj, "__module__", "") or "?"
        return (f"{reg.kind} {name!r} comes from the shipped plug-in {module}: add `plugins: [{module}]` to the "
                f"protocol (usdrl-bench list shows every name)")
    return reg.unknown_message(name) + " (usdrl-bench list shows them; a plug-in's names need it in plugins:)"
