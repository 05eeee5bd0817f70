"""Typed loading of plain data (parsed YAML) into frozen dataclasses, with errors that name the key.

``from_data(Cls, data, where=ProtocolLocation("protocols/x.yaml", ("presets", "demo")))`` builds
``Cls`` from a mapping, checking every key against the dataclass fields and every value against its
type hint (``int``, ``float``, ``str``, ``bool``, ``list[...]``, ``tuple[...]``, ``dict[str, Any]``,
``X | None``, ``Literal[...]`` and nested dataclasses).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints


class ProtocolError(ValueError):
    """A protocol file is invalid. The message names the file and the key path."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


def _join(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(tp: Any, value: Any, file: str, path: tuple[str, ...]) -> Any:
    """Check ``value`` against type ``tp`` and convert it (lists to tuples, mappings to dataclasses)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_data(tp, value, file, path)
    if origin in (typing.Union, types.UnionType):
        return _convert_union(get_args(tp), value, file, path)
    if origin is Literal:
        if value not in get_args(tp):
            raise ProtocolError(file, _join(path), f"expected one of {', '.join(repr(a) for a in get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ProtocolError(file, _join(path), f"expected a list, got {type(value).__name__} {value!r}")
        args = get_args(tp)
        item_type = args[0] if args else Any
        return tuple(convert(item_type, v, file, path + (f"[{i}]",)) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ProtocolError(file, _join(path), f"expected a mapping, got {type(value).__name__} {value!r}")
        _, vt = get_args(tp) or (str, Any)
        return {str(k): convert(vt, v, file, path + (str(k),)) for k, v in value.items()}
    if tp in (bool, int, float, str):
        return _convert_scalar(tp, value, file, path)
    raise TypeError(f"unsupported schema type {tp!r} at {_join(path)}")  # a bug in a schema, not in a file


def _convert_union(args: tuple, value: Any, file: str, path: tuple[str, ...]) -> Any:
    """``value`` as the first of ``args`` it converts to (None when allowed); one error naming them all
    otherwise (or the one error of a single alternative, or the same deeper error of list / tuple)."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return convert(arg, value, file, path)
        except ProtocolError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    deeper = [e for e in errors if len(e.key) > len(_join(path))]
    if deeper and len({str(e) for e in deeper}) == 1:  # list[X] | tuple[X]: the same bad item, said once
        raise deeper[0]
    raise ProtocolError(file, _join(path), f"expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")


def _convert_scalar(tp: type, value: Any, file: str, path: tuple[str, ...]) -> Any:
    """``value`` as a bool, int, float (numeric strings accepted: YAML reads 5e-4 as a string) or str."""
    if tp is bool:
        if not isinstance(value, bool):
            raise ProtocolError(file, _join(path), f"expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(file, _join(path), f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads 5e-4 (no dot) as a string; accept numeric strings.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ProtocolError(file, _join(path), f"expected a number, got {value!r}")
        return float(value)
    if not isinstance(value, (str, int)) or isinstance(value, bool):  # tp is str
        raise ProtocolError(file, _join(path), f"expected a string, got {value!r}")
    return str(value)


def from_data(cls: type, data: Any, file: str, path: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from mapping ``data``.

    Raises:
        ProtocolError: unknown key (with a "did you mean"), missing required key, wrong type, or a value
            the dataclass refuses (its ``ValueError``); the message names ``file`` and the dotted key path.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(file, _join(path), f"expected a mapping, got {type(data).__name__} {data!r}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProtocolError(file, _join(path + (str(key),)), f"unknown key{hint}; valid keys: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = convert(hints[name], data[name], file, path + (name,))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:  # type: ignore[misc]
            raise ProtocolError(file, _join(path + (name,)), "required key is missing")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a range a dataclass checks itself (the pretraining views, ...)
        raise ProtocolError(file, _join(path), str(exc)) from None


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge: mappings merge key by key, anything else in ``override`` replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
