"""What an evaluation returns (:class:`Metric`), and the typed options of the evaluations that train with SGD
(:class:`SGDOptions`, :func:`evaluation_with`); option ranges are declared on the fields
(:mod:`usdrl_bench.ranges`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TypeVar

from usdrl_bench.ranges import NonNegativeFloat, PositiveFloat, PositiveInt, validate_fields

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


@dataclass(frozen=True)
class SGDOptions:
    """An SGD schedule of the evaluations that train (the linear probe, fine-tuning, early prediction's
    head): SGD with momentum, no dampening, not Nesterov; the learning rate x ``gamma`` at each epoch of
    ``milestones``. Defaults: the official linear evaluation's (FACTS §6: batch 512, lr 0.006, 160 epochs,
    x0.1 at 120 and 140).

    The ranges are declared on the fields (whole ``epochs`` and ``batch_size`` >= 1, ``lr`` and ``gamma``
    > 0, ``momentum`` and ``weight_decay`` >= 0, ``milestones`` epochs >= 1: a milestone past the last epoch
    is never reached, allowed as the official schedule's 120, 140) and checked by
    :func:`~usdrl_bench.ranges.validate_fields` when constructed, and by the protocol's validation when a
    protocol file is loaded.

    Raises:
        ValueError: a value out of range.
    """

    epochs: PositiveInt = 160
    batch_size: PositiveInt = 512
    lr: PositiveFloat = 0.006
    momentum: NonNegativeFloat = 0.9
    weight_decay: NonNegativeFloat = 0.0
    milestones: tuple[PositiveInt, ...] = (120, 140)
    gamma: PositiveFloat = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.milestones, (list, tuple)):
            raise ValueError(f"milestones must be a list of epochs, got {self.milestones!r}")
        object.__setattr__(self, "milestones", tuple(self.milestones))  # YAML gives a list
        validate_fields(self)

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
