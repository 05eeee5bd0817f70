"""MAMP: masked motion prediction with a skeleton transformer (encoder ``mamp_vit``, objective and method
``mamp``).

Source: Mao et al., "Masked Motion Predictors are Strong 3D Action Representation Learners" (ICCV 2023),
github.com/maoyunyao/MAMP at 09e6252a (``model_mamp/transformer.py``, ``model/transformer.py``,
``main_pretrain.py``, ``main_linprobe.py``, ``feeder/``):

* encoder: each person is a sample; tokens are each joint x each 4-frame segment (``Conv2d(3, D, (4, 1),
  stride (4, 1))``), learnable factorised temporal + joint position embeddings (trunc-normal std 0.02), pre-LN
  blocks (MHSA with qkv bias, MLP ratio 4 with GELU), a final LayerNorm; depth 8, width 256, 8 heads, T 120.
  The representation is the final tokens' mean over persons, frames and joints (256-d);
* motion-aware masking (owned by the objective): per token the mean absolute difference of its raw 4-frame
  patch from the previous patch of the same joint, ``p = softmax(m / (max m * tau))``, Gumbel-perturbed
  ``log p``, the ``(1 - mask_ratio)`` tokens of lowest score kept (mask ratio 0.9, tau 0.8 / 0.75 on NTU-120);
* decoder (owned by the objective): ``Linear(D, D_d)``, a learnable mask token, its own temporal and joint
  embeddings, ``decoder_depth`` blocks (3 on NTU-60, 5 on NTU-120 and PKU), LayerNorm, ``Linear(D_d, 4 x 3)``;
* target: the motion ``x[t + 1] - x[t]`` (last frame 0) patchified, normalised per token over its 12 values
  (``(t - mean) / sqrt(var + 1e-6)``, unbiased variance); the MSE averaged over the masked tokens;
* views: crop ratio U[0.5, 1] of the valid frames (at least 64 frames, or all), resized to 120, a rotation
  U(-0.3, 0.3) rad about x, y and z (``R = Rz Ry Rx``); AdamW (0.9, 0.95), weight decay 0.05 without decay on
  1-D parameters, lr 1e-3, 20 warm-up epochs then a cosine to 5e-4, per iteration, batch 128, 400 epochs;
* linear probe: ``BatchNorm1d(256, affine=False)`` + Linear, SGD lr 0.1, batch 256, 100 epochs, cosine to 0.

Reproduced: the above. Simplified: the Gumbel noise of the masking comes from the global generator (not the
per-sample keys), so a data-parallel run masks differently from one process (same distribution); the probe's
BatchNorm is applied as the training set's standardisation and its cosine schedule as steps (the suite's
``linear_own`` probe: ``feature_norm: batchnorm``); its crop-and-rotate augmentation during probing is left
out (features are computed once).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.moco import axis_rotations
from usdrl_bench import (EncoderConfig, Objective, SkeletonEncoder, random_crop_resize, register_encoder,
                         register_method, register_objective)

__all__ = ["MAMPConfig", "MAMPEncoder", "MAMP", "motion_aware_mask", "patchify", "motion_target"]


class Block(nn.Module):
    """Pre-LN transformer block: ``x + MHSA(LN(x))``, then ``x + MLP(LN(x))`` (timm's ``Block``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        return x + self.mlp(self.norm2(x))


def _init_weights(module: nn.Module) -> None:
    """MAMP's init: xavier-uniform Linear weights, zero biases; LayerNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class MAMPConfig(EncoderConfig):
    """``hidden_size`` D (256), ``num_heads`` (8), ``num_layers`` depth (8), ``num_frames`` T (120, a multiple
    of ``t_patch``), ``t_patch`` frames per token (4), ``mlp_ratio`` (4)."""

    hidden_size: int = 256
    num_heads: int = 8
    num_layers: int = 8
    num_frames: int = 120
    t_patch: int = 4
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_frames % self.t_patch:
            raise ValueError(f"MAMPConfig: num_frames {self.num_frames} is not a multiple of t_patch {self.t_patch}")


@register_encoder("mamp_vit", MAMPConfig, presets={
    "paper": dict(hidden_size=256, num_heads=8, num_layers=8, num_frames=120),
    "small": dict(hidden_size=96, num_heads=4, num_layers=4, num_frames=32),
    "tiny": dict(hidden_size=16, num_heads=2, num_layers=2, num_frames=16),
}, description="MAMP's skeleton transformer: joint x 4-frame tokens, pre-LN blocks, mean-pooled")
class MAMPEncoder(SkeletonEncoder):
    """``(N, C, T, V, M) -> (N, D)`` (module docstring). ``embed`` and ``encode`` are the two halves the
    masked objective uses: tokens with position embeddings, and the blocks + final norm."""

    def __init__(self, config: MAMPConfig) -> None:
        super().__init__(config)
        d = config.hidden_size
        self.embed_dim = d
        self.t_tokens = config.num_frames // config.t_patch
        self.patch_embed = nn.Conv2d(config.in_channels, d, (config.t_patch, 1), (config.t_patch, 1))
        self.temp_embed = nn.Parameter(torch.zeros(1, self.t_tokens, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, config.num_joints, d))
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d)
        _init_weights(self)
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def embed(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M) -> (N·M, T/t_patch, V, D)`` tokens with their position embeddings (persons
        are samples, person-major within each sample)."""
        self.check_input(x)
        n, c, t, v, m = x.shape
        per_person = x.permute(0, 4, 1, 2, 3).reshape(n * m, c, t, v)
        tokens = self.patch_embed(per_person).permute(0, 2, 3, 1)  # (N·M, TP, V, D)
        return tokens + self.temp_embed + self.pos_embed

    def encode(self, tokens: Tensor) -> Tensor:
        """``(B, L, D) -> (B, L, D)``: the blocks and the final LayerNorm."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M) -> (N, D)``: every token, mean over persons, frames and joints."""
        tokens = self.embed(x)
        nm, tp, v, d = tokens.shape
        out = self.encode(tokens.reshape(nm, tp * v, d))
        return out.view(x.shape[0], -1, d).mean(dim=1)

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """No two token streams: the pooled feature three times."""
        y = self.forward(x)
        return y, y, y


def patchify(x: Tensor, t_patch: int) -> Tensor:
    """``(N, C, T, V, M) -> (N·M, T/t_patch · V, t_patch · C)``: per person, token (segment, joint) holds its
    ``t_patch`` frames' coordinates, frame-major (MAMP's ``patchify``)."""
    n, c, t, v, m = x.shape
    p = x.permute(0, 4, 2, 3, 1).reshape(n * m, t // t_patch, t_patch, v, c)
    return p.permute(0, 1, 3, 2, 4).reshape(n * m, (t // t_patch) * v, t_patch * c)


def motion_target(x: Tensor, t_patch: int) -> Tensor:
    """MAMP's target: the motion ``x[t+1] - x[t]`` (last frame 0) patchified, each token's ``t_patch · C``
    values standardised (``(t - mean) / sqrt(var + 1e-6)``, unbiased variance). ``(N·M, L, t_patch · C)``."""
    motion = torch.zeros_like(x)
    motion[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    target = patchify(motion, t_patch)
    return (target - target.mean(dim=-1, keepdim=True)) / torch.sqrt(target.var(dim=-1, keepdim=True) + 1e-6)


def motion_aware_mask(patches: Tensor, v: int, mask_ratio: float, tau: float, noise: Tensor) -> tuple[Tensor, Tensor]:
    """MAMP's ``motion_aware_random_masking``.

    Args:
        patches: ``(B, TP · V, t_patch · C)`` raw patches (segment-major).
        v: joints per segment.
        mask_ratio: fraction of tokens masked (0.9).
        tau: temperature of the motion prior (<= 0: uniform random masking).
        noise: ``(B, TP · V)`` uniform numbers in [0, 1) (the Gumbel noise's source).
    Returns:
        ``(keep (B, L_keep) token indices, mask (B, L) with 1 = masked)``.
    """
    b, length, _ = patches.shape
    keep_n = int(length * (1 - mask_ratio))
    if tau > 0:
        seg = patches.view(b, length // v, v, -1)
        motion = torch.zeros_like(seg)
        motion[:, 1:] = (seg[:, 1:] - seg[:, :-1]).abs()
        motion[:, 0] = motion[:, 1] if seg.shape[1] > 1 else 0
        m = motion.mean(dim=-1).reshape(b, length)
        logits = m / (m.amax(dim=1, keepdim=True) * tau + 1e-10)
        score = torch.log_softmax(logits, dim=1) - torch.log(-torch.log(noise + 1e-10) + 1e-10)
    else:
        score = noise
    ids = score.argsort(dim=1)
    keep = ids[:, :keep_n]
    mask = torch.ones(b, length, device=patches.device)
    mask.scatter_(1, keep, 0.0)
    return keep, mask


def rotate_xyz(x: Tensor, draw, theta: float) -> Tensor:
    """MAMP's ``random_rot``: angles U(-theta, theta) rad about x, y and z per sample, ``R = Rz Ry Rx`` applied
    to column vectors."""
    rx, ry, rz = axis_rotations((draw((x.shape[0], 3)) * 2 - 1) * theta)
    r = rz @ ry @ rx
    return torch.einsum("nij,njtvm->nitvm", r, x)


@register_objective("mamp")
class MAMP(Objective):
    """MAMP (ICCV 2023): motion-aware masking, a decoder, the normalised-motion target (module docstring)."""

    num_views = 1
    uneven_shards = False  # the loss is a mean over this rank's masked tokens

    def __init__(self, encoder, *, mask_ratio: float = 0.9, tau: float = 0.8, decoder_dim: int = 256,
                 decoder_depth: int = 3, decoder_heads: int = 8, min_scale: float = 0.5, min_length: int = 64,
                 rotation: float = 0.3) -> None:
        super().__init__(encoder)
        if not all(hasattr(encoder, a) for a in ("embed", "encode", "t_tokens")):
            raise ValueError(f"mamp masks the tokens of the mamp_vit encoder (embed, encode); got {type(encoder).__name__}")
        if not 0 < mask_ratio < 1:
            raise ValueError(f"mamp: mask_ratio must lie in (0, 1), got {mask_ratio}")
        cfg = encoder.config
        self.t_patch, self.v = cfg.t_patch, cfg.num_joints
        self.mask_ratio, self.tau = float(mask_ratio), float(tau)
        self.min_scale, self.min_length, self.rotation = float(min_scale), int(min_length), float(rotation)
        self.decoder_embed = nn.Linear(cfg.hidden_size, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_temp_embed = nn.Parameter(torch.zeros(1, encoder.t_tokens, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, cfg.num_joints, decoder_dim))
        self.decoder_blocks = nn.ModuleList(Block(decoder_dim, decoder_heads) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.t_patch * cfg.in_channels)
        _init_weights(self)
        for p in (self.mask_token, self.decoder_temp_embed, self.decoder_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def make_views(self, x, num_frames, *, out_frames, keys, layout, stream):
        draw = keys.drawer(x.device)
        view = random_crop_resize(x, num_frames, out_frames, draw, min_scale=self.min_scale,
                                  min_length=min(self.min_length, x.shape[2]), check=False)
        return [rotate_xyz(view, draw, self.rotation) if self.rotation > 0 else view]

    def forward(self, encoder, views):
        x = views[0]
        patches = patchify(x, self.t_patch)  # (B, L, t_patch·C), B = N·M
        b, length, _ = patches.shape
        keep, mask = motion_aware_mask(patches, self.v, self.mask_ratio, self.tau,
                                       torch.rand(b, length, device=x.device))
        tokens = encoder.embed(x).reshape(b, length, -1)
        visible = tokens.gather(1, keep[:, :, None].expand(-1, -1, tokens.shape[-1]))
        latent = self.decoder_embed(encoder.encode(visible))
        full = self.mask_token.expand(b, length, -1).clone()
        full = full.scatter(1, keep[:, :, None].expand(-1, -1, full.shape[-1]), latent)
        full = full.view(b, encoder.t_tokens, self.v, -1) + self.decoder_temp_embed + self.decoder_pos_embed
        full = full.view(b, length, -1)
        for block in self.decoder_blocks:
            full = block(full)
        pred = self.decoder_pred(self.decoder_norm(full))
        target = motion_target(x, self.t_patch)
        per_token = (pred.float() - target.float()).pow(2).mean(dim=-1)
        loss = (per_token * mask).sum() / mask.sum()
        return loss, {"masked_mse": loss.detach()}


_MAMP_LINEAR = {"epochs": 100, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                "milestones": [60, 80], "gamma": 0.1, "eval_every": 5, "feature_norm": "batchnorm"}
_MAMP_PRETRAIN = {"optimizer": "adamw", "betas": [0.9, 0.95], "weight_decay": 0.05, "no_decay_1d": True,
                  "lr": 1e-3, "min_lr": 5e-4, "schedule": "cosine", "warmup_epochs": 20, "batch_size": 128,
                  "epochs": 400, "milestones": [], "views": {}}

register_method(
    "mamp", encoder="mamp_vit", objective="mamp",
    paper="Mao et al., Masked Motion Predictors are Strong 3D Action Representation Learners (MAMP), ICCV 2023",
    repository="github.com/maoyunyao/MAMP", commit="09e6252a",
    description="MAMP: masked motion prediction, motion-aware masking, transformer on joint x 4-frame tokens",
    presets={
        "paper": {"encoder_preset": "paper", "pretrain": _MAMP_PRETRAIN,
                  "objective_options": {"tau": 0.8, "decoder_depth": 3}, "evaluations": {"linear_own": _MAMP_LINEAR}},
        # about 8 minutes of one core on NW-UCLA (6.7 s an epoch)
        "cpu": {"encoder_preset": "small", "pretrain": {**_MAMP_PRETRAIN, "epochs": 70, "warmup_epochs": 5},
                "objective_options": {"tau": 0.8, "decoder_dim": 96, "decoder_depth": 2, "decoder_heads": 4,
                                      "min_length": 16},
                "evaluations": {"linear_own": _MAMP_LINEAR}},
    },
    published={"ntu60_xsub/linear": 84.9, "ntu60_xview/linear": 89.1, "ntu120_xsub/linear": 78.6,
               "ntu120_xset/linear": 79.1, "pku2_xsub/linear": 53.8},
)
