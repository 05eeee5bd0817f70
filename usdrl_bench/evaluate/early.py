"""Early action prediction (the journal extension): recognise an action from its first part only.

For each observed ratio r, every sequence keeps its first ``max(3, floor(r · n))`` valid frames, resized to
the encoder's T: the official mechanism (FSM ``feeder_downstream.py:97``, ``observe_ratio``; FACTS-foundation
§3), which truncates the training and the test sequences alike (``truncate: both``); ``truncate: test``
trains on whole sequences and truncates the test ones only. The journal's ratios are not published; the
default is 0.1, 0.2, ..., 1.0.

``mode: linear`` trains a linear classifier on frozen features (the linear protocol's SGD schedule; its
value is the official best-of-evaluations top-1, the final-epoch one is in the note); ``mode: finetune``
fine-tunes the whole encoder with all labels (the semi-supervised fine-tuning loop at 100 % labels, CMD's
recipe, no crops). An encoder pretrained with a causal temporal stream (``causal_temporal``, the journal's
description) is another row of the protocol.

Metrics ``early_top1@<100 r>`` (``early_top1@10`` ... ``early_top1@100``), in %; the report draws them as a
curve per method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from usdrl_bench.evaluate.base import Metric, SGDOptions, evaluation_with
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.evaluate.linear import train_linear_probe
from usdrl_bench.evaluate.semi import fine_tune
from usdrl_bench.ranges import Fraction, MinLen, PositiveInt
from usdrl_bench.registry import EVALUATIONS

#: observed ratios evaluated by default
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MODES = ("linear", "finetune")
TRUNCATE = ("both", "test")


def metric_name(ratio: float) -> str:
    """``early_top1@<100 r>`` (``early_top1@10`` for r = 0.1)."""
    return f"early_top1@{round(100 * ratio):d}"


@dataclass(frozen=True)
class EarlyOptions(SGDOptions):
    """Options of early action prediction: the head's SGD schedule (the official linear one by default,
    :class:`~usdrl_bench.evaluate.base.SGDOptions`), and

    Attributes:
        ratios: the observed fractions of each sequence (metrics ``early_top1@<100 r>``; must differ in whole
            percent).
        mode: ``linear`` (a probe on frozen features) or ``finetune`` (the whole encoder).
        truncate: ``both`` (training and test sequences truncated) or ``test`` (only the test ones).
        eval_every: test the linear head every this many epochs.

    Raises:
        ValueError: a value out of range (checked when a protocol is loaded, before any training).
    """

    ratios: Annotated[tuple[Fraction, ...], MinLen(1)] = RATIOS
    mode: Literal["linear", "finetune"] = "linear"
    truncate: Literal["both", "test"] = "both"
    eval_every: PositiveInt = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(self.ratios))  # YAML gives a list
        super().__post_init__()
        if len({round(100 * r) for r in self.ratios}) != len(self.ratios):
            raise ValueError(f"ratios must differ in whole percent (they name the metrics), got {list(self.ratios)}")


@EVALUATIONS.register("early", description="early action prediction: top-1 from the first r of each sequence (journal extension)",
                      check=EarlyOptions)
@evaluation_with(EarlyOptions)
def early_prediction(ctx: EvalContext, options: EarlyOptions) -> list[Metric]:
    """Top-1 at each observed ratio (module docstring). Defaults: the official linear schedule (FACTS §6).

    Returns:
        ``early_top1@<100 r>`` per ratio, in %.
    """
    metrics = []
    for r in options.ratios:
        train_r = r if options.truncate == "both" else 1.0
        where = f"first {r:g} of each {'training and test' if options.truncate == 'both' else 'test'} sequence"
        if options.mode == "linear":
            final, best, _ = train_linear_probe(
                ctx.features("train", observe=train_r), ctx.labels("train"), ctx.features("test", observe=r),
                ctx.labels("test"), ctx.num_classes, **options.sgd, eval_every=options.eval_every,
                seed=ctx.seed, device=ctx.device)
            metrics.append(Metric(metric_name(r), best, note=f"linear, best of evaluations every {options.eval_every} "
                                                             f"epochs (final epoch {final:.1f}); {where}"))
        else:
            top1 = fine_tune(ctx, np.arange(len(ctx.labels("train"))), **options.sgd, observe=(train_r, r))
            metrics.append(Metric(metric_name(r), top1, note=f"whole encoder fine-tuned, final epoch; {where}"))
    return metrics
