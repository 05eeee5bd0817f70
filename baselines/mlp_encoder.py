"""A deliberately simple baseline encoder: per-token MLPs on the two token streams, no attention.

It uses only the public extension contract (``usdrl_bench.EncoderConfig``, ``SkeletonEncoder``,
``register_encoder``). Once imported (``plugins: [baselines.mlp_encoder]`` in a protocol, or ``usdrl-bench
list --plugin baselines.mlp_encoder``), it can be pretrained with any objective, evaluated by every
protocol, saved and reloaded like the built-ins.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from usdrl_bench import EncoderConfig, SkeletonEncoder, register_encoder


@dataclass(frozen=True)
class MLPEncoderConfig(EncoderConfig):
    """Attributes (beyond :class:`EncoderConfig`): ``depth``, number of hidden Linear+GELU blocks."""

    depth: int = 2


@register_encoder("mlp", MLPEncoderConfig, presets={"paper": dict(hidden_size=1024, num_frames=64),
                                                     "small": dict(hidden_size=64, num_frames=32),
                                                     "tiny": dict(hidden_size=16, num_frames=16)},
                  description="baseline: per-token MLPs on both streams, no attention (example plugin)")
class MLPEncoder(SkeletonEncoder):
    """Temporal tokens ``(N, T, M·V·C)`` and spatial tokens ``(N, M·V, T·C)`` each through an MLP to H."""

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
