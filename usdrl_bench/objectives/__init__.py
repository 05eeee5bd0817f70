"""Pretraining objectives: pure loss terms (`terms`), the projection head (`projector`), and the
registered objectives ``"mgfd"`` (USDRL) and ``"negative_contrastive"`` (MoCo-style baseline).

An objective is an ``nn.Module`` built as ``Objective(encoder, **options)`` and called as
``loss, logs = objective(encoder, views)`` with ``views`` a list of ``(N, C, T, V, M)`` tensors; its class
attribute ``num_views`` says how many views it wants. Create one by name with `create_objective`.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from usdrl_bench.objectives import terms
from usdrl_bench.objectives.projector import Projector
from usdrl_bench.objectives.mgfd import MGFD
from usdrl_bench.objectives.contrastive import NegativeContrastive
from usdrl_bench.registry import OBJECTIVES

__all__ = ["MGFD", "NegativeContrastive", "Projector", "create_objective", "objective_options", "terms"]


def objective_options(name: str) -> dict[str, Any]:
    """The keyword options of objective ``name`` and their defaults (``inspect.Parameter.empty`` if none).

    Raises:
        KeyError: unknown objective name (with close matches and the available names).
    """
    factory = OBJECTIVES.get(name)
    signature = inspect.signature(factory)
    params = list(signature.parameters.values())[1:]  # the first one is the encoder
    return {
        p.name: p.default
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def create_objective(name: str, encoder: nn.Module, **options: Any) -> nn.Module:
    """Build the objective registered as ``name`` for ``encoder``, like timm's ``create_model``.

    Args:
        name: registered objective name (``"mgfd"``, ``"negative_contrastive"``, or a plugin's).
        encoder: the encoder it will train; read for its sizes (and copied by momentum-based objectives).
        **options: keyword options of the objective's constructor.

    Raises:
        KeyError: unknown objective name (with close matches and the available names).
        ValueError: an option the objective does not take (naming it and the valid ones), or a bad value.
    """
    valid = objective_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"objective {name!r} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(sorted(valid))}"
        )
    return OBJECTIVES.get(name)(encoder, **options)
