"""The package's import graph: layers that point one way, no import circle, deferred imports said why.

Every import of a ``usdrl_bench`` module by another (at module level or inside a function; annotations under
``if TYPE_CHECKING:`` aside) must point to the same top-level package or to a lower layer of
:data:`LAYERS`. Imports inside functions are kept to the command line and the package root (they keep
``usdrl-bench --help`` and ``import usdrl_bench`` from importing torch); anywhere else a function-level
import must be of a third-party module and say why on its line or the line above (``# deferred: ...``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "usdrl_bench"

#: lowest first; a module may import its own top-level package and any lower layer, nothing else
LAYERS: list[set[str]] = [
    {"_version", "io", "registry", "ranges"},  # the version, file writing and hashing, the component tables, ranges
    {"code_identity", "records", "skeleton", "distributed"},  # cache code keys, records, layouts, DDP
    {"data"},  # readers, preparation, synthetic data, augmentations
    {"encoders", "objectives", "evaluate"},  # models, losses, evaluation protocols
    {"train", "detection", "methods"},  # the pretraining loop; detection; methods (USDRL, official checkpoints)
    {"segmentation"},
    {"components"},  # every built-in component, registered by importing the packages above
    {"protocols", "report"},  # protocol files, the run plan, scheduling, evaluation; tables and figures
    {"api", "extend"},  # the Python API, the extension contract
    {"cli"},  # the command line
    {"__main__", "__init__"},  # ``python -m usdrl_bench`` and the package root
]
#: modules whose function-level imports of the suite are deliberate (start-up time of the CLI and the root)
LAZY_MODULES = {"usdrl_bench/cli.py", "usdrl_bench/__init__.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    top = _top(module)
    for i, layer in enumerate(LAYERS):
        if top in layer:
            return i
    raise AssertionError(f"{module}: its top-level name {top!r} is in no layer of LAYERS; add it where it belongs")


def _skip_type_checking(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: Path, modules: set[str]):
    """(imported suite module, line, inside a function) for each import in ``path``."""
    name = _module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    in_function = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(fn) if n is not fn}
    for node in _skip_type_checking(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            if target.split(".")[0] != "usdrl_bench":
                if id(node) in in_function:
                    yield target, node.lineno, True
                continue
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                yield target, node.lineno, id(node) in in_function


def _graph():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return files, modules


def test_every_import_points_down_the_layers():
    files, modules = _graph()
    wrong = []
    for path in files:
        name = _module_name(path)
        for target, line, _ in _imports(path, modules):
            if not target.startswith("usdrl_bench"):
                continue
            same_package = _top(target) == _top(name)
            if not same_package and _layer(target) >= _layer(name):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} "
                             f"(layer {_layer(name)} -> layer {_layer(target)})")
    assert not wrong, "imports that point up or sideways:\n" + "\n".join(wrong)


def _edges() -> tuple[set[str], dict[str, set[str]]]:
    files, modules = _graph()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for path in files:
        name = _module_name(path)
        for target, _, _ in _imports(path, modules):
            if target.startswith("usdrl_bench"):
                edges[name].add(target)
    return modules, edges


def _circles(nodes: set[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each is an import circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle():
    modules, edges = _edges()
    circles = _circles(modules, edges)
    assert not circles, f"import circles: {circles}"


def _rooms(package: str, modules: set[str]) -> dict[str, str]:
    """module -> the room of ``package`` it lives in (its child module or sub-package), for the modules
    inside ``package`` (the package's own ``__init__`` is the door, not a room)."""
    prefix = package + "."
    return {m: prefix + m[len(prefix):].split(".")[0] for m in modules if m.startswith(prefix)}


def test_no_loop_between_the_rooms_of_a_package():
    """Inside every package, its rooms (child modules and sub-packages: ``data.readers``, ``data.preparation``,
    ``data.arrays`` ...) import each other one way: a loop between two rooms is a circle the module-level
    check misses when no single module closes it."""
    modules, edges = _edges()
    packages = sorted({m.rsplit(".", 1)[0] for m in modules if m.count(".") >= 2})
    loops = []
    for package in packages:
        room_of = _rooms(package, modules)
        room_edges: dict[str, set[str]] = {}
        for module, room in room_of.items():
            for target in edges[module]:
                other = room_of.get(target)
                if other is not None and other != room:
                    room_edges.setdefault(room, set()).add(other)
        loops += _circles(set(room_of.values()), room_edges)
    assert not loops, f"rooms importing each other: {loops}"


def test_imports_inside_functions_are_deferred_on_purpose():
    files, modules = _graph()
    wrong = []
    for path in files:
        rel = str(path.relative_to(PACKAGE.parent))
        lines = path.read_text().split("\n")
        for target, line, inside in _imports(path, modules):
            if not inside or rel in LAZY_MODULES:
                continue
            above = line - 2  # a comment may head a block of imports
            while above > 0 and lines[above].strip().startswith(("import ", "from ")) and "# deferred" not in lines[above]:
                above -= 1
            said = "# deferred" in lines[line - 1] or "# deferred" in lines[above]
            if target.startswith("usdrl_bench"):
                wrong.append(f"{rel}:{line} imports {target} inside a function (import it at module level)")
            elif not said:
                wrong.append(f"{rel}:{line} imports {target} inside a function without '# deferred: <why>'")
    assert not wrong, "\n".join(wrong)


#: the most lines a function's body (its statements after the docstring) may have without a ``# long:`` comment
MAX_BODY_LINES = 60


def _long_functions() -> list[str]:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        lines = source.split("\n")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                body = body[1:]
            length = node.end_lineno - body[0].lineno + 1
            head = lines[max(node.lineno, body[0].lineno - 6):body[0].lineno]  # the comment opens the body
            said = any(line.strip().startswith("# long:") for line in head)
            if length > MAX_BODY_LINES and not said:
                long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length} lines")
    return long


def test_functions_are_short_or_say_why_they_are_long():
    """A function body over 60 lines opens with a ``# long: <why>`` comment (the pretraining loop does)."""
    long = _long_functions()
    assert not long, "split these, or open them with '# long: <why>':\n" + "\n".join(long)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The checks can fail: a data module importing the protocols layer is reported."""
    fake = tmp_path / "usdrl_bench"
    (fake / "data").mkdir(parents=True)
    (fake / "protocols").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "protocols" / "__init__.py").write_text("")
    (fake / "data" / "reader.py").write_text("from usdrl_bench.protocols.spec import X\n\ndef f():\n    import scipy\n")
    (fake / "protocols" / "spec.py").write_text("from usdrl_bench.data.reader import f\n\n\ndef g():\n"
                                                + "    x = 1\n" * (MAX_BODY_LINES + 1))
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    with pytest.raises(AssertionError, match=r"data/reader.py:1 imports usdrl_bench.protocols.spec \(layer 2 -> layer 7\)"):
        test_every_import_points_down_the_layers()
    with pytest.raises(AssertionError, match=r"import circles: \[\['usdrl_bench.data.reader', 'usdrl_bench.protocols.spec'\]\]"):
        test_no_import_circle()
    # a loop between two rooms of one package that no single module closes
    (fake / "data" / "readers").mkdir()
    (fake / "data" / "preparation").mkdir()
    for room, text in (("readers", "from usdrl_bench.data.preparation.steps import s\n"),
                       ("preparation", "from usdrl_bench.data.readers.bar import b\n")):
        (fake / "data" / room / "__init__.py").write_text("")
        (fake / "data" / room / "first.py").write_text(text)
    (fake / "data" / "readers" / "bar.py").write_text("b = 1\n")
    (fake / "data" / "preparation" / "steps.py").write_text("s = 1\n")
    with pytest.raises(AssertionError, match=r"rooms importing each other: \[\['usdrl_bench.data.preparation', "
                                             r"'usdrl_bench.data.readers'\]\]"):
        test_no_loop_between_the_rooms_of_a_package()
    with pytest.raises(AssertionError, match="imports scipy inside a function without"):
        test_imports_inside_functions_are_deferred_on_purpose()
    with pytest.raises(AssertionError, match=rf"protocols/spec.py:4 g: {MAX_BODY_LINES + 1} lines"):
        test_functions_are_short_or_say_why_they_are_long()
