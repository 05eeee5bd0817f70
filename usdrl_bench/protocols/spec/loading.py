"""Loading a protocol file: YAML read safely (``include:`` files merged underneath, a preset's ``extends:``
resolved, ``--set`` overrides applied), validated into the :mod:`.model` (types, keys, declared ranges), its
plug-ins imported, its method rows and released-weights rows resolved, and every name checked (:mod:`.checking`).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from usdrl_bench import registry
from usdrl_bench.components import load_builtins, unknown_name_message
from usdrl_bench.protocols.released import load_released, resolve_checkpoint
from usdrl_bench.protocols.schema import ProtocolError, check_options, from_data, merge
from usdrl_bench.protocols.spec.checking import check_names, check_registry
from usdrl_bench.protocols.spec.model import Protocol, RowSpec
from usdrl_bench.train.spec import PretrainSpec

__all__ = ["load_protocol", "apply_overrides", "yaml_problem"]


def load_protocol(path: str | Path, overrides: "tuple[str, ...] | list[str]" = ()) -> Protocol:
    """Read and structurally validate a protocol YAML (types, keys, registry names, options).

    Args:
        path: the YAML file.
        overrides: ``KEY.PATH=VALUE`` strings (``--set``) applied to the file's content after includes and
            ``extends`` are resolved and before validation, so they are checked like the file's own keys.
            ``KEY.PATH`` is dot-separated (a list element by its index: ``rows.0.label``); ``VALUE`` is read as
            YAML (``3``, ``true``, ``[120, 140]``, ``{k: 1}``, text). They are kept in ``Protocol.overrides``
            and reach every record.

    Raises:
        FileNotFoundError: the file does not exist.
        ProtocolError: invalid content or override; names the file and the key.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file not found: {path}")
    data = _resolve_extends(_read_with_includes(path, ()), file)
    data = apply_overrides(data, overrides, file)
    data.pop("overrides", None)
    protocol: Protocol = from_data(Protocol, data, file)
    protocol = dataclasses.replace(protocol, file=file, overrides=tuple(overrides))
    load_builtins()
    registry.load_plugins(protocol.plugins, relative_to=Path(protocol.file).resolve().parent)
    protocol = _resolve_methods(protocol, data)
    check_names(protocol)
    return protocol


def _check_method_preset(method: Any, preset_name: str, file: str) -> None:
    """A method preset's names and option types, checked as a protocol's own (the key names the method)."""
    mp = method.preset(preset_name)
    where = f"method {method.name}.presets.{preset_name}"
    for kind, name in ((registry.ENCODERS, method.encoder), (registry.OBJECTIVES, method.objective)):
        check_registry(kind, name, file, where)
    check_options(registry.OBJECTIVES.get(method.objective), mp.objective_options, file,
                        f"{where}.objective_options", skip=1)
    for ename, options in mp.evaluations.items():
        check_registry(registry.EVALUATIONS, ename, file, f"{where}.evaluations.{ename}")
        check_options(registry.EVALUATIONS.get(ename), options or {}, file, f"{where}.evaluations.{ename}", skip=1)
    unknown = sorted(set(mp.pretrain) - {f.name for f in dataclasses.fields(PretrainSpec)})
    if unknown:
        raise ProtocolError(file, f"{where}.pretrain", f"unknown key(s) {unknown}")


def _resolve_methods(protocol: Protocol, data: dict[str, Any]) -> Protocol:
    """Rows with ``method:`` get the method's encoder, and its objective unless the row's mapping names an
    ``objective`` (``null``: random initialisation); every preset must find the method's preset.

    Raises:
        ProtocolError: an unknown method, or a preset the method lacks (naming the file and key).
    """
    raw_rows = data.get("rows") if isinstance(data.get("rows"), list) else []
    rows = list(protocol.rows)
    for i, row in enumerate(rows):
        if row.method is None:
            continue
        where = f"rows[{i}].method"
        if row.method not in registry.METHODS:
            raise ProtocolError(protocol.file, where, unknown_name_message(registry.METHODS, row.method))
        method = registry.METHODS.get(row.method)
        raw = raw_rows[i] if i < len(raw_rows) and isinstance(raw_rows[i], dict) else {}
        rows[i] = dataclasses.replace(row, encoder=row.encoder or method.encoder,
                                      objective=row.objective if "objective" in raw else method.objective)
        for pname, preset in protocol.presets.items():
            wanted = preset.method_preset or pname
            if wanted not in method.presets:
                raise ProtocolError(protocol.file, f"presets.{pname}.method_preset",
                                    f"method {method.name!r} (rows[{i}]) has no preset {wanted!r}; its presets: "
                                    f"{', '.join(method.presets)}")
            _check_method_preset(method, wanted, protocol.file)
    for i, row in enumerate(rows):  # released weights, with or without a method (its format, or the suite's)
        if row.checkpoint is not None:
            rows[i] = _resolve_released(protocol, row, i, raw_rows)
    return dataclasses.replace(protocol, rows=tuple(rows))


def _resolve_released(protocol: Protocol, row: RowSpec, i: int, raw_rows: list[Any]) -> RowSpec:
    """A released-weights row: its file found and read (the encoder named from it), no objective.

    Raises:
        ProtocolError: an objective or ensemble beside ``checkpoint``, a missing or unreadable file (naming the
            file and key).
    """
    where = f"rows[{i}].checkpoint"
    raw = raw_rows[i] if i < len(raw_rows) and isinstance(raw_rows[i], dict) else {}
    if row.ensemble is not None or raw.get("objective") is not None:
        raise ProtocolError(protocol.file, where, "a released-weights row evaluates its file: give no objective or ensemble")
    path = resolve_checkpoint(row.checkpoint, protocol.file)
    if not path.is_file():
        raise ProtocolError(protocol.file, where, f"no such file: {path}")
    try:
        encoder = load_released(path, row.method, row.checkpoint_args)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(protocol.file, where, f"{path} does not load"
                            f"{' as ' + row.method + ' (its official format)' if row.method else ''}: {exc}") from exc
    return dataclasses.replace(row, checkpoint=str(path), encoder=encoder.encoder_name, objective=None)


def apply_overrides(data: dict[str, Any], overrides: "tuple[str, ...] | list[str]", file: str) -> dict[str, Any]:
    """``data`` with each ``KEY.PATH=VALUE`` of ``overrides`` set (see :func:`load_protocol`); a copy.

    Raises:
        ProtocolError: an override without ``=``, an empty key, a list index that is not a number or out of
            range, or a path through a value that is not a mapping or list (naming the file and the key).
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ProtocolError(file, "--set", f"expected KEY.PATH=VALUE, got {item!r}")
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ProtocolError(file, key, f"--set value {raw!r} is not valid YAML: {yaml_problem(exc)}") from None
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ProtocolError(file, where, f"--set: {part!r} is not an index of this list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ProtocolError(file, where, f"--set: {'.'.join(parts[:depth])} holds {node!r}, not a mapping or list")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line a user can act on: ``line 3, column 1: while parsing a flow node, expected the
    node content, but found '<stream end>'`` (PyYAML's own text names an anonymous stream)."""
    mark = getattr(exc, "problem_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = ", ".join(p for p in parts if p) or str(exc).splitlines()[0]
    return (f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else "") + text


def _resolve_extends(data: dict[str, Any], file: str) -> dict[str, Any]:
    """Presets with ``extends: <other preset>`` get that preset's keys merged underneath their own
    (recursively), so that a variant of ``demo`` names only what differs.

    Raises:
        ProtocolError: an unknown or circular ``extends``.
    """
    presets = data.get("presets")
    if not isinstance(presets, dict):
        return data

    def resolved(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        preset = presets[name]
        if not isinstance(preset, dict) or "extends" not in preset:
            return preset
        base = preset["extends"]
        if base not in presets:
            raise ProtocolError(file, f"presets.{name}.extends", f"no preset {base!r}; presets: {', '.join(presets)}")
        if base in chain:
            raise ProtocolError(file, f"presets.{name}.extends", f"circular extends: {' -> '.join(chain + (base,))}")
        own = {k: v for k, v in preset.items() if k != "extends"}
        return merge(resolved(base, chain + (base,)), own)

    return {**data, "presets": {name: resolved(name, (name,)) for name in presets}}


def _read_with_includes(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """A protocol file's mapping with its ``include:`` (a file or list of files, relative to it) merged
    underneath: included mappings are merged key by key (later includes over earlier ones), then the file's
    own keys over them, recursively for nested mappings (``presets.demo.pretrain.epochs`` in a file
    overrides only that key of an included preset).

    Raises:
        ProtocolError: a binary (not UTF-8) file, invalid YAML, a missing or circular include (naming the
            including file and key).
    """
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # a binary file: the codec's message names neither the file nor the fix
        raise ProtocolError(file, "", f"not a text file (byte {exc.start} is not UTF-8): a protocol is YAML text; "
                                      "is this the right file?") from exc
    except yaml.YAMLError as exc:
        raise ProtocolError(file, "", f"not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(file, "", f"expected a mapping at the top level, got {type(data).__name__}")
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ProtocolError(file, "include", f"expected a file name or a list of file names, got {includes!r}")
    merged: dict[str, Any] = {}
    for name in includes:
        target = (path.parent / name).resolve()
        if not target.is_file():
            raise ProtocolError(file, "include", f"included file not found: {name} (resolved to {target})")
        if target in chain or target == path.resolve():
            raise ProtocolError(file, "include", f"circular include of {name}")
        merged = merge(merged, _read_with_includes(target, chain + (path.resolve(),)))
    return merge(merged, data)
