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

Official checkpoints (:data:`MAMP_FORMAT`): ``util/misc.py save_model`` writes ``{'model', 'optimizer', 'epoch',
'scaler', 'args'}`` with ``args`` an ``argparse.Namespace`` (allow-listed for ``weights_only`` loading, nothing
else is). The encoder is ``joints_embed.proj``, ``temp_embed``, ``pos_embed``, ``blocks.*`` and ``norm``; the
decoder and mask token become the objective. Its feature is the final-norm tokens averaged over persons, time
tokens and joints, the input of the linear probe's BatchNorm (``main_linprobe.py``); a different ``num_frames``
interpolates ``temp_embed`` bicubically, as ``util/pos_embed.py interpolate_temp_embed``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.moco import axis_rotations
from usdrl_bench import (CheckpointMismatchError, EncoderConfig, Objective, OfficialFormat, OfficialModel,
                         SkeletonEncoder, create_encoder, load_renamed, random_crop_resize, register_encoder,
                         register_method, register_objective, renamed_state, shaping_args)

__all__ = ["MAMPConfig", "MAMPEncoder", "MAMP", "motion_aware_mask", "patchify", "motion_target", "MAMP_FORMAT",
           "official_mamp_name"]


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


# --- official checkpoints -----------------------------------------------------------------------------------------
_BLOCK_NAMES = (("qkv.", "attn.qkv."), ("proj.", "attn.proj."), ("mlp.0.", "mlp.fc1."), ("mlp.2.", "mlp.fc2."))


def official_mamp_name(key: str) -> str:
    """Official ``model_mamp/transformer.py`` name of a suite MAMP encoder or objective state key."""
    if key.startswith("patch_embed."):
        return "joints_embed.proj." + key[len("patch_embed."):]
    m = re.match(r"^((?:decoder_)?blocks\.\d+\.)(.+)$", key)
    if m is not None:
        prefix, rest = m.groups()
        for ours, theirs in _BLOCK_NAMES:
            if rest.startswith(ours):
                return prefix + theirs + rest[len(ours):]
    return key


_MAMP_ARGS = ("dim_in", "dim_feat", "depth", "num_heads", "mlp_ratio", "num_frames", "num_joints", "patch_size",
              "t_patch_size", "qkv_bias", "num_bodies", "decoder_dim_feat", "decoder_depth", "norm_skes_loss",
              "mask_ratio", "motion_aware_tau")


def _mamp_config(model: Mapping[str, Tensor], args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Encoder sizes from the tensors, checked against the official arguments given."""
    if "joints_embed.proj.weight" not in model or "norm.weight" not in model:
        raise ValueError(f"no 'joints_embed.proj.weight' / 'norm.weight': not a MAMP model "
                         f"(keys: {', '.join(sorted(model)[:6])}, ...)")
    proj, temp, pos = model["joints_embed.proj.weight"], model["temp_embed"], model["pos_embed"]
    depth = len({int(m.group(1)) for k in model if (m := re.match(r"^blocks\.(\d+)\.", k))})
    dim = int(proj.shape[0])
    found = {"dim_feat": dim, "dim_in": int(proj.shape[1]), "t_patch_size": int(proj.shape[2]), "depth": depth,
             "num_joints": int(pos.shape[2]), "mlp_ratio": model["blocks.0.mlp.fc1.weight"].shape[0] / dim}
    if int(proj.shape[3]) != 1 or int(args.get("patch_size", 1)) != 1:
        raise ValueError(f"only joint patches of 1 are built (patch_size {args.get('patch_size', 1)}, kernel {tuple(proj.shape)})")
    for key, value in found.items():
        if key in args and float(args[key]) != float(value):
            raise ValueError(f"official argument {key}={args[key]} but the file's tensors give {value}")
    frames_in_file = int(temp.shape[1]) * found["t_patch_size"]
    cfg = dict(in_channels=found["dim_in"], hidden_size=dim, num_layers=depth, num_heads=int(args.get("num_heads", 8)),
               num_frames=int(args.get("num_frames", frames_in_file)), t_patch=found["t_patch_size"],
               num_joints=found["num_joints"], num_bodies=int(args.get("num_bodies", 2)), mlp_ratio=float(found["mlp_ratio"]))
    notes = {"sizes": f"from the tensors: {found}", "num_heads": "given" if "num_heads" in args else "official default 8"}
    if cfg["num_frames"] != frames_in_file:
        notes["temp_embed"] = f"interpolated from {frames_in_file} to {cfg['num_frames']} frames (interpolate_temp_embed)"
    return cfg, notes


def _interpolate_temp_embed(embed: Tensor, tokens: int) -> Tensor:
    """``util/pos_embed.py interpolate_temp_embed``: bicubic over the time tokens, ``(1, TP, 1, D)``."""
    if embed.shape[1] == tokens:
        return embed
    out = F.interpolate(embed.permute(0, 3, 1, 2).float(), size=(tokens, 1), mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).to(embed.dtype)


def _load_mamp(obj: Any, official_args: Mapping[str, Any]) -> OfficialModel:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("model"), Mapping):
        raise ValueError("expected MAMP's {'model', 'optimizer', 'epoch', 'scaler', 'args'}; "
                         f"found {sorted(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__}")
    saved = vars(obj["args"]) if isinstance(obj.get("args"), argparse.Namespace) else {}
    args = {**dict(saved.get("model_args") or {}), **{k: saved[k] for k in ("mask_ratio", "motion_aware_tau") if k in saved}}
    args.update(shaping_args(official_args, _MAMP_ARGS, "mamp"))
    model = {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj["model"].items()}
    cfg, notes = _mamp_config(model, args)
    if saved:
        notes["args"] = "model_args, mask_ratio and motion_aware_tau from the file's args, under the arguments given"
    encoder = create_encoder("mamp_vit", None, **cfg)
    tokens = cfg["num_frames"] // cfg["t_patch"]
    load_renamed(encoder, model, official_mamp_name, what="mamp encoder",
                 transform={"temp_embed": lambda t: _interpolate_temp_embed(t, tokens)})
    objective = None
    if "decoder_pred.weight" in model:
        if not bool(args.get("norm_skes_loss", True)):
            raise ValueError("norm_skes_loss False (raw motion target) is not built; the suite's target is normalised")
        depth = len({int(m.group(1)) for k in model if (m := re.match(r"^decoder_blocks\.(\d+)\.", k))})
        objective = MAMP(encoder, mask_ratio=float(args.get("mask_ratio", 0.9)),
                         tau=float(args.get("motion_aware_tau", 0.8)), decoder_dim=int(model["decoder_embed.weight"].shape[0]),
                         decoder_depth=depth, decoder_heads=cfg["num_heads"])
        load_renamed(objective, model, official_mamp_name, what="mamp decoder",
                     transform={"decoder_temp_embed": lambda t: _interpolate_temp_embed(t, tokens)})
        notes["objective"] = f"decoder of {depth} blocks, width {objective.decoder_embed.out_features}"
    used = {official_mamp_name(k) for k in encoder.state_dict()}
    used |= {official_mamp_name(k) for k in objective.state_dict()} if objective is not None else set()
    stray = sorted(k for k in model if k not in used and not k.startswith(("decoder", "mask_token", "head.")))
    if stray:
        raise CheckpointMismatchError("mamp encoder", [], stray)
    return OfficialModel(encoder, objective, notes)


def _export_mamp(encoder: MAMPEncoder, objective_state: Mapping[str, Tensor] | None) -> dict[str, Any]:
    """``save_model``'s dict: the model's weights (the encoder, and the decoder with an objective state), the
    epoch and ``args`` with the ``model_args`` the official scripts build the model from; the optimiser and loss
    scaler are None (the file is for evaluation, not to resume a run)."""
    cfg = encoder.config
    model = renamed_state(encoder.state_dict(), official_mamp_name)
    model_args = dict(dim_in=cfg.in_channels, dim_feat=cfg.hidden_size, depth=cfg.num_layers, num_heads=cfg.num_heads,
                      mlp_ratio=cfg.mlp_ratio, num_frames=cfg.num_frames, num_joints=cfg.num_joints, patch_size=1,
                      t_patch_size=cfg.t_patch, qkv_bias=True, qk_scale=None, drop_rate=0.0, attn_drop_rate=0.0,
                      drop_path_rate=0.0)
    if objective_state is not None:
        model.update(renamed_state(objective_state, official_mamp_name))
        model_args.update(decoder_dim_feat=int(objective_state["decoder_embed.weight"].shape[0]),
                          decoder_depth=len({k.split(".")[1] for k in objective_state if k.startswith("decoder_blocks.")}),
                          norm_skes_loss=True)
    args = argparse.Namespace(model="model_mamp.transformer.Transformer", model_args=model_args)
    return {"model": model, "optimizer": None, "epoch": None, "scaler": None, "args": args}


MAMP_FORMAT = OfficialFormat(load=_load_mamp, export=_export_mamp, safe_globals=(argparse.Namespace,),
                             description="util/misc.py save_model: {'model', 'optimizer', 'epoch', 'scaler', 'args' "
                                         "(argparse.Namespace)}")


_MAMP_LINEAR = {"epochs": 100, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                "milestones": [60, 80], "gamma": 0.1, "eval_every": 5, "feature_norm": "batchnorm"}
_MAMP_PRETRAIN = {"optimizer": "adamw", "betas": [0.9, 0.95], "weight_decay": 0.05, "no_decay_1d": True,
                  "lr": 1e-3, "min_lr": 5e-4, "schedule": "cosine", "warmup_epochs": 20, "batch_size": 128,
                  "epochs": 400, "milestones": [], "views": {}, "drop_last": True}  # main_pretrain.py drops the last batch

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
    official_format=MAMP_FORMAT,
)
