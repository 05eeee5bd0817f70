"""Live pretraining logs: a per-step CSV beside the checkpoint, TensorBoard events, Weights & Biases.

The CSV (``train_log.csv``) has a header, then one row per optimisation step::

    epoch,step,global_step,loss,<term>...,lr,samples_per_s,max_memory_mb,time

``samples_per_s`` is measured over the block of steps read together (the loop reads device values every
``log_every`` steps, so each step of a block gets the block's rate); ``max_memory_mb`` is the peak device
memory allocated so far (CUDA; empty on CPU); ``time`` is seconds since the epoch (UNIX time). Rows are
appended and flushed as they are read, so ``tail -f`` and TensorBoard follow a run while it trains. On
resume, rows of epochs after the last completed one (a run stopped mid-epoch) are dropped first, so the
file describes exactly the steps that led to the checkpoint.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["StepLogger", "read_step_log"]


def read_step_log(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a ``train_log.csv`` as dictionaries (strings, as csv reads them)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class StepLogger:
    """Writes per-step rows to a CSV and, when available, TensorBoard and Weights & Biases.

    Args:
        path: the CSV file.
        resume_epoch: epochs already completed (rows of later epochs are dropped from an existing file).
        resume_step: steps already done in the next epoch (its rows up to them are kept).
        tensorboard_dir: where TensorBoard event files go (None: no TensorBoard; skipped with a debug
            message when the ``tensorboard`` package is missing).
        wandb_project: a Weights & Biases project (None: no W&B).
        wandb_name: the W&B run name.
        device: the training device (CUDA: peak memory is logged).
    Raises:
        ImportError: ``wandb_project`` given but ``wandb`` is not installed.
    """

    def __init__(self, path: Path, *, resume_epoch: int = 0, resume_step: int = 0, tensorboard_dir: Path | None = None,
                 wandb_project: str | None = None, wandb_name: str | None = None,
                 device: torch.device | None = None) -> None:
        self.path = Path(path)
        self.device = device
        self.fields: list[str] | None = None
        kept: list[dict[str, str]] = []
        if self.path.exists():
            try:
                kept = [r for r in read_step_log(self.path) if int(r.get("epoch") or 0) <= resume_epoch
                        or (int(r.get("epoch") or 0) == resume_epoch + 1 and int(r.get("step") or 0) < resume_step)]
            except (OSError, ValueError, csv.Error) as exc:
                log.warning("cannot read %s (%s); starting a new log", self.path, exc)
                kept = []
        self._file = None
        self._writer = None
        if kept:
            self.fields = list(kept[0])
            self._open(truncate=True)
            for row in kept:
                self._writer.writerow(row)  # type: ignore[union-attr]
            self._file.flush()  # type: ignore[union-attr]
        elif self.path.exists():
            self.path.unlink()
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # deferred: optional (needs tensorboard)

                self.tb = SummaryWriter(str(tensorboard_dir))
            except ImportError:
                log.debug("tensorboard is not installed: no event files (pip install 'usdrl-bench[tensorboard]')")
        self.wandb = None
        if wandb_project:
            try:
                import wandb  # deferred: optional dependency (pip install usdrl-bench[wandb])
            except ImportError as exc:
                raise ImportError("--wandb needs the wandb package: pip install wandb") from exc
            self.wandb = wandb.init(project=wandb_project, name=wandb_name, resume="allow", id=wandb_name)

    def _open(self, truncate: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w" if truncate else "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.fields)  # type: ignore[arg-type]
        if truncate:
            self._writer.writeheader()

    def log(self, epoch: int, rows: list[tuple[int, dict[str, float]]], steps_per_epoch: int, *, lr: float,
            samples_per_s: float) -> None:
        """Write the rows of a block of steps of ``epoch`` (1-based): ``(step, {"loss": ..., term: ...})``."""
        memory = ""
        if self.device is not None and self.device.type == "cuda":
            memory = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        now = round(time.time(), 3)
        for step, values in rows:
            row: dict[str, Any] = {"epoch": epoch, "step": step, "global_step": (epoch - 1) * steps_per_epoch + step}
            row.update({k: f"{v:.6g}" for k, v in values.items()})
            row.update(lr=f"{lr:.6g}", samples_per_s=f"{samples_per_s:.2f}", max_memory_mb=memory, time=now)
            if self.fields is None:
                self.fields = list(row)
                self._open(truncate=True)
            elif self._writer is None:
                self._open(truncate=False)
            self._writer.writerow({k: row.get(k, "") for k in self.fields})  # type: ignore[union-attr]
            g = row["global_step"]
            if self.tb is not None:
                for k, v in values.items():
                    self.tb.add_scalar(f"pretrain/{k}", v, g)
                self.tb.add_scalar("pretrain/lr", lr, g)
                self.tb.add_scalar("pretrain/samples_per_s", samples_per_s, g)
                if memory != "":
                    self.tb.add_scalar("pretrain/max_memory_mb", memory, g)
            if self.wandb is not None:
                self.wandb.log({**{f"pretrain/{k}": v for k, v in values.items()}, "pretrain/lr": lr,
                                "pretrain/samples_per_s": samples_per_s, "epoch": epoch}, step=g)
        self._file.flush()  # type: ignore[union-attr]

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
