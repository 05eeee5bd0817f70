"""The peer methods shipped beside the suite: the modules of the ``baselines`` package (installed with the suite;
one module per method, each registering its encoder, objective and method through the public API, as any
plug-in does). ``usdrl-bench list``, official-checkpoint loading and the reproduction report load them; a
protocol that uses one names it in ``plugins:``.
"""

from __future__ import annotations

import importlib.util
import pkgutil

from usdrl_bench.registry import load_plugins

__all__ = ["SHIPPED_PACKAGE", "shipped_baselines", "load_shipped_baselines"]

#: the package of the shipped peer methods (a sibling of ``usdrl_bench`` in a checkout and an installation)
SHIPPED_PACKAGE = "baselines"


def shipped_baselines() -> list[str]:
    """The modules of :data:`SHIPPED_PACKAGE` (``baselines.cmd``, ...), sorted; empty where it is absent."""
    spec = importlib.util.find_spec(SHIPPED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return sorted(f"{SHIPPED_PACKAGE}.{m.name}" for m in pkgutil.iter_modules(spec.submodule_search_locations)
                  if not m.name.startswith("_"))


def load_shipped_baselines() -> list[str]:
    """Import every shipped peer method (registering it); returns their modules.

    Raises:
        ImportError: one fails to import (naming it).
    """
    modules = shipped_baselines()
    load_plugins(modules)
    return modules
