"""Code identity for cache keys: the source of the modules that compute a result, and nothing else.

A checkpoint's key holds :func:`module_code` of its encoder's module, its objective's module and the
training loop (``usdrl_bench.train.pretrain``); a dataset's identity holds its reader's; a record's key
its evaluation's. Each is the hash of the source of that module's *import closure*: the module and every
module it imports (at module level or inside a function), transitively, within the suite or within the
plug-in's own top-level package. So editing a plug-in encoder retrains the rows that use it, and only
those; editing an evaluation re-evaluates its records and retrains nothing; adding a reader for another
format invalidates nothing.

How imports are followed (from the module's source, by :mod:`ast`):

- ``from pkg import name`` depends on the module that *defines* ``name`` (``name.__module__``), or on
  ``pkg.name`` when that is a module; ``import a.b`` on ``a.b``; relative imports are resolved.
- A package ``__init__`` reached through such an import contributes its own source and the imports it
  makes from *outside* the package; its imports of its own submodules are re-exports, and a module that
  uses one of those imports it by name (and so depends on it directly).
- Imports under ``if TYPE_CHECKING:`` are annotations, not behaviour, and are not followed.
- :data:`NOT_RESULT` modules are left out: they route, parse, write or log, and what they parse is in
  the key as values.
- Registry lookups by name are not imports: the components they return are roots of their own.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import sys

from usdrl_bench.io import stable_hash

__all__ = ["NOT_RESULT", "module_closure", "module_code"]

#: modules that cannot change a result: the name -> component tables and the decorators that fill them, where
#: data are found (the location is not in a key: moving the data keeps the caches), file writing and hashing, the
#: protocol parser (the values it parses are in every key), the declared value ranges (they refuse values,
#: never change one), the training log writers, the package's lazy top-level exports
NOT_RESULT = frozenset({
    "usdrl_bench",
    "usdrl_bench.ranges",
    "usdrl_bench.registry",
    "usdrl_bench.data.registration",
    "usdrl_bench.encoders.registration",
    "usdrl_bench.data.root",
    "usdrl_bench.io",
    "usdrl_bench.code_identity",
    "usdrl_bench.protocols.spec",
    "usdrl_bench.protocols.spec.model",
    "usdrl_bench.protocols.spec.loading",
    "usdrl_bench.protocols.spec.checking",
    "usdrl_bench.protocols.spec.expansion",
    "usdrl_bench.protocols.schema",
    "usdrl_bench.train.logs",
    "usdrl_bench.train.spec",
    "usdrl_bench._version",
})


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping ``if TYPE_CHECKING:`` bodies (their ``else`` is kept)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if _is_type_checking(node):
            stack.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_module(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


def _source(name: str) -> str | None:
    try:
        return inspect.getsource(importlib.import_module(name))
    except (OSError, TypeError, ImportError):
        return None


def _dependencies(name: str) -> set[str]:
    """Modules that ``name`` imports (see the module docstring for how names resolve)."""
    source = _source(name)
    if not source:
        return set()
    module = sys.modules[name]
    is_package = hasattr(module, "__path__")
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level \
            else node.module
        if not base:
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if alias.name != "*" and _is_module(sub):
                found.add(sub)
                continue
            defining = None
            if alias.name != "*":
                try:
                    defining = getattr(getattr(importlib.import_module(base), alias.name, None), "__module__", None)
                except ImportError:
                    defining = None
            found.add(defining if isinstance(defining, str) else base)
    return found


def _scope(root: str) -> tuple[str, ...]:
    """Module-name prefixes followed from ``root``: the suite, and a plug-in's own top-level package."""
    top = root.partition(".")[0]
    return ("usdrl_bench",) if top == "usdrl_bench" else ("usdrl_bench", top)


def _in_scope(name: str, scope: tuple[str, ...]) -> bool:
    return any(name == s or name.startswith(s + ".") for s in scope)


def module_closure(module: str) -> set[str]:
    """``module`` and the modules it imports, transitively, within the suite and the plug-in's own
    top-level package, less :data:`NOT_RESULT`.

    Raises:
        ModuleNotFoundError: ``module`` cannot be imported.
    """
    importlib.import_module(module)
    scope = _scope(module)
    seen: set[str] = set()
    stack = [(module, True)]
    while stack:
        name, is_root = stack.pop()
        if name in seen or (name in NOT_RESULT and not is_root) or not _in_scope(name, scope):
            continue
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        seen.add(name)
        deps = _dependencies(name)
        if not is_root and hasattr(sys.modules[name], "__path__"):  # a package reached by import: re-exports
            deps = {d for d in deps if not d.startswith(name + ".")}
        stack.extend((d, False) for d in deps if d not in seen)
    return seen


@functools.lru_cache(maxsize=None)
def module_code(module: str) -> str:
    """Hash (12 hex digits) of the names and sources of :func:`module_closure` ``(module)``: the code
    identity of what ``module`` computes. A module without source (frozen, compiled) counts by name."""
    digest = [[name, stable_hash(_source(name) or "")] for name in sorted(module_closure(module))]
    return stable_hash(digest, length=12)
