"""Skeleton encoders: DSTE and STTR as the official USDRL code builds them, plus official-checkpoint import.

Every encoder takes skeletons ``(N, C, T, V, M)`` and exposes ``forward_dense`` (tokens ``(N, T, H)``,
``(N, M·V, H)``), ``forward_features`` (``(N, H), (N, H), (N, 2H)``), ``forward`` (``(N, 2H)``) and the
attributes ``hidden_size``, ``embed_dim``, ``num_frames``, ``config``, ``encoder_name``.

Example:
    >>> from usdrl_bench.encoders import create_encoder, list_encoders
    >>> list_encoders("d*")
    ['dste']
    >>> enc = create_encoder("dste", "tiny", num_bodies=1, num_joints=20)
    >>> enc.embed_dim
    32
"""

from __future__ import annotations

from typing import Any

from torch import nn

from usdrl_bench.encoders._blocks import ENCODER_PRESETS, EncoderConfig, SkeletonEncoder
from usdrl_bench.encoders.dste import DSTE, DSTEConfig  # importing the module registers "dste"
from usdrl_bench.encoders.sttr import STTR, STTRConfig  # importing the module registers "sttr"
from usdrl_bench.registry import ENCODERS

__all__ = [
    "create_encoder",
    "list_encoders",
    "list_presets",
    "ENCODER_PRESETS",
    "EncoderConfig",
    "SkeletonEncoder",
    "DSTE",
    "DSTEConfig",
    "STTR",
    "STTRConfig",
]


def create_encoder(name: str, preset: str | None = None, **overrides: Any) -> nn.Module:
    """Build a registered encoder (timm's ``create_model``).

    Args:
        name: registry name ("dste", "sttr", or one a plugin registered).
        preset: a named preset of that encoder (see :func:`list_presets`); ``None`` = its config defaults.
        **overrides: config fields, applied after the preset.

    Raises:
        KeyError: unknown encoder name (with "Did you mean" and the available names).
        ValueError: unknown preset or option (naming it and the valid ones), or an invalid value.
    """
    return ENCODERS.get(name)(preset, **overrides)


def list_encoders(pattern: str = "*") -> list[str]:
    """Registered encoder names matching a shell-style pattern (``"dste*"``)."""
    return ENCODERS.names(pattern)


def list_presets(name: str) -> list[str]:
    """The preset names of encoder ``name`` (``[]`` if it registered none).

    Raises:
        KeyError: unknown encoder name.
    """
    ENCODERS.entry(name)
    return list(ENCODER_PRESETS.get(name, {}))
