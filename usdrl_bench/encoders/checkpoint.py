"""Encoder checkpoints: import of the official USDRL checkpoints and the suite's own format.

Official format (FACTS §9, ``docs/facts.md``; the key list of the official state dict):

- pretraining: ``{"epoch", "state_dict", "optimizer"}`` saved from a ``DataParallel`` model, keys
  ``module.backbone.*`` plus the projectors ``module.{i,s,t}_proj.*``;
- downstream: the same backbone keys without ``module.``, plus ``fc.*``.

The official DSTE registers each layer's shared attention twice (``CA.attn.*`` and ``DSA.attn.*``,
identical tensors); the suite's DSTE holds it once, so the importer checks the two copies agree and
maps them onto one module. Every size is read off the tensor shapes (H, T, M·V, C, layers, MLP and
feed-forward widths, kernel size, PE table length); what shapes cannot tell (heads, α, gap, DropPath,
and how M·V splits into M and V) takes the official default unless given as an override.

Suite format (:func:`save_encoder`): ``{"format": "usdrl-bench/encoder-v1", "encoder": name, "config":
asdict(config), "state_dict": ..., **extra}``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from usdrl_bench.encoders import create_encoder
from usdrl_bench.io import torch_save_atomic

__all__ = [
    "SUITE_FORMAT",
    "CheckpointMismatchError",
    "ImportedEncoder",
    "load_official_state_dict",
    "to_official_state_dict",
    "official_key_map",
    "save_encoder",
    "load_encoder",
    "encoder_from_checkpoint",
    "is_suite_checkpoint",
    "read_torch_file",
]

log = logging.getLogger(__name__)

SUITE_FORMAT = "usdrl-bench/encoder-v1"

#: Joint counts of known layouts, used to split the official spatial token count M·V into M and V
#: when the caller does not say (NTU / Kinect v2: 25, Kinect v1 / MSR Action3D: 20, COCO: 17, ...).
_KNOWN_JOINT_COUNTS = (25, 20, 17, 18, 15)


class CheckpointMismatchError(ValueError):
    """A state dict does not fit the model built for it.

    Attributes:
        what: the checkpoint and model described (the message's start).
        missing: keys the model needs that the state dict lacks (in the state dict's naming).
        unexpected: keys the state dict has that the model does not use.
        mismatched: ``key -> (checkpoint shape, model shape)``.
        other: further lines of the message.
    """

    def __init__(self, what: str, missing: list[str], unexpected: list[str],
                 mismatched: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]] | None = None,
                 other: list[str] | None = None) -> None:
        self.what = what
        self.missing = sorted(missing)
        self.unexpected = sorted(unexpected)
        self.mismatched = dict(mismatched or {})
        self.other = list(other or [])
        parts = [f"{what} does not fit:"]
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            parts.append("shape mismatches: " + ", ".join(
                f"{k} checkpoint {tuple(a)} vs model {tuple(b)}" for k, (a, b) in self.mismatched.items()))
        parts.extend(other or [])
        super().__init__("\n  ".join(parts))


class ImportedEncoder(NamedTuple):
    """What :func:`load_official_state_dict` returns.

    Attributes:
        encoder: the built encoder with the backbone weights loaded, in ``eval()`` mode.
        extra: the non-backbone tensors (projectors ``{i,s,t}_proj.*``, downstream ``fc.*``), keys without
            the ``module.`` prefix.
    """

    encoder: nn.Module
    extra: dict[str, Tensor]


# --------------------------------------------------------------------------------------------------
# key mapping between the suite's encoders and the official naming
# --------------------------------------------------------------------------------------------------
_COMMON_RULES: tuple[tuple[str, str], ...] = (
    (r"^embedding\.temporal\.", "ske_emb.t_embedding."),
    (r"^embedding\.spatial\.", "ske_emb.s_embedding."),
    (r"^temporal_pe\.pe$", "tpe.pe"),
    (r"^spatial_pe$", "spe"),
)


def _dste_layer_prefix(stream: str, index: int) -> str:
    # official: t_tr / t_tr1 (and s_tr / s_tr1); generalised to t_tr2, ... for more layers
    return f"{stream}_tr{index if index else ''}."


def _official_names(encoder_name: str, key: str) -> tuple[str, ...]:
    for pattern, repl in _COMMON_RULES:
        if re.match(pattern, key):
            return (re.sub(pattern, repl, key),)
    m = re.match(r"^(temporal|spatial)_layers\.(\d+)\.(.+)$", key)
    if m is None:
        raise KeyError(f"no official name for {encoder_name} key {key!r}")
    stream, index, rest = m.group(1)[0], int(m.group(2)), m.group(3)
    if encoder_name == "sttr":
        return (f"{stream}_tr.layers.{index}.{rest}",)
    if encoder_name != "dste":
        raise KeyError(f"encoder {encoder_name!r} has no official checkpoint format")
    prefix = _dste_layer_prefix(stream, index)
    if rest.startswith("attn."):  # one shared module, two official copies
        return (f"{prefix}CA.{rest}", f"{prefix}DSA.{rest}")
    if rest.startswith("ca.conv."):
        return (f"{prefix}CA.conv1.{rest[len('ca.conv.'):]}",)
    if rest.startswith("ca."):
        return (f"{prefix}CA.{rest[3:]}",)
    if rest.startswith("dsa."):
        return (f"{prefix}DSA.{rest[4:]}",)
    raise KeyError(f"no official name for {encoder_name} key {key!r}")


def official_key_map(encoder: nn.Module) -> dict[str, tuple[str, ...]]:
    """``suite key -> official backbone key(s)`` (without ``backbone.``) for every state-dict entry of
    ``encoder``; the DSTE attention maps to two official keys (``CA.attn.*`` and ``DSA.attn.*``).

    Raises:
        KeyError: the encoder has no official counterpart (not "dste" or "sttr").
    """
    name = getattr(encoder, "encoder_name", "")
    return {k: _official_names(name, k) for k in encoder.state_dict()}


def to_official_state_dict(encoder: nn.Module, prefix: str = "module.backbone.") -> dict[str, Tensor]:
    """The encoder's weights under the official key names (the inverse of :func:`load_official_state_dict`).

    Args:
        encoder: a suite DSTE or STTR.
        prefix: prepended to every key: ``"module.backbone."`` (pretraining checkpoints, the default)
            or ``"backbone."`` (downstream models).

    Returns:
        ``{official key: tensor}``, with the DSTE shared attention written under both ``CA.attn`` and
        ``DSA.attn`` as the official model does.
    """
    state = encoder.state_dict()
    out: dict[str, Tensor] = {}
    for key, names in official_key_map(encoder).items():
        for name in names:
            out[prefix + name] = state[key].detach().clone()
    return out


# --------------------------------------------------------------------------------------------------
# official import
# --------------------------------------------------------------------------------------------------
def read_torch_file(path: str | os.PathLike, map_location: Any = "cpu", weights_only: bool = True,
                    safe_globals: tuple[type, ...] = ()) -> Any:
    """``torch.load`` with the suite's errors: with ``weights_only`` (the default) only tensors, plain containers
    and the classes in ``safe_globals`` are read, and anything else is refused without running it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds another object type (the first one torch names).
    """
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=weights_only)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # torch raises pickle.UnpicklingError / RuntimeError with long texts
        text = str(exc)
        if weights_only and ("weights_only" in text or "Unsupported global" in text):
            detail = next((line.strip() for line in text.splitlines() if "Unsupported global" in line),
                          text.splitlines()[0] if text else type(exc).__name__)
            allowed = f" and {', '.join(c.__name__ for c in safe_globals)}" if safe_globals else ""
            raise ValueError(f"{path}: holds objects other than tensors, plain containers{allowed}; refused without "
                             f"running it ({detail}); if you trust the file, pass weights_only=False") from exc
        raise


def _unwrap_state_dict(obj: Any, source: str) -> dict[str, Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{source}: expected a state dict or a checkpoint dict with 'state_dict', "
                         f"got {type(obj).__name__}")
    sd = {}
    for key, value in obj.items():
        if isinstance(value, Tensor):
            sd[key[len("module."):] if key.startswith("module.") else key] = value
    return sd


def _detect_kind(backbone: Mapping[str, Tensor], source: str) -> str:
    if any(re.match(r"^[ts]_tr\d*\.(CA|DSA)\.", k) for k in backbone):
        return "dste"
    if any(re.match(r"^[ts]_tr\.layers\.\d+\.", k) for k in backbone):
        return "sttr"
    sample = ", ".join(sorted(backbone)[:6])
    raise ValueError(f"{source}: cannot tell DSTE from STTR: no 't_tr*.CA.*' / 't_tr.layers.*' keys "
                     f"among the backbone keys ({sample}, ...)")


def _split_bodies(num_tokens: int, overrides: Mapping[str, Any], source: str) -> tuple[int, int]:
    """Split M·V into (M, V): from the overrides if given, else by known joint counts (2 bodies first)."""
    m, v = overrides.get("num_bodies"), overrides.get("num_joints")
    if m is not None and v is None:
        v = num_tokens // m
    elif v is not None and m is None:
        m = num_tokens // v
    elif m is None and v is None:
        if num_tokens % 2 == 0 and num_tokens // 2 in _KNOWN_JOINT_COUNTS:
            m, v = 2, num_tokens // 2
        else:
            m, v = 1, num_tokens
            if num_tokens not in _KNOWN_JOINT_COUNTS:
                log.warning("%s: %d spatial tokens match no known layout; assuming 1 body of %d joints "
                            "(pass num_bodies / num_joints to override)", source, num_tokens, num_tokens)
    if m * v != num_tokens:
        raise ValueError(f"{source}: num_bodies {m} × num_joints {v} != {num_tokens} spatial tokens "
                         f"(shape of 'backbone.spe')")
    return int(m), int(v)


def _infer_config(kind: str, bb: Mapping[str, Tensor], overrides: Mapping[str, Any], source: str) -> dict:
    needed = ["spe", "ske_emb.t_embedding.0.weight", "ske_emb.s_embedding.0.weight", "tpe.pe"]
    absent = [f"backbone.{k}" for k in needed if k not in bb]
    if absent:
        raise CheckpointMismatchError(f"{source} (official {kind.upper()})", absent, [],
                                      other=["these keys are needed to infer the model size"])
    spe = bb["spe"]
    hidden, tokens = int(spe.shape[2]), int(spe.shape[1])
    t_in, s_in = int(bb["ske_emb.t_embedding.0.weight"].shape[1]), int(bb["ske_emb.s_embedding.0.weight"].shape[1])
    if t_in % tokens:
        raise ValueError(f"{source}: temporal token size {t_in} (t_embedding.0.weight) is not a multiple of "
                         f"the {tokens} spatial tokens (spe)")
    channels = overrides.get("in_channels", t_in // tokens)
    if s_in % channels:
        raise ValueError(f"{source}: spatial token size {s_in} (s_embedding.0.weight) is not a multiple of "
                         f"C = {channels}")
    frames = s_in // channels
    bodies, joints = _split_bodies(tokens, overrides, source)
    cfg: dict[str, Any] = dict(in_channels=channels, num_frames=frames, num_joints=joints, num_bodies=bodies,
                               hidden_size=hidden, max_len=int(bb["tpe.pe"].shape[1]))
    if kind == "dste":
        layers = sorted({int(m.group(1) or 0) for k in bb if (m := re.match(r"^t_tr(\d*)\.", k))})
        cfg["num_layers"] = len(layers)
        wt1 = bb.get("t_tr.DSA.wt1.weight")
        if wt1 is not None and int(wt1.shape[0]) != frames:
            raise ValueError(f"{source}: T from 't_tr.DSA.wt1' ({wt1.shape[0]}) disagrees with T·C / C = "
                             f"{s_in}/{channels} = {frames}")
        fc1 = bb.get("t_tr.CA.mlp.fc1.weight")
        if fc1 is not None:
            ratio = fc1.shape[0] / hidden
            cfg["mlp_ratio"] = float(ratio)
        conv = bb.get("t_tr.CA.conv1.weight")
        if conv is not None:
            cfg["kernel_size"] = int(conv.shape[-1])
    else:
        layers = sorted({int(m.group(1)) for k in bb if (m := re.match(r"^t_tr\.layers\.(\d+)\.", k))})
        cfg["num_layers"] = len(layers)
        lin1 = bb.get("t_tr.layers.0.linear1.weight")
        if lin1 is not None and int(lin1.shape[0]) != hidden:
            cfg["ffn_size"] = int(lin1.shape[0])
    cfg.update(overrides)
    return cfg


def load_official_state_dict(
    state_dict_or_path: Mapping[str, Any] | str | os.PathLike,
    *,
    map_location: Any = "cpu",
    weights_only: bool = True,
    **overrides: Any,
) -> ImportedEncoder:
    """Build the suite encoder matching an official USDRL checkpoint and load its backbone weights.

    Args:
        state_dict_or_path: a path to, or the loaded object of, an official pretraining checkpoint
            (``{"epoch", "state_dict", ...}`` with ``module.backbone.*`` / ``module.{i,s,t}_proj.*``) or a
            downstream state dict (``backbone.*``, ``fc.*``), or a bare state dict.
        map_location, weights_only: passed to ``torch.load`` when a path is given.
        **overrides: config fields the shapes cannot tell (``num_heads`` default 1, ``alpha`` 0.5, ``gap``
            4, ``drop_path`` 0.1, ``num_bodies`` / ``num_joints``, the paper-variant switches).

    Returns:
        :class:`ImportedEncoder` ``(encoder, extra)``: the encoder ("dste" or "sttr", detected from the
        keys) in ``eval()`` mode, and the remaining non-backbone tensors.

    Raises:
        CheckpointMismatchError: missing / unexpected backbone keys or shape mismatches (official names),
            or the two copies of a DSTE shared attention differ.
        ValueError: no backbone keys, an unrecognised layout, or inconsistent shapes.
    """
    source = str(state_dict_or_path) if isinstance(state_dict_or_path, (str, os.PathLike)) else "state dict"
    obj = state_dict_or_path
    if isinstance(obj, (str, os.PathLike)):
        obj = read_torch_file(obj, map_location, weights_only)
    sd = _unwrap_state_dict(obj, source)
    backbone = {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    extra = {k: v for k, v in sd.items() if not k.startswith("backbone.")}
    if not backbone:
        raise ValueError(f"{source}: no 'backbone.*' / 'module.backbone.*' keys; is this an official USDRL "
                         f"checkpoint? Keys: {', '.join(sorted(sd)[:8])}{', ...' if len(sd) > 8 else ''}")
    kind = _detect_kind(backbone, source)
    cfg = _infer_config(kind, backbone, overrides, source)
    encoder = create_encoder(kind, None, **cfg)
    what = f"{source} (official {kind.upper()}, inferred {type(encoder.config).__name__}{cfg})"

    key_map = official_key_map(encoder)
    wanted = {name for names in key_map.values() for name in names}
    model_state = encoder.state_dict()
    missing = sorted(f"backbone.{n}" for n in wanted - backbone.keys())
    unexpected = sorted(f"backbone.{n}" for n in backbone.keys() - wanted)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    differing: list[str] = []
    new_state: dict[str, Tensor] = {}
    for key, names in key_map.items():
        present = [n for n in names if n in backbone]
        if not present:
            continue
        for n in present:
            if tuple(backbone[n].shape) != tuple(model_state[key].shape):
                mismatched[f"backbone.{n}"] = (tuple(backbone[n].shape), tuple(model_state[key].shape))
        first = backbone[present[0]]
        for n in present[1:]:
            if backbone[n].shape == first.shape and not torch.equal(backbone[n], first):
                differing.append(f"backbone.{present[0]} != backbone.{n}")
        new_state[key] = first
    if missing or unexpected or mismatched or differing:
        other = [f"the shared attention's two copies differ: {', '.join(differing)}"] if differing else []
        raise CheckpointMismatchError(what, missing, unexpected, mismatched, other)
    encoder.load_state_dict(new_state, strict=True)
    encoder.eval()
    log.info("imported official %s from %s: %s; %d extra tensors (%s)", kind.upper(), source,
             encoder.config, len(extra), ", ".join(sorted({k.split(".")[0] for k in extra})) or "none")
    return ImportedEncoder(encoder, extra)


# --------------------------------------------------------------------------------------------------
# suite format
# --------------------------------------------------------------------------------------------------
def save_encoder(path: str | os.PathLike, encoder: nn.Module, **extra: Any) -> Path:
    """Write ``encoder`` in the suite format, atomically (temporary file in the same folder, then rename).

    The file holds ``{"format": "usdrl-bench/encoder-v1", "encoder": encoder.encoder_name, "config":
    dataclasses.asdict(encoder.config), "state_dict": encoder.state_dict(), **extra}``; keep ``extra`` to
    tensors and plain containers so that ``weights_only`` loading accepts it.

    Returns:
        The path written.

    Raises:
        ValueError: ``extra`` uses a reserved key, or the encoder lacks ``encoder_name`` / ``config``.
    """
    reserved = {"format", "encoder", "config", "state_dict"} & extra.keys()
    if reserved:
        raise ValueError(f"save_encoder: extra keys {sorted(reserved)} are reserved")
    name = getattr(encoder, "encoder_name", None)
    config = getattr(encoder, "config", None)
    if not name or config is None or not dataclasses.is_dataclass(config):
        raise ValueError(f"save_encoder: {type(encoder).__name__} has no encoder_name / dataclass config")
    payload = {"format": SUITE_FORMAT, "encoder": name, "config": dataclasses.asdict(config),
               "state_dict": {k: v.detach().cpu() for k, v in encoder.state_dict().items()}, **extra}
    path = torch_save_atomic(payload, path)
    log.info("saved %s encoder to %s", name, path)
    return path


def _is_official(obj: Any) -> bool:
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    return isinstance(sd, Mapping) and any(
        isinstance(k, str) and (k.startswith("module.backbone.") or k.startswith("backbone.")) for k in sd
    )


def load_encoder(path: str | os.PathLike, map_location: Any = "cpu", *, weights_only: bool = True,
                 **overrides: Any) -> nn.Module:
    """Load an encoder from a suite checkpoint (:func:`save_encoder`) or an official USDRL one.

    Args:
        path: the checkpoint file.
        map_location: passed to ``torch.load``.
        weights_only: passed to ``torch.load`` (set ``False`` only for files you trust).
        **overrides: config fields to change: for official files, what shapes cannot tell (see
            :func:`load_official_state_dict`); for suite files, non-shape fields (e.g. ``drop_path``).

    Returns:
        The encoder, in ``eval()`` mode.

    Raises:
        FileNotFoundError: no such file.
        CheckpointMismatchError: the weights do not fit the recorded / inferred config.
        ValueError: an unknown format, or a suite file of another format version.
    """
    return encoder_from_checkpoint(read_torch_file(path, map_location, weights_only), path, **overrides)


def is_suite_checkpoint(obj: Any) -> bool:
    """Whether a loaded checkpoint object is in the suite's format (:func:`save_encoder`)."""
    return isinstance(obj, Mapping) and "format" in obj


def encoder_from_checkpoint(obj: Any, path: str | os.PathLike, **overrides: Any) -> nn.Module:
    """:func:`load_encoder` on an already loaded checkpoint object (``path`` names it in errors)."""
    if is_suite_checkpoint(obj):
        if obj["format"] != SUITE_FORMAT:
            raise ValueError(f"{path}: checkpoint format {obj['format']!r} is not {SUITE_FORMAT!r}")
        config = {**obj["config"], **overrides}
        encoder = create_encoder(obj["encoder"], None, **config)
        model_state = encoder.state_dict()
        state = obj["state_dict"]
        missing = sorted(model_state.keys() - state.keys())
        unexpected = sorted(state.keys() - model_state.keys())
        mismatched = {k: (tuple(state[k].shape), tuple(v.shape)) for k, v in model_state.items()
                      if k in state and tuple(state[k].shape) != tuple(v.shape)}
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(f"{path} ({obj['encoder']}, {type(encoder.config).__name__})",
                                          missing, unexpected, mismatched)
        encoder.load_state_dict(state, strict=True)
        return encoder.eval()
    if _is_official(obj):
        return load_official_state_dict(obj, **overrides).encoder.eval()
    keys = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise ValueError(f"{path}: not a suite encoder checkpoint (no 'format' key) nor an official USDRL one "
                     f"(no 'module.backbone.' / 'backbone.' keys); found {keys}")
