"""Declared value ranges: type aliases that :mod:`pydantic` enforces wherever a value enters the suite (a
protocol file, ``--set``, a dataclass built in Python through
:func:`~usdrl_bench.protocols.schema.validate_fields`) and that the published JSON Schema states.

Use them in a dataclass field or a registered callable's signature::

    @dataclass(frozen=True)
    class MyOptions:
        k: PositiveInt = 1           # 1, 2, ...; 0, -1, 2.5, true are refused
        temperature: PositiveFloat = 0.07
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import AllowInfNan, ConfigDict, TypeAdapter, ValidationError

__all__ = ["PositiveInt", "NonNegativeInt", "PositiveFloat", "NonNegativeFloat", "Probability", "Fraction",
           "UnitInterval", "Ge", "Gt", "Le", "Lt", "MinLen", "Finite", "validate_fields"]

#: how every protocol type is checked: unknown keys refused, numbers accepted as text (a row id ``7``)
CONFIG = ConfigDict(extra="forbid", coerce_numbers_to_str=True, arbitrary_types_allowed=True)

#: a finite number (no NaN or infinity)
Finite = AllowInfNan(False)
#: a whole number >= 1 (epochs, a batch size, a count)
PositiveInt = Annotated[int, Ge(1)]
#: a whole number >= 0
NonNegativeInt = Annotated[int, Ge(0)]
#: a finite number > 0 (a learning rate, a temperature)
PositiveFloat = Annotated[float, Gt(0), Finite]
#: a finite number >= 0 (a weight decay, a loss weight)
NonNegativeFloat = Annotated[float, Ge(0), Finite]
#: a probability: 0 <= p <= 1
Probability = Annotated[float, Ge(0), Le(1)]
#: a fraction of something that must keep some of it: 0 < f <= 1
Fraction = Annotated[float, Gt(0), Le(1)]
#: 0 <= x < 1 (a momentum, Adam's betas)
UnitInterval = Annotated[float, Ge(0), Lt(1)]


def validate_fields(obj: Any) -> None:
    """Check each field of dataclass instance ``obj`` against the range its type hint declares, for a
    dataclass built in Python rather than loaded from a protocol (call it from ``__post_init__``).

    Raises:
        ValueError: ``<Class>.<field> must be ..., got ...``.
    """
    for name, adapter in _field_adapters(type(obj)):
        value = getattr(obj, name)
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValueError(f"{type(obj).__name__}.{name} {message(first, value)}") from None


@functools.lru_cache(maxsize=None)
def _field_adapters(cls: type) -> tuple[tuple[str, TypeAdapter], ...]:
    """(name, adapter) of the fields of ``cls`` whose hints carry constraints (``Annotated``, ``Literal``)."""
    hints = get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name)
        if hint is not None and _has_metadata(hint):
            out.append((f.name, TypeAdapter(hint, config=CONFIG)))
    return tuple(out)


def _has_metadata(tp: Any) -> bool:
    """Whether type hint ``tp`` constrains values beyond their type: a declared range (``Annotated``) or a
    set of allowed values (``Literal``), anywhere inside it."""
    if get_origin(tp) in (typing.Annotated, typing.Literal):
        return True
    return any(_has_metadata(a) for a in get_args(tp))


_LIMITS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
             "list": "a list", "tuple": "a list", "dict": "a mapping", "dataclass": "a mapping", "model": "a mapping"}


def message(error: dict[str, Any], value: Any = None) -> str:
    """One pydantic error as this project words it."""
    kind, ctx = error["type"], error.get("ctx") or {}
    got = error.get("input", value)
    if kind in _LIMITS:
        limit = next(iter(ctx.values()), "?")
        return f"must be {_LIMITS[kind]} {limit}, got {got!r}"
    if kind == "finite_number":
        return f"must be a finite number, got {got!r}"
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '?').replace(' or ', ', ')}, got {got!r}"
    if kind == "missing" or kind == "missing_argument":
        return "required key is missing"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing", "_from_float", "_exact_type")):
        base = kind.split("_")[0]
        if base in _EXPECTED:
            return f"expected {_EXPECTED[base]}, got {got!r}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s), got {got!r}"
    if kind == "too_long":
        return f"takes at most {ctx.get('max_length', '?')} item(s), got {got!r}"
    return f"{error['msg']}, got {got!r}"


