"""What an evaluation returns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
