"""STTR, the plain spatio-temporal transformer baseline of USDRL.

Reference:
    [0] Weng et al., "USDRL: Unified Skeleton-Based Dense Representation Learning with Multi-Grained
        Feature Decorrelation", AAAI 2025 (the "STTR" rows of Table 1).
    [1] Official code: https://github.com/wengwanjiang/USDRL, ``model/STTR.py`` (commit 7e83bb6).

Architecture of [1] (FACTS §7), per stream::

    tokens -> Linear-LN-ReLU-Linear -> + pos (once) -> 2 × nn.TransformerEncoderLayer -> max over tokens

with PyTorch's post-norm ``TransformerEncoderLayer`` (H-d, 1 head, feed-forward H — not 4H —, dropout 0,
ReLU). The temporal position information is the fixed sinusoidal table, the spatial one a learned
``(1, M·V, H)`` embedding, each added once (DSTE adds them before every layer).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from usdrl_bench.encoders._blocks import (
    EncoderConfig,
    SinusoidalPositionalEncoding,
    SkeletonEmbedding,
    SkeletonEncoder,
    TransformerEncoderLayer,
    init_official_,
)
from usdrl_bench.ranges import PositiveInt, UnitInterval
from usdrl_bench.encoders.registration import register_encoder

__all__ = ["STTRConfig", "STTR", "STTR_PRESETS"]



@dataclass(frozen=True)
class STTRConfig(EncoderConfig):
    """STTR hyper-parameters. Defaults: the official code and ``scripts/pretrain.sh`` (FACTS §7).

    Attributes (beyond :class:`~usdrl_bench.encoders._blocks.EncoderConfig`):
        ffn_size: feed-forward width of each transformer layer; ``None`` means H, which is what the
            official code passes (``TransformerEncoderLayer(d_model, nhead, d_model, ...)``), not the
            usual 4H.
        dropout: dropout inside the transformer layers (official 0).
    """

    ffn_size: PositiveInt | None = None
    dropout: UnitInterval = 0.0

    @property
    def feedforward_size(self) -> int:
        """The effective feed-forward width (``ffn_size`` or H)."""
        return self.ffn_size if self.ffn_size is not None else self.hidden_size


class STTR(SkeletonEncoder):
    """Spatio-temporal transformer encoder (USDRL [0], official ``model/STTR.py`` [1]).

    Args:
        config: :class:`STTRConfig` (defaults: the official NTU model, H = 1024, T = 64, V = 25, M = 2).

    Shapes:
        input ``(N, C, T, V, M)``; :meth:`forward_dense` → ``(N, T, H), (N, M·V, H)``;
        :meth:`forward_features` → ``(N, H), (N, H), (N, 2H)``; :meth:`forward` → ``(N, 2H)``.

    Raises:
        ValueError: on an invalid config, or (at call time) an input whose (C, T, V, M) differs from it.
    """

    encoder_name = "sttr"

    def __init__(self, config: STTRConfig | None = None) -> None:
        config = config or STTRConfig()
        super().__init__(config)
        h = config.hidden_size
        self.embedding = SkeletonEmbedding(config.temporal_input_size, config.spatial_input_size, h)
        self.temporal_pe = SinusoidalPositionalEncoding(h, config.max_len)
        # learned (1, M·V, H) spatial embedding (official: (1, 50, H)), trunc-normal std 0.02
        self.spatial_pe = nn.Parameter(torch.zeros(1, config.num_spatial_tokens, h))
        self.temporal_layers = nn.ModuleList(self._layer(config) for _ in range(config.num_layers))
        for layer in self.temporal_layers:  # the journal's causal temporal stream (config.causal_temporal)
            layer.causal = config.causal_temporal
        self.spatial_layers = nn.ModuleList(self._layer(config) for _ in range(config.num_layers))
        init_official_(self)
        nn.init.trunc_normal_(self.spatial_pe, std=0.02, a=-2.0, b=2.0)
        # official quirk kept for init fidelity: nn.TransformerEncoder deep-copies one layer, and
        # _init_weights re-draws only the nn.Linear weights, so every layer of a stream starts with the
        # same packed attention in_proj_weight
        with torch.no_grad():
            for layers in (self.temporal_layers, self.spatial_layers):
                for layer in layers[1:]:
                    layer.self_attn.in_proj_weight.copy_(layers[0].self_attn.in_proj_weight)

    @staticmethod
    def _layer(config: STTRConfig) -> nn.TransformerEncoderLayer:
        # post-norm (norm_first=False), ReLU, feed-forward H: PyTorch defaults as the official code uses them;
        # nn.TransformerEncoderLayer's parameters with a leaner attention (encoders._blocks.self_attention)
        return TransformerEncoderLayer(
            config.hidden_size, config.num_heads, config.feedforward_size, dropout=config.dropout,
            activation="relu", batch_first=True, norm_first=False,
        )

    def forward_tokens(self, x_t: Tensor, x_s: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, T, M·V·C), (N, M·V, T·C) -> (N, T, H), (N, M·V, H)``."""
        z_t, z_s = self.embedding(x_t, x_s)  # (N, T, H), (N, M·V, H)
        z_t = self.temporal_pe(z_t)  # position information added once (DSTE: before every layer)
        z_s = z_s + self.spatial_pe
        for layer in self.temporal_layers:
            z_t = layer(z_t)
        for layer in self.spatial_layers:
            z_s = layer(z_s)
        return z_t, z_s


#: Named presets (timm style). ``paper``: the paper's STTR (FACTS §7). ``small``: a CPU-sized demo
#: model. ``tiny``: for tests.
STTR_PRESETS: dict[str, dict] = {
    "paper": dict(hidden_size=1024, num_frames=64),
    "small": dict(hidden_size=64, num_frames=32),
    "tiny": dict(hidden_size=16, num_frames=16),
}

# registered through the public decorator, as a plug-in's encoder is (its builder: the config from a preset and
# field overrides, :func:`~usdrl_bench.encoders._blocks.config_from_preset`)
register_encoder("sttr", STTRConfig, STTR_PRESETS,
                 description="STTR: USDRL's spatio-temporal transformer baseline (official model/STTR.py)")(STTR)
