"""Small I/O helpers: atomic writes, stable hashing, provenance."""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    A crash mid-write leaves the previous ``path`` (or nothing) in place, never a truncated file.

    Raises:
        OSError: ``errno.ENOSPC`` naming ``path`` and the free space when the disk (or quota) is full,
            whichever way the writer reports it (an ``OSError``, or PyTorch's ``RuntimeError`` from its
            zip writer); other errors as raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        write(Path(tmp))
        with open(tmp, "rb+") as f:  # on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        full = _disk_full(exc, path)
        if full is not None:
            raise full from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


#: below this many free bytes a failed write is taken for a full disk
_NEARLY_FULL = 64 << 20


def _disk_full(exc: BaseException, path: Path) -> OSError | None:
    """An ``OSError(ENOSPC)`` naming ``path`` (its ``filename``) when ``exc`` is (or, for a writer that
    hides the errno, looks like) a full disk or quota; else None."""
    folder = path.parent
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
    else:
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        if free >= _NEARLY_FULL:
            return None
        reason = "no space left on the device (the writer said: " + str(exc).splitlines()[0][:200] + ")"
    try:
        free_text = f"{shutil.disk_usage(folder).free / 2**20:.0f} MiB free"
    except OSError:
        free_text = "free space unknown"
    return OSError(errno.ENOSPC, f"{reason} while writing {path} ({free_text} in {folder}); free some space and "
                                 f"run again: completed work is kept", str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n")


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, lambda p: torch.save(obj, p))


def save_npy_atomic(path: str | Path, array: Any) -> Path:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), atomically."""
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def save_npz_atomic(path: str | Path, **arrays: Any) -> Path:
    """``np.savez`` to exactly ``path``, atomically."""
    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def stable_hash(obj: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``obj`` (sorted keys), truncated to ``length``."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


@functools.lru_cache(maxsize=None)
def git_revision() -> str:
    """The repository's ``git describe --always --dirty`` revision, or ``"unknown"`` outside a checkout."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU.

    Raises:
        ValueError: CUDA requested but unavailable.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


#: names that become path components (protocol, preset, row ids, dataset columns, video names): a letter or
#: digit first, then letters, digits, ``.``, ``_``, ``+``, ``-``; so no ``/``, no ``..``, no hidden files
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def is_safe_name(name: object) -> bool:
    """True when ``name`` can be one path component under a folder of ours (see :data:`SAFE_NAME`)."""
    return isinstance(name, str) and bool(SAFE_NAME.match(name)) and ".." not in name


def ensure_inside(path: str | Path, root: str | Path) -> Path:
    """``path`` if it resolves inside ``root``.

    Raises:
        ValueError: ``path`` would leave ``root`` (a name built from data or protocol text with ``..`` or ``/``).
    """
    resolved, base = Path(path).resolve(), Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise ValueError(f"refusing to write {path}: it is outside {root}")
    return Path(path)


def die_with_parent() -> bool:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``),
    so that worker processes do not outlive a main process killed with ``kill -9`` (they would otherwise
    go on training, then hang holding memory). Returns False where unsupported (no effect)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False

