"""Validation of protocol data: one mechanism, pydantic v2 over the specs' own type hints.

Every protocol value is checked by `pydantic <https://docs.pydantic.dev>`_ against the type hint that declares
it: the frozen dataclasses of the specs (:class:`~usdrl_bench.protocols.spec.Protocol` and everything under
it, :class:`~usdrl_bench.train.spec.PretrainSpec`, its :class:`~usdrl_bench.data.augment.ViewOptions`), an
evaluation's options class, and the signatures of registered objectives, encoders' configurations and dataset
readers. A range is part of the hint (``Annotated[int, Ge(1)]``, the aliases of :mod:`usdrl_bench.ranges`),
so the same declaration checks a protocol file, a ``--set`` override, the Python API and the published JSON
Schema (:func:`protocol_json_schema`).

Values are checked strictly, as JSON: an integer key refuses ``2.5``, ``"3"`` and ``true``; a number key takes
an integer; lists become tuples; mappings become dataclasses. The one leniency: a text key (a row's ``id``)
takes a number.

``from_data(Cls, data, file, ("presets", "demo"))`` builds ``Cls``; :func:`check_options` checks a mapping of
keyword options against a callable's signature. Both raise :class:`ProtocolError` naming the file and the
dotted key (``presets.demo.pretrain.epochs: must be >= 1, got -1``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import types
import typing
from typing import Any, Callable, get_args, get_origin, get_type_hints

import pydantic
from pydantic import TypeAdapter, ValidationError

from usdrl_bench.ranges import CONFIG, message as _message

__all__ = ["ProtocolError", "from_data", "convert", "check_options", "merge"]


class ProtocolError(ValueError):
    """A protocol file is invalid. The message names the file and the key path."""

    def __init__(self, file: str, key: str, message: str) -> None:
        self.file = file
        self.key = key
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


def _join(path: tuple[str, ...]) -> str:
    return ".".join(p for p in path if p)


def _loc(path: tuple[str, ...], loc: tuple[Any, ...]) -> tuple[str, ...]:
    """``path`` + a pydantic error location, list indices written ``[i]`` on the key before them."""
    out = list(path)
    for part in loc:
        if isinstance(part, int) and out:
            out[-1] = f"{out[-1]}[{part}]"
        elif isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(str(part))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def type_adapter(tp: Any) -> TypeAdapter:
    """The pydantic adapter that checks type hint ``tp`` (every plain dataclass under it configured with
    :data:`~usdrl_bench.ranges.CONFIG`); cached."""
    _configure(tp)
    if dataclasses.is_dataclass(tp) or (isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)):
        return TypeAdapter(tp)
    return TypeAdapter(tp, config=CONFIG)


def _configure(tp: Any, seen: set | None = None) -> None:
    """Give every plain dataclass reachable from type ``tp`` this module's :data:`CONFIG` (pydantic reads it
    from ``__pydantic_config__``; a parent's config does not reach a nested dataclass), unless it has one."""
    seen = set() if seen is None else seen
    if isinstance(tp, str) or id(tp) in seen:
        return
    seen.add(id(tp))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if "__pydantic_config__" not in tp.__dict__:
            tp.__pydantic_config__ = CONFIG  # type: ignore[attr-defined]
        try:
            hints = get_type_hints(tp, include_extras=True)
        except Exception:  # noqa: BLE001 - hints that cannot be resolved here: pydantic names them when it builds
            hints = {}
        for hint in hints.values():
            _configure(hint, seen)
        return
    for arg in get_args(tp):
        _configure(arg, seen)


def _json(value: Any) -> str:
    """``value`` as JSON text (tuples as lists, dataclasses as mappings); NaN and infinities kept."""

    def default(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init}
        raise TypeError(f"{type(obj).__name__} {obj!r} is not a YAML value")

    return json.dumps(value, default=default)


def convert(tp: Any, value: Any, file: str, path: tuple[str, ...]) -> Any:
    """``value`` checked against type hint ``tp`` and converted (lists to tuples, mappings to dataclasses).

    Raises:
        ProtocolError: the first thing wrong, naming ``file`` and the dotted key under ``path``.
    """
    if tp is Any:
        return value
    try:
        text = _json(value)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(file, _join(path), str(exc)) from None
    try:
        return type_adapter(tp).validate_json(text, strict=True)
    except ValidationError as exc:
        raise _error(exc, tp, value, file, path) from None


def from_data(cls: type, data: Any, file: str, path: tuple[str, ...] = ()) -> Any:
    """Build dataclass ``cls`` from mapping ``data`` (``None``: no keys).

    Raises:
        ProtocolError: unknown key (with a "did you mean"), missing required key, wrong type, a value out of
            its declared range, or a value the dataclass refuses (its ``ValueError``); the message names
            ``file`` and the dotted key path.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(file, _join(path), f"expected a mapping, got {type(data).__name__} {data!r}")
    return convert(cls, data, file, path)


@functools.lru_cache(maxsize=None)
def _options_model(fn: Callable, skip: int) -> tuple[type[pydantic.BaseModel] | None, tuple[str, ...]]:
    """A pydantic model of ``fn``'s keyword parameters after the first ``skip`` (their hints and defaults),
    and the parameter names; ``None`` for a callable that takes ``**kwargs`` (any name)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = list(inspect.signature(fn).parameters.values())[skip:]
    names = tuple(p.name for p in params if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None, names
    try:
        hints = get_type_hints(target, include_extras=True)
    except Exception:  # annotations that cannot be resolved: names are checked, types are not
        hints = {}
    fields: dict[str, Any] = {}
    for p in params:
        if p.name not in names:
            continue
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints.get(p.name, Any), default)
        _configure(fields[p.name][0])
    model = pydantic.create_model(f"{getattr(fn, '__name__', 'options')}_options", __config__=CONFIG, **fields)
    return model, names


def check_options(fn: Callable, options: dict[str, Any], file: str, key: str, skip: int = 0) -> dict[str, Any]:
    """Check keyword ``options`` against the signature of ``fn`` (its parameters after the first ``skip``):
    names, types and declared ranges. A callable taking ``**kwargs`` has its names unchecked.

    Returns:
        the options as given (the callable converts them itself).

    Raises:
        ProtocolError: an unknown option (listing the valid ones) or a bad value, naming ``file`` and
            ``key.option``.
    """
    model, names = _options_model(fn, skip)
    path = tuple(key.split(".")) if key else ()
    if model is None:
        return options
    for name in options:
        if name not in names:
            raise ProtocolError(file, _join(path + (str(name),)), f"unknown option; valid options: {', '.join(names)}")
    required = [n for n, f in model.model_fields.items() if f.is_required() and n not in options]
    # a required parameter the caller supplies (not an option): checked only when given
    filled = {**{n: None for n in required}, **options}
    try:
        model.model_validate_json(_json(filled), strict=True)
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not (e["loc"] and e["loc"][0] in required)]
        if errors:
            raise _error(ValidationError.from_exception_data(exc.title, errors), model, options, file, path) from None
    except (TypeError, ValueError) as exc:
        raise ProtocolError(file, _join(path), str(exc)) from None
    return options


# --- error messages -------------------------------------------------------------------------------------

def _error(exc: ValidationError, tp: Any, value: Any, file: str, path: tuple[str, ...]) -> ProtocolError:
    """The first error of ``exc`` as a :class:`ProtocolError` (an unknown key with a "did you mean")."""
    errors = exc.errors()
    first = _most_specific(errors)
    loc = tuple(first["loc"])
    owner, loc = _resolve(tp, loc)
    where = _join(_loc(path, loc))
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        valid = _keys(owner)
        name = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return ProtocolError(file, where, f"unknown key{hint}; valid keys: {', '.join(valid)}")
    return ProtocolError(file, where, _message(first))


def _most_specific(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """Of a union's alternatives, the error deepest in the data (the bad item of a list, not the list)."""
    return max(errors, key=lambda e: (len(e["loc"]), -errors.index(e)))


def _resolve(tp: Any, loc: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """Follow ``loc`` through type ``tp``: the type that owns the last key, and ``loc`` without the tags
    pydantic adds for a union's alternatives (``int``, ``list[...]``, a dataclass's name)."""
    current, owner, kept = tp, tp, []
    for part in loc:
        current = _strip(current)
        members = [a for a in get_args(current) if a is not type(None)] if _is_union(current) else None
        if members is not None and len(members) > 1 and isinstance(part, str) and part not in _keys(current):
            match = next((m for m in members if _tag(m) == part), members[0])
            current = _strip(match)
            continue  # a union tag, not a key
        if members:
            current = _strip(members[0])
        owner = current
        kept.append(part)
        current = _child(current, part)
    return owner, tuple(kept)


def _tag(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (typing.Union, types.UnionType)


def _strip(tp: Any) -> Any:
    while get_origin(tp) is typing.Annotated:
        tp = get_args(tp)[0]
    if isinstance(tp, str):
        return Any
    return tp


def _child(tp: Any, part: Any) -> Any:
    tp = _strip(tp)
    if _is_union(tp):
        members = [a for a in get_args(tp) if a is not type(None)]
        tp = _strip(members[0]) if members else Any
    if dataclasses.is_dataclass(tp):
        return get_type_hints(tp, include_extras=True).get(str(part), Any)
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        field = tp.model_fields.get(str(part))
        return field.annotation if field is not None else Any
    origin, args = get_origin(tp), get_args(tp)
    if origin is list or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):  # list[X], tuple[X, ...]
        return args[0] if args else Any
    if origin is tuple and args:  # tuple[X, Y]: the item's own type
        return args[min(part, len(args) - 1)] if isinstance(part, int) else args[0]
    if origin is dict and args:
        return args[1]
    return Any


def _keys(tp: Any) -> list[str]:
    tp = _strip(tp)
    if dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp) if f.init]
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        return list(tp.model_fields)
    return []


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge: mappings merge key by key, anything else in ``override`` replaces."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


