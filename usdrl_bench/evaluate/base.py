"""What an evaluation returns."""

from __future__ import annotations

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
