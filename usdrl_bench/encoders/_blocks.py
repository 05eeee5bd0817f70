"""Building blocks shared by the encoders: the two-stream skeleton tokenisation and embedding, the
sinusoidal positional encoding, DropPath, the transformer MLP, the common encoder interface and the
preset machinery.

Everything here mirrors the official USDRL code (wengwanjiang/USDRL, ``model/DSTE.py`` and
``model/STTR.py``; FACTS §7) and is projector-free: projectors belong to objectives, not encoders.

Shapes: skeletons ``(N, C, T, V, M)``; token sequences ``(N, L, D)``; pooled features ``(N, D)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usdrl_bench.ranges import PositiveInt, validate_fields

__all__ = [
    "EncoderConfig",
    "SkeletonEncoder",
    "SkeletonEmbedding",
    "SinusoidalPositionalEncoding",
    "DropPath",
    "MLP",
    "drop_path",
    "skeleton_to_tokens",
    "init_official_",
    "ENCODER_PRESETS",
    "register_presets",
    "config_from_preset",
]


# --------------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    """Fields every two-stream skeleton encoder shares (defaults: the official NTU setting, FACTS §7).

    Attributes:
        in_channels: C, coordinates per joint (3: x, y, z).
        num_frames: T, frames per clip; the official code hard-codes 64 (``seqlen=64`` in ``DSTE.py``).
        num_joints: V, joints per body (25 for NTU / Kinect v2).
        num_bodies: M, bodies per frame (2 for NTU).
        hidden_size: H, token width (1024 in ``scripts/pretrain.sh``).
        num_heads: attention heads (1 in ``scripts/pretrain.sh``).
        num_layers: layers per stream. The official DSTE *ignores* its ``num_layer`` argument and
            hard-codes 2 layers; STTR honours it and the scripts pass 2.
        max_len: length of the fixed sinusoidal table (200 in ``PositionalEncoding``); T must not
            exceed it.
        causal_temporal: the temporal stream cannot see future frames: its attention is causal (token t
            attends to tokens <= t) and, in DSTE, the DenseShift token mixers are lower-triangular. The
            journal extension describes a causal temporal stream for early action prediction; its code
            has none (FACTS-foundation §1, §3). The spatial stream (one token per joint over all frames)
            is unchanged. Default False (the official model).
    """

    in_channels: PositiveInt = 3
    num_frames: PositiveInt = 64
    num_joints: PositiveInt = 25
    num_bodies: PositiveInt = 2
    hidden_size: PositiveInt = 1024
    num_heads: PositiveInt = 1
    num_layers: PositiveInt = 2
    max_len: PositiveInt = 200
    causal_temporal: bool = False

    def __post_init__(self) -> None:
        for name in ("in_channels", "num_frames", "num_joints", "num_bodies", "hidden_size", "num_heads",
                     "num_layers", "max_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{type(self).__name__}.{name} must be a positive int, got {value!r}")
        validate_fields(self)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"{type(self).__name__}: hidden_size {self.hidden_size} is not divisible by num_heads "
                f"{self.num_heads}"
            )
        if self.num_frames > self.max_len:
            raise ValueError(
                f"{type(self).__name__}: num_frames {self.num_frames} exceeds the positional-encoding "
                f"table max_len {self.max_len}; raise max_len"
            )

    @property
    def temporal_input_size(self) -> int:
        """Features per temporal token: M·V·C (150 for NTU)."""
        return self.num_bodies * self.num_joints * self.in_channels

    @property
    def spatial_input_size(self) -> int:
        """Features per spatial token: T·C (192 for T = 64)."""
        return self.num_frames * self.in_channels

    @property
    def num_spatial_tokens(self) -> int:
        """Spatial token count: M·V (50 for NTU), body-major."""
        return self.num_bodies * self.num_joints

    def input_shape(self) -> tuple[int, int, int, int]:
        """The expected per-sample input shape ``(C, T, V, M)``."""
        return (self.in_channels, self.num_frames, self.num_joints, self.num_bodies)


# --------------------------------------------------------------------------------------------------
# presets (timm style: a size variant is a few lines of overrides, never a subclass)
# --------------------------------------------------------------------------------------------------
#: ``ENCODER_PRESETS[encoder_name][preset_name] -> dict of config overrides``. Filled by
#: :func:`register_presets` when an encoder module is imported.
ENCODER_PRESETS: dict[str, dict[str, dict[str, Any]]] = {}

C = TypeVar("C", bound=EncoderConfig)


def register_presets(encoder_name: str, presets: Mapping[str, Mapping[str, Any]]) -> None:
    """Record the named presets of ``encoder_name`` in :data:`ENCODER_PRESETS`."""
    ENCODER_PRESETS[encoder_name] = {name: dict(values) for name, values in presets.items()}


def _did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""


def config_from_preset(
    config_cls: type[C], encoder_name: str, preset: str | None, overrides: Mapping[str, Any]
) -> C:
    """Build ``config_cls`` from the defaults, then the preset's values, then ``overrides``.

    Raises:
        ValueError: an unknown preset, or an override key that is not a field of ``config_cls`` (the
            message names the key and lists the valid ones), or an invalid value.
    """
    valid = [f.name for f in dataclasses.fields(config_cls)]
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        hints = "".join(_did_you_mean(k, valid) for k in unknown)
        raise ValueError(
            f"unknown {encoder_name} option(s) {', '.join(map(repr, unknown))}.{hints} "
            f"Valid options: {', '.join(valid)}"
        )
    values: dict[str, Any] = {}
    if preset is not None:
        presets = ENCODER_PRESETS.get(encoder_name, {})
        if preset not in presets:
            raise ValueError(
                f"unknown {encoder_name} preset {preset!r}.{_did_you_mean(preset, list(presets))} "
                f"Available: {', '.join(presets) or '(none)'}"
            )
        values.update(presets[preset])
    values.update(overrides)
    return config_cls(**values)


# --------------------------------------------------------------------------------------------------
# tokenisation, embedding, positional encoding
# --------------------------------------------------------------------------------------------------
def skeleton_to_tokens(x: Tensor) -> tuple[Tensor, Tensor]:
    """Split a skeleton batch into the official code's two token streams (``modality_generation``).

    Args:
        x: ``(N, C, T, V, M)``.

    Returns:
        ``(x_t, x_s)``: temporal tokens ``(N, T, M·V·C)`` (features ordered body, joint, coordinate) and
        spatial tokens ``(N, M·V, T·C)`` (tokens body-major, features ordered frame, coordinate).
    """
    n, c, t, v, m = x.shape
    x_t = x.permute(0, 2, 4, 3, 1).reshape(n, t, m * v * c)  # (N, T, M, V, C) -> (N, T, M·V·C)
    x_s = x.permute(0, 4, 3, 2, 1).reshape(n, m * v, t * c)  # (N, M, V, T, C) -> (N, M·V, T·C)
    return x_t, x_s


class SkeletonEmbedding(nn.Module):
    """Per-stream token embedding Linear → LayerNorm → ReLU → Linear (``Skeleton_Emb`` in the official code).

    The Sequential indices (0, 1, 3) match the official ``t_embedding`` / ``s_embedding`` keys.

    Args:
        temporal_input_size: M·V·C.
        spatial_input_size: T·C.
        hidden_size: H.
    """

    def __init__(self, temporal_input_size: int, spatial_input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.temporal = self._mlp(temporal_input_size, hidden_size)
        self.spatial = self._mlp(spatial_input_size, hidden_size)

    @staticmethod
    def _mlp(d_in: int, d: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(d_in, d), nn.LayerNorm(d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x_t: Tensor, x_s: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, T, M·V·C), (N, M·V, T·C) -> (N, T, H), (N, M·V, H)``."""
        return self.temporal(x_t), self.spatial(x_s)


def sinusoidal_table(max_len: int, dim: int) -> Tensor:
    """The fixed table ``pe[0, p, 2i] = sin(p·10000^(-2i/D))``, ``pe[0, p, 2i+1] = cos(...)``, ``(1, max_len, D)``.

    Same formula as the official ``PositionalEncoding`` (which breaks for odd D; here the cosine
    columns simply use the first ⌊D/2⌋ frequencies).
    """
    position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (L, 1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, max_len, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term[: dim // 2])
    return pe


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal table to a token sequence (official ``PositionalEncoding``, dropout 0).

    The table is a persistent buffer named ``pe`` of shape ``(1, max_len, D)``, exactly as in the
    official checkpoints (``backbone.tpe.pe``), so loading one also loads its table.

    Args:
        dim: D.
        max_len: rows of the table (official: 200).
    """

    def __init__(self, dim: int, max_len: int = 200) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, dim))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, L, D) -> (N, L, D)``, L ≤ max_len."""
        return x + self.pe[:, : x.size(1), :]


def self_attention(attn: nn.MultiheadAttention, x: Tensor, causal: bool = False) -> Tensor:
    """``attn(x, x, x, need_weights=False)[0]`` for a batch-first ``nn.MultiheadAttention``, computed with the
    same parameters in fewer kernels: one packed input projection viewed as ``(N, L, 3, heads, d)`` and
    ``unbind`` into q, k, v (PyTorch's training path selects them one by one, and each selection's
    backward writes a zero-filled copy of the whole projection), ``F.scaled_dot_product_attention``, one
    output projection. Same result up to float rounding; the state dict is the module's own.

    Falls back to the module itself for what this path does not cover (not batch-first, separate q/k/v
    weights, bias_k / zero attention, attention dropout while training).

    ``causal``: token t attends to tokens 0..t only.

    Shapes: ``(N, L, E) -> (N, L, E)``.
    """
    if (not attn.batch_first or not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn
            or (attn.dropout > 0 and attn.training) or x.dim() != 3):
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[-2], device=x.device, dtype=x.dtype) if causal else None
        return attn(x, x, x, need_weights=False, attn_mask=mask, is_causal=causal)[0]
    n, length, embed = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(n, length, 3, heads, embed // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, heads, L, d)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    out = out.transpose(1, 2).reshape(n, length, embed)
    return F.linear(out, attn.out_proj.weight, attn.out_proj.bias)


class TransformerEncoderLayer(nn.TransformerEncoderLayer):
    """``nn.TransformerEncoderLayer`` (same parameters, state-dict keys and defaults) whose self-attention
    runs through :func:`self_attention`. Post-norm or pre-norm and ReLU/GELU as configured; ``causal``
    (attribute, default False) makes every call causal; explicit masks go to PyTorch's implementation."""

    causal: bool = False

    def forward(self, src: Tensor, src_mask: Tensor | None = None, src_key_padding_mask: Tensor | None = None,
                is_causal: bool = False) -> Tensor:
        if src_mask is not None or src_key_padding_mask is not None:
            return super().forward(src, src_mask, src_key_padding_mask, is_causal)
        causal = is_causal or self.causal
        x = src
        if self.norm_first:
            x = x + self.dropout1(self_attention(self.self_attn, self.norm1(x), causal))
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self.dropout1(self_attention(self.self_attn, x, causal)))
        return self.norm2(x + self._ff_block(x))


def drop_path(x: Tensor, drop_prob: float = 0.0, training: bool = False) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``drop_prob`` and rescale the rest.

    Identity when ``drop_prob == 0`` or not ``training``. ``x`` is ``(N, ...)``; the mask is per sample.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    """Module form of :func:`drop_path` (official: ``DropPath(0.1)`` in every CA and DSA)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class MLP(nn.Module):
    """``fc1 → GELU → fc2`` (official ``MLP``; its dropout is 0 and omitted). ``(N, L, D) -> (N, L, D)``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def init_official_(module: nn.Module) -> None:
    """The official ``USDRL._init_weights``: Linear weights ~ N(0, 0.02²) truncated to [-2, 2], biases 0;
    LayerNorm weight 1, bias 0. Other modules (Conv1d, the attention's packed ``in_proj_weight``) keep
    PyTorch's default init, as in the official code."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------------
# the common encoder interface
# --------------------------------------------------------------------------------------------------
class SkeletonEncoder(nn.Module):
    """Base class fixing the interface every encoder in the suite exposes.

    Subclasses implement :meth:`forward_tokens`; this class handles input checking, tokenisation and
    max pooling (the official ``amax(dim=1)``).

    Attributes:
        encoder_name: the registry name ("dste", "sttr").
        config: the frozen config dataclass (``dataclasses.asdict``-serialisable).
        hidden_size: H, width of each stream's tokens.
        embed_dim: 2H, width of the pooled feature ``y_i``.
        num_frames: T, the clip length the encoder expects.
    """

    encoder_name: str = ""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.embed_dim = 2 * config.hidden_size
        self.num_frames = config.num_frames
        self.num_joints = config.num_joints
        self.num_bodies = config.num_bodies
        self.in_channels = config.in_channels

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, C, T, V, M)`` with the config's C, T, V, M."""
        want = self.config.input_shape()
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            raise ValueError(
                f"{self.encoder_name} expects input (N, C, T, V, M) = (N, {', '.join(map(str, want))}), "
                f"got {tuple(x.shape)}"
            )

    def forward_tokens(self, x_t: Tensor, x_s: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, T, M·V·C), (N, M·V, T·C) -> (N, T, H), (N, M·V, H)``."""
        raise NotImplementedError

    def forward_dense(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Dense token features.

        Args:
            x: skeletons ``(N, C, T, V, M)``.

        Returns:
            ``(z_t, z_s)``: temporal tokens ``(N, T, H)`` and spatial tokens ``(N, M·V, H)`` (body-major).

        Raises:
            ValueError: if ``x``'s shape is not ``(N, C, T, V, M)`` of the config.
        """
        self.check_input(x)
        x_t, x_s = skeleton_to_tokens(x)
        return self.forward_tokens(x_t, x_s)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Pooled features ``(y_t (N, H), y_s (N, H), y_i (N, 2H))``: max over temporal tokens, max over
        spatial tokens, and their concatenation (the official kNN / linear feature).

        Raises:
            ValueError: on a wrong input shape (see :meth:`forward_dense`).
        """
        z_t, z_s = self.forward_dense(x)
        y_t, y_s = z_t.amax(dim=1), z_s.amax(dim=1)
        return y_t, y_s, torch.cat([y_t, y_s], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M) -> y_i (N, 2H)``."""
        return self.forward_features(x)[2]

    def extra_repr(self) -> str:
        return f"encoder_name={self.encoder_name!r}, embed_dim={self.embed_dim}"
