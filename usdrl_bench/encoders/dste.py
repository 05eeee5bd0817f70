"""DSTE, the Dense Spatio-Temporal Encoder of USDRL.

Reference:
    [0] Weng et al., "USDRL: Unified Skeleton-Based Dense Representation Learning with Multi-Grained
        Feature Decorrelation", AAAI 2025 (Eqs. 2-5, Fig. 2).
    [1] Official code: https://github.com/wengwanjiang/USDRL, ``model/DSTE.py`` (commit 7e83bb6).

The defaults reproduce [1] exactly (checked against reference outputs of the official code in
``tests/test_official_parity.py``). Where [0] and [1] disagree (FACTS §8 rows 1-4 and 6) the paper's
reading can be selected with an option of :class:`DSTEConfig` (and row 5, the attention shared by CA
and DSA, which the paper does not describe); the ``paper_eqs`` preset selects all of
them at once.

Architecture of [1] (FACTS §7), per stream (temporal: T tokens of M·V·C; spatial: M·V tokens of T·C)::

    tokens -> Linear-LN-ReLU-Linear -> [ + pos ] -> DST layer -> [ + pos ] -> DST layer -> max over tokens
    DST layer(x) = α·CA(x) + (1-α)·DSA(x)          (no residual around the layer)

with one ``nn.MultiheadAttention`` per layer *shared* by CA and both DSA branches (``shared_attention``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usdrl_bench.encoders._blocks import (
    MLP,
    DropPath,
    EncoderConfig,
    SinusoidalPositionalEncoding,
    SkeletonEmbedding,
    SkeletonEncoder,
    init_official_,
    self_attention,
)
from usdrl_bench.ranges import PositiveFloat, PositiveInt, Probability, UnitInterval
from usdrl_bench.encoders.registration import register_encoder

__all__ = ["DSTEConfig", "DSTE", "DSTLayer", "ConvAttention", "DenseShiftAttention", "dense_shift",
           "dense_shift_keep_mask", "DSTE_PRESETS"]


Variant = Literal["official", "paper"]


@dataclass(frozen=True)
class DSTEConfig(EncoderConfig):
    """DSTE hyper-parameters. Defaults: the official code and ``scripts/pretrain.sh`` (FACTS §7).

    Attributes (beyond :class:`~usdrl_bench.encoders._blocks.EncoderConfig`):
        alpha: weight of CA in the layer mix ``α·CA + (1-α)·DSA`` (Eq. 5; official 0.5, β = 1 - α).
        gap: DenseShift stride; tokens 0, gap, 2·gap, ... are the "kept" positions (official 4).
        kernel_size: Conv1d kernel of CA (official 1; odd sizes use "same" padding here, the official code
            only works with 1).
        drop_path: DropPath probability on every attention / MLP branch (official hard-codes 0.1).
        mlp_ratio: MLP hidden size / H (official ``MLP(dim, dim*2, dim)``: 2, i.e. 1024→2048→1024).
        dense_shift_mask: FACTS §8 row 1. ``"official"``: tokens 0, gap, 2·gap, ... keep the original
            features F and all others take the mixed F_h. ``"paper"`` (Eq. 2): the inverse.
        dsa_block: FACTS §8 row 2. ``"official"``: both DSA branches are pre-LN residual transformer blocks
            (shared weights) whose outputs are averaged (×0.5). ``"paper"`` (Eq. 3):
            ``FFN(SA(F_m)) + FFN(SA(F))`` with no residuals and no averaging (the LayerNorms before SA and
            FFN are kept).
        ca_block: FACTS §8 row 3. ``"official"``: ``h = x + ReLU(Conv(x))``, ``a = x + SA(LN(h))`` (the
            residual goes to the *layer input* x), output ``MLP(LN(a))`` with no MLP residual.
            ``"paper"`` (Eq. 4): ``FFN(SA(Conv(F) + F))``, i.e. no attention residual either.
        pos_every_layer: FACTS §8 row 6. ``True`` (official): the temporal sinusoidal encoding / the
            learned spatial embedding is added before *every* layer; ``False``: once, before the first.
        shared_attention: FACTS §8 row 5. ``True`` (official): one ``nn.MultiheadAttention`` per layer,
            used by CA and both DSA branches. ``False``: CA and DSA each own one (the paper describes CA
            and DSA as separate modules, each with its own SA, Eqs. 3-4 and Fig. 2, and never mentions
            sharing); the DSA's is used by both its branches, whose block weights the official code shares.

    FACTS §8 row 4 (layer mix) has no switch: paper and code agree on ``α·CA + β·DSA`` with β = 1 - α and
    no residual around the layer; α is ``alpha``.
    """

    alpha: Probability = 0.5
    gap: PositiveInt = 4
    kernel_size: PositiveInt = 1
    drop_path: UnitInterval = 0.1
    mlp_ratio: PositiveFloat = 2.0
    dense_shift_mask: Variant = "official"
    dsa_block: Variant = "official"
    ca_block: Variant = "official"
    pos_every_layer: bool = True
    shared_attention: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise ValueError(f"DSTEConfig.kernel_size must be a positive odd int, got {self.kernel_size!r}")
        if round(self.hidden_size * self.mlp_ratio) < 1:
            raise ValueError(f"DSTEConfig.mlp_ratio must be positive, got {self.mlp_ratio}")
        for name in ("dense_shift_mask", "dsa_block", "ca_block"):
            if getattr(self, name) not in ("official", "paper"):
                raise ValueError(
                    f"DSTEConfig.{name} must be 'official' or 'paper', got {getattr(self, name)!r}"
                )

    @property
    def mlp_hidden(self) -> int:
        """Hidden width of the block MLPs: round(H · mlp_ratio) (2048 at H = 1024)."""
        return int(round(self.hidden_size * self.mlp_ratio))


# --------------------------------------------------------------------------------------------------
# DenseShift (Eq. 2)
# --------------------------------------------------------------------------------------------------
def dense_shift_keep_mask(seq_len: int, gap: int, variant: Variant = "official") -> Tensor:
    """Boolean ``(L,)`` mask of the token positions that keep their *original* features F.

    ``"official"``: positions 0, gap, 2·gap, ... keep F (``F_h[:, :, 0::gap] = F[:, :, 0::gap]`` in
    ``DSA.forward``). ``"paper"`` (Eq. 2): every gap-th position takes F_h, so all *other* positions keep F.
    """
    on_grid = torch.zeros(seq_len, dtype=torch.bool)
    on_grid[0::gap] = True
    return on_grid if variant == "official" else ~on_grid


def dense_shift(x: Tensor, wt1: nn.Linear, wt2: nn.Linear, keep: Tensor, causal: Tensor | None = None) -> Tensor:
    """Token-axis mixing of DSA: ``F_h = W2·ReLU(W1·F) + F`` along L, then positions in ``keep`` restored to F.

    Args:
        x: ``(N, L, D)``.
        wt1, wt2: ``Linear(L, L)`` acting on the token axis.
        keep: boolean ``(L,)`` from :func:`dense_shift_keep_mask`.
        causal: optional ``(L, L)`` lower-triangular 0/1 mask multiplied into both weights, so that
            position t mixes positions <= t only (``causal_temporal``).

    Returns:
        ``(N, L, D)``.
    """
    f = x.transpose(1, 2)  # (N, D, L)
    if causal is None:
        f_h = wt2(torch.relu(wt1(f))) + f  # (N, D, L)
    else:
        f_h = F.linear(torch.relu(F.linear(f, wt1.weight * causal, wt1.bias)), wt2.weight * causal, wt2.bias) + f
    return torch.where(keep, f, f_h).transpose(1, 2)  # (N, L, D)


def _self_attention(attn: nn.MultiheadAttention, x: Tensor, causal: bool = False) -> Tensor:
    return self_attention(attn, x, causal)


class DenseShiftAttention(nn.Module):
    """DSA (official ``DSA``): DenseShift token mixing followed by a transformer block applied to both the
    shifted and the original sequence, with the attention module passed in (shared with CA).

    Args:
        seq_len: L (T for the temporal stream, M·V for the spatial one); sizes ``wt1``/``wt2``.
        config: gives D, the MLP size, gap, DropPath and the paper/official variants.
    """

    def __init__(self, seq_len: int, config: DSTEConfig, causal: bool = False) -> None:
        super().__init__()
        dim = config.hidden_size
        self.block = config.dsa_block
        self.causal = causal
        self.wt1 = nn.Linear(seq_len, seq_len)
        self.wt2 = nn.Linear(seq_len, seq_len)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, config.mlp_hidden)
        self.drop_path = DropPath(config.drop_path)
        # not persistent: derived from (seq_len, gap, variant), so it never enters a state dict
        self.register_buffer("keep", dense_shift_keep_mask(seq_len, config.gap, config.dense_shift_mask),
                             persistent=False)
        self.register_buffer("causal_mask", torch.ones(seq_len, seq_len).tril() if causal else None, persistent=False)

    def _branch(self, x: Tensor, attn: nn.MultiheadAttention) -> Tensor:
        if self.block == "official":  # pre-LN residual transformer block
            x = x + self.drop_path(_self_attention(attn, self.norm1(x), self.causal))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        # paper Eq. 3: FFN(SA(.)) without residuals
        a = self.drop_path(_self_attention(attn, self.norm1(x), self.causal))
        return self.drop_path(self.mlp(self.norm2(a)))

    def forward(self, x: Tensor, attn: nn.MultiheadAttention) -> Tensor:
        """``(N, L, D) -> (N, L, D)``."""
        shifted = dense_shift(x, self.wt1, self.wt2, self.keep, self.causal_mask)
        out = self._branch(shifted, attn) + self._branch(x, attn)  # same block weights on both branches
        return 0.5 * out if self.block == "official" else out


class ConvAttention(nn.Module):
    """CA (official ``CA``): a kernel-1 Conv1d residual, attention (shared with DSA) and an MLP.

    Official forward (surprising, but what produced the checkpoints): ``h = x + ReLU(Conv(x))``;
    ``a = x + DropPath(SA(LN1(h)))`` — the residual is the *layer input* x, not h; output
    ``DropPath(MLP(LN2(a)))`` — no residual around the MLP.

    Args:
        config: gives D, kernel size, MLP size, DropPath and the paper/official variant.
        causal: attention over past tokens only, and a kernel > 1 padded on the left (token t sees t-k+1..t).
    """

    def __init__(self, config: DSTEConfig, causal: bool = False) -> None:
        super().__init__()
        dim = config.hidden_size
        self.block = config.ca_block
        self.causal = causal
        self.left_pad = config.kernel_size - 1 if causal else 0
        self.conv = nn.Conv1d(dim, dim, kernel_size=config.kernel_size, padding=0 if causal else config.kernel_size // 2)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, config.mlp_hidden)
        self.drop_path = DropPath(config.drop_path)

    def forward(self, x: Tensor, attn: nn.MultiheadAttention) -> Tensor:
        """``(N, L, D) -> (N, L, D)``."""
        f = x.transpose(1, 2)
        if self.left_pad:
            f = F.pad(f, (self.left_pad, 0))
        h = x + torch.relu(self.conv(f)).transpose(1, 2)  # conv over tokens, (N, L, D)
        a = self.drop_path(_self_attention(attn, self.norm1(h), self.causal))
        if self.block == "official":
            a = a + x
        return self.drop_path(self.mlp(self.norm2(a)))


class DSTLayer(nn.Module):
    """One DST layer (official ``DST_Layer``): ``α·CA(x) + (1-α)·DSA(x)``, no outer residual (Eq. 5).

    The layer owns the single ``nn.MultiheadAttention`` (H-d, ``num_heads`` heads, dropout 0,
    batch-first) that CA and both DSA branches use — three calls per forward (FACTS §8 row 5). The
    official model registers it under both ``CA.attn`` and ``DSA.attn``; here it is registered once as
    ``attn`` and handed to CA/DSA at call time, so the state dict holds one copy. With
    ``shared_attention=False`` CA uses ``attn`` and DSA its own ``dsa_attn``.

    Args:
        seq_len: L of the stream.
        config: the DSTE config.
        causal: no token sees a later one (the temporal stream with ``causal_temporal``).
    """

    def __init__(self, seq_len: int, config: DSTEConfig, causal: bool = False) -> None:
        super().__init__()
        self.alpha = config.alpha
        self.attn = nn.MultiheadAttention(config.hidden_size, config.num_heads, dropout=0.0, batch_first=True)
        self.dsa_attn = None if config.shared_attention else nn.MultiheadAttention(
            config.hidden_size, config.num_heads, dropout=0.0, batch_first=True)
        self.ca = ConvAttention(config, causal)
        self.dsa = DenseShiftAttention(seq_len, config, causal)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, L, D) -> (N, L, D)``."""
        dsa_attn = self.attn if self.dsa_attn is None else self.dsa_attn
        return self.alpha * self.ca(x, self.attn) + (1.0 - self.alpha) * self.dsa(x, dsa_attn)


class DSTE(SkeletonEncoder):
    """Dense Spatio-Temporal Encoder (USDRL [0], official ``model/DSTE.py`` [1]).

    Args:
        config: :class:`DSTEConfig` (defaults: the official NTU model, H = 1024, T = 64, V = 25, M = 2).

    Shapes:
        input ``(N, C, T, V, M)``; :meth:`forward_dense` → ``(N, T, H), (N, M·V, H)``;
        :meth:`forward_features` → ``(N, H), (N, H), (N, 2H)``; :meth:`forward` → ``(N, 2H)``.

    Raises:
        ValueError: on an invalid config, or (at call time) an input whose (C, T, V, M) differs from it.

    Example:
        >>> enc = DSTE(DSTEConfig(hidden_size=16, num_frames=16))
        >>> enc(torch.zeros(2, 3, 16, 25, 2)).shape
        torch.Size([2, 32])
    """

    encoder_name = "dste"

    def __init__(self, config: DSTEConfig | None = None) -> None:
        config = config or DSTEConfig()
        super().__init__(config)
        h = config.hidden_size
        self.embedding = SkeletonEmbedding(config.temporal_input_size, config.spatial_input_size, h)
        self.temporal_pe = SinusoidalPositionalEncoding(h, config.max_len)
        # official: a learned (1, 50, H) table (50 hard-coded = M·V for NTU), trunc-normal std 0.02
        self.spatial_pe = nn.Parameter(torch.zeros(1, config.num_spatial_tokens, h))
        # official: exactly 2 layers per stream, hard-coded (t_tr, t_tr1 / s_tr, s_tr1); num_layer is ignored
        self.temporal_layers = nn.ModuleList(DSTLayer(config.num_frames, config, config.causal_temporal)
                                             for _ in range(config.num_layers))
        self.spatial_layers = nn.ModuleList(
            DSTLayer(config.num_spatial_tokens, config) for _ in range(config.num_layers)
        )
        init_official_(self)
        nn.init.trunc_normal_(self.spatial_pe, std=0.02, a=-2.0, b=2.0)

    def forward_tokens(self, x_t: Tensor, x_s: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, T, M·V·C), (N, M·V, T·C) -> (N, T, H), (N, M·V, H)``."""
        z_t, z_s = self.embedding(x_t, x_s)  # (N, T, H), (N, M·V, H)
        every = self.config.pos_every_layer
        for i, layer in enumerate(self.temporal_layers):
            z_t = layer(self.temporal_pe(z_t) if (every or i == 0) else z_t)
        for i, layer in enumerate(self.spatial_layers):
            z_s = layer(z_s + self.spatial_pe if (every or i == 0) else z_s)
        return z_t, z_s


#: Named presets (timm style). ``paper``: the paper's model (FACTS §7). ``paper_eqs``: the same size
#: with every FACTS §8 switch set to the paper's equations. ``small``: a CPU-sized demo model. ``tiny``:
#: for tests.
DSTE_PRESETS: dict[str, dict] = {
    "paper": dict(hidden_size=1024, num_frames=64),
    "paper_eqs": dict(hidden_size=1024, num_frames=64, dense_shift_mask="paper", dsa_block="paper",
                      ca_block="paper", shared_attention=False),
    "small": dict(hidden_size=64, num_frames=32, drop_path=0.1),
    "tiny": dict(hidden_size=16, num_frames=16),
}

# registered through the public decorator, as a plug-in's encoder is (its builder: the config from a preset and
# field overrides, :func:`~usdrl_bench.encoders._blocks.config_from_preset`)
register_encoder("dste", DSTEConfig, DSTE_PRESETS,
                 description="DSTE: USDRL's dense spatio-temporal encoder (official model/DSTE.py)")(DSTE)
