"""USDRL registered as a method (``method: usdrl``): DSTE trained with MG-FD, its official configuration as
the ``paper`` preset and a CPU size as ``cpu``, so a leaderboard row names it the way it names a peer.

Source: Weng et al., "USDRL: Unified Skeleton-Based Dense Representation Learning with Multi-Grained
Feature Decorrelation" (AAAI 2025), github.com/wengwanjiang/USDRL at 7e83bb67 (FACTS §6-7): Adam lr 5e-4,
weight decay 1e-5, batch 356, 451 epochs with lr x0.1 at 351; linear probe SGD lr 0.006, batch 512, 160
epochs, x0.1 at 120 and 140 (the ``linear`` evaluation's defaults).
"""

from __future__ import annotations

from typing import Any, Mapping

from usdrl_bench.encoders.checkpoint import load_official_state_dict, to_official_state_dict
from usdrl_bench.methods.base import OfficialFormat, OfficialModel, register_method

__all__ = ["USDRL_FORMAT"]


def _load_usdrl(obj: Any, official_args: Mapping[str, Any]) -> OfficialModel:
    """An official USDRL pretraining (``module.backbone.*``) or downstream (``backbone.*``) file: the encoder, its
    sizes from the tensors (:func:`~usdrl_bench.encoders.checkpoint.load_official_state_dict`); the projectors
    stay in the file (the objective is not rebuilt)."""
    imported = load_official_state_dict(obj, **official_args)
    notes = {"projectors": f"{len(imported.extra)} tensors not loaded (projectors / classifier)"} if imported.extra else {}
    return OfficialModel(imported.encoder, None, notes)


def _export_usdrl(encoder, objective_state: Mapping[str, Any] | None) -> dict[str, Any]:
    """The official pretraining checkpoint's layout, ``{"epoch", "state_dict", "optimizer"}`` with the backbone under
    ``module.backbone.`` (the projectors are not written: the official downstream code does not read them)."""
    return {"epoch": None, "state_dict": to_official_state_dict(encoder, "module.backbone."), "optimizer": None}


USDRL_FORMAT = OfficialFormat(load=_load_usdrl, export=_export_usdrl,
                              description="main_pretrain.py: {'epoch', 'state_dict' (module.backbone.*, "
                                          "module.{i,s,t}_proj.*), 'optimizer'}")

register_method(
    "usdrl", encoder="dste", objective="mgfd",
    paper="Weng et al., USDRL: Unified Skeleton-Based Dense Representation Learning with Multi-Grained Feature "
          "Decorrelation, AAAI 2025",
    repository="github.com/wengwanjiang/USDRL", commit="7e83bb67",
    description="USDRL: DSTE with multi-grained feature decorrelation (the suite's own method)",
    presets={
        "paper": {"encoder_preset": "paper",
                  "pretrain": {"optimizer": "adam", "lr": 5e-4, "weight_decay": 1e-5, "batch_size": 356, "epochs": 451,
                               "milestones": [351], "gamma": 0.1, "schedule": "step"},
                  "evaluations": {"linear_own": {}}},
        # the protocol preset's schedule and views (the suite's NW-UCLA settings) at hidden 32, 100 epochs: about
        # 8 minutes of one core on NW-UCLA (4.5 s an epoch)
        "cpu": {"encoder_preset": "small", "encoder_options": {"hidden_size": 32},
                "pretrain": {"epochs": 100, "milestones": [80]}, "evaluations": {"linear_own": {}}},
    },
    published={"ntu60_xsub/linear": 85.2, "ntu60_xview/linear": 91.7, "ntu120_xsub/linear": 76.6,
               "ntu120_xset/linear": 78.1, "pku2_xsub/linear": 54.4},
    official_format=USDRL_FORMAT,
)
