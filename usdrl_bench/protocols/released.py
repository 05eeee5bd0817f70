"""Released weights as protocol rows: ``{id: MAMP-released, method: mamp, checkpoint: PATH}`` evaluates an existing
checkpoint instead of pretraining one.

The file is read as the row's method's official code saves it (``method:`` names the format; its official
arguments, where the file does not hold them, go in ``checkpoint_args``), or, without a method, as a suite
checkpoint or an official USDRL one. The row is keyed by the file's content (SHA-256), not its name, so a changed
file is evaluated again and a copy elsewhere is not; it runs every evaluation of the protocol, and its records
say ``released weights``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from usdrl_bench.methods.official import load_weights

__all__ = ["RELEASED", "resolve_checkpoint", "file_sha256", "load_released"]

#: what the records say of a released-weights row (the ``objective`` column; the label is suffixed with it)
RELEASED = "released weights"


def resolve_checkpoint(path: str, protocol_file: str) -> Path:
    """``path`` with ``~`` expanded, relative to the protocol file's folder when not absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (Path(protocol_file).resolve().parent / p)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoised per path, modification time and size)."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _load(path: str, sha256: str, method: str | None, args: str) -> nn.Module:
    return load_weights(path, method, **json.loads(args)).eval()


def load_released(path: str | Path, method: str | None, checkpoint_args: dict[str, Any]) -> nn.Module:
    """The encoder of a released-weights row, a fresh copy each call (evaluations that fine-tune change it).

    Raises:
        ValueError: as :func:`usdrl_bench.methods.official.load_weights` (also FileNotFoundError,
            CheckpointMismatchError, TypeError).
    """
    encoder = _load(str(path), file_sha256(path), method, json.dumps(checkpoint_args, sort_keys=True))
    return copy.deepcopy(encoder)
