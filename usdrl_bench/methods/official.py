"""Official checkpoints of any registered method, both ways: read what a method's official code saved, and write
suite-trained weights the way that code saves them.

A method says how its official files look with an :class:`~usdrl_bench.methods.OfficialFormat` (USDRL's is the
importer of :mod:`usdrl_bench.encoders.checkpoint`; the peers' live with their plug-ins under ``baselines/``).
Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, plus the classes the
format allow-lists (MAMP's ``argparse.Namespace``); nothing in a file runs code.

The helpers :func:`load_renamed` and :func:`renamed_state` are the building blocks a plug-in's format uses: a
suite module's state from an official state dict under a renaming, with every missing, unexpected or mis-shaped
key named, and the reverse.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from torch import Tensor, nn

from usdrl_bench.encoders.checkpoint import (CheckpointMismatchError, encoder_from_checkpoint, is_suite_checkpoint,
                                             load_encoder, read_torch_file)
from usdrl_bench.io import torch_save_atomic
from usdrl_bench.methods.base import NON_SHAPING_ARGS, Method, OfficialModel, get_method
from usdrl_bench.methods.shipped import load_shipped_baselines
from usdrl_bench.registry import METHODS

__all__ = ["read_checkpoint", "official_method", "load_official", "load_weights", "export_official", "load_renamed",
           "renamed_state", "strip_module_prefix", "shaping_args"]


def read_checkpoint(path: str | os.PathLike, safe_globals: Iterable[type] = ()) -> Any:
    """:func:`~usdrl_bench.encoders.checkpoint.read_torch_file` with ``weights_only`` and ``safe_globals``; a file
    torch cannot read at all is a ValueError too.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds another object type (named), or is not a torch file.
    """
    try:
        return read_torch_file(path, "cpu", True, tuple(safe_globals))
    except (FileNotFoundError, ValueError):
        raise
    except Exception as exc:  # a truncated or foreign file: torch's RuntimeError / UnpicklingError
        raise ValueError(f"{path}: not a readable torch checkpoint ({exc})") from exc


def official_method(name: str) -> Method:
    """The method ``name`` (the built-ins and the shipped baselines loaded), which must have an official format.

    Raises:
        KeyError: no such method.
        ValueError: the method registers no official format.
    """
    load_shipped_baselines()  # USDRL registers with this package; the peers with theirs
    method = get_method(name)
    if method.official_format is None:
        raise ValueError(f"method {name!r} registers no official checkpoint format (OfficialFormat); methods "
                         f"that do: {', '.join(official_methods()) or 'none'}")
    return method


def official_methods() -> list[str]:
    """Names of the registered methods that have an official format."""
    return sorted(n for n in METHODS.names() if METHODS.get(n).official_format is not None)


def shaping_args(official_args: Mapping[str, Any], known: Iterable[str], method: str) -> dict[str, Any]:
    """The official arguments a loader uses: those in ``known``, with :data:`NON_SHAPING_ARGS` dropped.

    Raises:
        TypeError: an argument neither known nor non-shaping (naming the accepted ones).
    """
    known = set(known)
    unknown = sorted(set(official_args) - known - NON_SHAPING_ARGS)
    if unknown:
        raise TypeError(f"{method}: unknown official argument(s) {unknown}; accepted: {sorted(known)} "
                        f"(ignored: {sorted(NON_SHAPING_ARGS)})")
    return {k: v for k, v in official_args.items() if k in known}


def load_official(path: str | os.PathLike, method: str, **official_args: Any) -> OfficialModel:
    """Read a checkpoint as ``method``'s official code saved it.

    Args:
        path: the official file.
        method: a registered method with an official format (``skeletonclr``, ``aimclr``, ``mamp``, ``cmd``,
            ``usdrl``).
        **official_args: the official linear-evaluation constructor's own arguments where the file does not
            hold the configuration (``hidden_channels``, ``graph_args`` for ST-GCN; ``args_bi_gru`` for CMD;
            ``num_heads`` for MAMP); ``num_class``, ``dropout``, ``pretrain``, ``protocol`` are ignored.
    Returns:
        :class:`~usdrl_bench.methods.OfficialModel`: the encoder (eval mode), the objective when the file is a
        pretraining checkpoint, and notes on what was inferred.
    Raises:
        FileNotFoundError: no such file.
        ValueError: not this method's file, or objects ``weights_only`` refuses.
        CheckpointMismatchError: keys or shapes that do not fit.
        TypeError: an unknown official argument.
    """
    fmt = official_method(method).official_format
    return _official_from(read_checkpoint(path, fmt.safe_globals), path, method, official_args)


def _official_from(obj: Any, path: str | os.PathLike, method: str, official_args: Mapping[str, Any]) -> OfficialModel:
    """The method's format applied to a loaded object; its errors name the file and the method."""
    fmt = official_method(method).official_format
    try:
        model = fmt.load(obj, official_args)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(f"{path} (method {method}): {exc.what}", exc.missing, exc.unexpected,
                                      exc.mismatched, exc.other) from exc
    except (ValueError, KeyError) as exc:  # a plain error of the format: named with the file
        raise ValueError(f"{path} (method {method}): {exc.args[0] if exc.args else exc}") from exc
    model.encoder.eval()
    return model


def load_weights(path: str | os.PathLike, method: str | None = None, **overrides: Any) -> nn.Module:
    """An encoder from any file the suite reads: a suite checkpoint or an official USDRL one (``method`` None), or
    a file in ``method``'s official format (a suite checkpoint is still read as such, and must hold the method's
    encoder). What ``usdrl_bench.load_encoder`` and a protocol's released-weights rows use.

    Raises:
        ValueError: as :func:`load_official` and :func:`usdrl_bench.encoders.checkpoint.load_encoder` (also
            FileNotFoundError, CheckpointMismatchError, TypeError), and for a suite checkpoint of another method's
            encoder.
    """
    if method is None:
        return load_encoder(path, **overrides)
    found = official_method(method)
    obj = read_checkpoint(path, found.official_format.safe_globals)  # read once, whatever its format
    if is_suite_checkpoint(obj):
        encoder = encoder_from_checkpoint(obj, path, **overrides)
        if getattr(encoder, "encoder_name", None) != found.encoder:
            raise ValueError(f"{path}: a suite checkpoint of encoder {encoder.encoder_name!r}, not {method}'s "
                             f"{found.encoder!r}")
        return encoder
    return _official_from(obj, path, method, overrides).encoder


def export_official(encoder: nn.Module, objective_state: Mapping[str, Tensor] | None, method: str,
                    path: str | os.PathLike) -> Path:
    """Write ``encoder`` (and the objective's state, where the official file holds it) as ``method``'s official
    code saves a checkpoint, atomically.

    Returns:
        The path written.
    Raises:
        ValueError: the method has no official format, or its format needs the objective's state and none was
            given.
    """
    fmt = official_method(method).official_format
    return torch_save_atomic(fmt.export(encoder, objective_state), path)


def strip_module_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors of ``state`` with a leading ``module.`` (DataParallel / DDP) removed from every key."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items() if isinstance(v, Tensor)}


def load_renamed(module: nn.Module, state: Mapping[str, Tensor], rename: Callable[[str], str], *, what: str,
                 transform: Mapping[str, Callable[[Tensor], Tensor]] | None = None) -> set[str]:
    """Load ``module``'s whole state from ``state`` (official names): each suite key ``k`` from
    ``state[rename(k)]`` (``transform[k]`` applied first where given, e.g. a transposed queue).

    Returns:
        The official keys used.
    Raises:
        CheckpointMismatchError: official keys missing, or shapes that differ (all named at once).
    """
    own = module.state_dict()
    transform = transform or {}
    new, missing, mismatched, used = {}, [], {}, set()
    for key, value in own.items():
        name = rename(key)
        if name not in state:
            missing.append(name)
            continue
        tensor = transform[key](state[name]) if key in transform else state[name]
        if tuple(tensor.shape) != tuple(value.shape):
            mismatched[name] = (tuple(tensor.shape), tuple(value.shape))
            continue
        new[key] = tensor.to(value.dtype)
        used.add(name)
    if missing or mismatched:
        raise CheckpointMismatchError(what, missing, [], mismatched)
    module.load_state_dict(new, strict=True)
    return used


def renamed_state(state: Mapping[str, Tensor], rename: Callable[[str], str], prefix: str = "",
                  transform: Mapping[str, Callable[[Tensor], Tensor]] | None = None) -> dict[str, Tensor]:
    """``{prefix + rename(k): v}`` for a suite state dict (the inverse direction of :func:`load_renamed`)."""
    transform = transform or {}
    return {prefix + rename(k): (transform[k](v) if k in transform else v).detach().cpu().clone()
            for k, v in state.items()}
