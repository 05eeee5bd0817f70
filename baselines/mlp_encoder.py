"""A deliberately simple baseline encoder: per-token MLPs on the two token streams, no attention.

It shows the whole extension path: a config dataclass derived from :class:`EncoderConfig`, a
:class:`SkeletonEncoder` subclass implementing ``forward_tokens``, named presets, and a factory
registered in ``ENCODERS``. Once imported (``plugins: [baselines.mlp_encoder]`` in a protocol), it can be
pretrained with any objective, evaluated by every protocol, saved and reloaded like the built-ins.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from usdrl_bench.encoders._blocks import EncoderConfig, SkeletonEncoder, config_from_preset, register_presets
from usdrl_bench.registry import ENCODERS


@dataclass(frozen=True)
class MLPEncoderConfig(EncoderConfig):
    """Attributes (beyond :class:`EncoderConfig`): ``depth``, number of hidden Linear+GELU blocks."""

    depth: int = 2


class MLPEncoder(SkeletonEncoder):
    """Temporal tokens ``(N, T, M·V·C)`` and spatial tokens ``(N, M·V, T·C)`` each through an MLP to H."""

    encoder_name = "mlp"

    def __init__(self, config: MLPEncoderConfig) -> None:
        super().__init__(config)
        h = config.hidden_size

        def mlp(in_dim: int) -> nn.Sequential:
            layers: list[nn.Module] = [nn.Linear(in_dim, h), nn.LayerNorm(h), nn.GELU()]
            for _ in range(config.depth - 1):
                layers += [nn.Linear(h, h), nn.GELU()]
            return nn.Sequential(*layers)

        self.temporal = mlp(config.temporal_input_size)
        self.spatial = mlp(config.spatial_input_size)

    def forward_tokens(self, x_t: Tensor, x_s: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, T, M·V·C), (N, M·V, T·C) -> (N, T, H), (N, M·V, H)``."""
        return self.temporal(x_t), self.spatial(x_s)


MLP_PRESETS = {"paper": dict(hidden_size=1024, num_frames=64), "small": dict(hidden_size=64, num_frames=32),
               "tiny": dict(hidden_size=16, num_frames=16)}
register_presets("mlp", MLP_PRESETS)


@ENCODERS.register("mlp", description="baseline: per-token MLPs on both streams, no attention (example plugin)",
                   presets=tuple(MLP_PRESETS), config=MLPEncoderConfig)
def build_mlp(preset: str | None = None, **overrides) -> MLPEncoder:
    """Build an :class:`MLPEncoder` from a preset and field overrides."""
    return MLPEncoder(config_from_preset(MLPEncoderConfig, "mlp", preset, overrides))
