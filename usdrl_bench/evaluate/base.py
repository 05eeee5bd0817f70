"""What an evaluation returns (:class:`Metric`), the option checks, and the typed options of the evaluations
that train with SGD (:class:`SGDOptions`, :func:`evaluation_with`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Metric:
    """One measured number.

    Attributes:
        name: standard metric name (``linear_top1``, ``knn1_top1``), in percent for accuracies.
        value: the number.
        higher_is_better: direction, for reports.
        note: how it was selected, when that matters (e.g. the official best-of-evaluations number).
    """

    name: str
    value: float
    higher_is_better: bool = True
    note: str = ""


def check_whole(name: str, value: object, minimum: int = 1, optional: bool = False) -> None:
    """Raise ValueError unless ``value`` is an int >= ``minimum`` (or None when ``optional``): the option
    range checks an evaluation's ``check`` runs when a protocol is loaded."""
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def check_number(name: str, value: object, low: float = 0.0, high: float = float("inf"),
                 low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError unless ``value`` is a real number in the interval from ``low`` to ``high`` (each end
    closed unless ``*_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open or high == float('inf') else ']'}"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")


def check_sgd_options(*, epochs: object, batch_size: object, lr: object, momentum: object, weight_decay: object,
                      milestones: Sequence[object], gamma: object) -> None:
    """Ranges of an SGD schedule's options (linear probe, fine-tuning): whole ``epochs`` and ``batch_size``
    >= 1, ``lr`` and ``gamma`` > 0, ``momentum`` and ``weight_decay`` >= 0, ``milestones`` epochs >= 1 (a
    milestone past the last epoch is never reached: allowed, as the official schedule's 120, 140).
    Raises ValueError."""
    check_whole("epochs", epochs, 1)
    check_whole("batch_size", batch_size, 1)
    check_number("lr", lr, 0.0, low_open=True)
    check_number("gamma", gamma, 0.0, low_open=True)
    check_number("momentum", momentum, 0.0)
    check_number("weight_decay", weight_decay, 0.0)
    if any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in milestones):
        raise ValueError(f"milestones must be epochs >= 1, got {list(milestones)}")


@dataclass(frozen=True)
class SGDOptions:
    """An SGD schedule of the evaluations that train (the linear probe, fine-tuning, early prediction's
    head): SGD with momentum, no dampening, not Nesterov; the learning rate x ``gamma`` at each epoch of
    ``milestones``. Defaults: the official linear evaluation's (FACTS §6: batch 512, lr 0.006, 160 epochs,
    x0.1 at 120 and 140).

    Raises:
        ValueError: a value out of range (:func:`check_sgd_options`), when constructed, so a protocol file
            is checked when loaded.
    """

    epochs: int = 160
    batch_size: int = 512
    lr: float = 0.006
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: tuple[int, ...] = (120, 140)
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"milestones must be a list of epochs, got {self.milestones!r}")
        object.__setattr__(self, "milestones", tuple(self.milestones))  # YAML gives a list
        check_sgd_options(**self.sgd)

    @property
    def sgd(self) -> dict[str, object]:
        """The schedule's fields only (``epochs`` ... ``gamma``), as keyword arguments of the trainers."""
        return {f.name: getattr(self, f.name) for f in fields(SGDOptions)}


def evaluation_with(options: type) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorator: an evaluation written as ``fn(ctx, opts)`` with ``opts`` an options dataclass, called as the
    registry calls every evaluation, ``fn(ctx, **options)``: the keywords build ``options(**options)`` (which
    checks their ranges) and the wrapper's signature is ``(ctx, *, <the dataclass's fields>)``, so protocol
    files are checked against the fields. The wrapper keeps ``fn``'s module (its code identity)."""
    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(fn)
        def evaluation(ctx: object, **kwargs: object) -> R:
            return fn(ctx, options(**kwargs))

        ctx_param = next(iter(inspect.signature(fn).parameters.values()))
        evaluation.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [ctx_param.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            + [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for f in fields(options)],
            return_annotation=inspect.signature(fn).return_annotation)
        return evaluation

    return decorate
