"""Self-supervised pretraining loop: batched views on the training device, resumable checkpoints.

Official setup (FACTS §7, ``pretrain.py``): Adam (lr 5e-4, weight decay 1e-5), batch 356, 451 epochs with
lr x0.1 from epoch 351, AMP, 4 views per sample. The schedule comes from :class:`PretrainSpec`.

Resuming: after every epoch the full training state (encoder, objective, optimiser, scheduler, random
generators, loss history) is written atomically to ``workdir/state.pt``; a later call with the same
``workdir`` continues from the last completed epoch and gives the same result as an uninterrupted run.
The finished encoder is written to ``workdir/encoder.pt`` (suite format) last, so its presence means
the run is complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.augment import make_views
from usdrl_bench.encoders.checkpoint import save_encoder
from usdrl_bench.io import torch_save_atomic, write_json_atomic
from usdrl_bench.protocols.spec import PretrainSpec
from usdrl_bench.skeleton import get_layout, to_stream

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
ENCODER_FILE = "encoder.pt"
HISTORY_FILE = "history.json"
OBJECTIVE_FILE = "objective.pt"

#: progress callback: (epochs done, total epochs, mean loss of the last epoch)
ProgressFn = Callable[[int, int, float], None]


@dataclass
class PretrainResult:
    checkpoint: Path
    history: list[dict]
    wall_time_s: float
    resumed_from_epoch: int


def batch_to_device(data: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Gather samples ``index`` of an ``(N, C, T, V, M)`` array (possibly memory-mapped) as a float32
    tensor on ``device``. Indices are read in ascending order (fast on memory maps)."""
    batch = np.asarray(data[np.sort(index)], dtype=np.float32)
    return torch.from_numpy(batch).to(device, non_blocking=True)


def _unique_trainable(*modules: nn.Module) -> list[nn.Parameter]:
    seen: set[int] = set()
    params = []
    for module in modules:
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


def pretrain(
    encoder: nn.Module,
    objective: nn.Module,
    train: SkeletonArrays,
    spec: PretrainSpec,
    *,
    workdir: Path,
    seed: int,
    device: torch.device,
    stream: str = "joint",
    on_epoch: ProgressFn | None = None,
    extra: dict | None = None,
) -> PretrainResult:
    """Pretrain ``encoder`` with ``objective`` on ``train`` (labels unused).

    Args:
        encoder: an encoder (``forward_features``; ``num_frames`` is the view length T).
        objective: ``forward(encoder, views) -> (loss, logs)``; owns its projectors.
        train: training samples ``(N, C, T_max, V, M)`` with valid frame counts.
        spec: schedule (epochs, batch size, optimiser, views).
        workdir: directory for the resumable state and the final checkpoint.
        seed: seeds the sample order and the augmentations.
        device: training device; views are made there.
        stream: ``joint``/``bone``/``motion``, derived from the augmented joints (as the official code).
        on_epoch: called after each epoch with (epochs done, total, mean loss).
        extra: stored with the final checkpoint (provenance).
    Returns:
        the final checkpoint path, per-epoch history and wall time of this call.
    Raises:
        ValueError: fewer than 2 training samples (batch statistics need 2).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    start_time = time.perf_counter()
    n = len(train)
    if n < 2:
        raise ValueError(f"pretraining needs at least 2 training samples, got {n}")
    batch_size = min(spec.batch_size, n)
    steps_per_epoch = max(1, n // batch_size)  # drop_last, as the official loader
    layout = get_layout(train.layout)

    encoder.to(device)
    objective.to(device)
    params = _unique_trainable(encoder, objective)
    optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(spec.milestones), gamma=spec.gamma)
    order_gen = torch.Generator().manual_seed(seed)
    view_gen = torch.Generator(device=device).manual_seed(seed + 1)
    use_amp = spec.amp and device.type == "cuda"

    history: list[dict] = []
    first_epoch = 0
    state_path = workdir / STATE_FILE
    # DropPath draws from the global generator: seed it here and keep its state in the resumable state
    torch.manual_seed(seed + 2)
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        encoder.load_state_dict(state["encoder"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        order_gen.set_state(state["order_gen"].cpu())  # RNG states are CPU byte tensors
        view_gen.set_state(state["view_gen"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
        history = state["history"]
        first_epoch = state["epoch"]
        log.info("resuming pretraining in %s from epoch %d/%d", workdir, first_epoch, spec.epochs)

    num_frames_all = torch.as_tensor(train.num_frames)
    view_options = dict(spec.views)
    # views per sample: the protocol's choice, else what the objective consumes (MG-FD: 4, InfoNCE: 2)
    num_views = int(view_options.pop("num_views", getattr(objective, "num_views", 4)))
    for epoch in range(first_epoch, spec.epochs):
        encoder.train()
        objective.train()
        perm = torch.randperm(n, generator=order_gen).numpy()
        losses, logs_sum = [], {}
        for step in range(steps_per_epoch):
            index = perm[step * batch_size:(step + 1) * batch_size]
            index = np.sort(index)
            x = batch_to_device(train.data, index, device)
            nf = num_frames_all[index].to(device)
            views = make_views(x, nf, num_views=num_views, out_frames=encoder.num_frames, generator=view_gen, **view_options)
            views = [to_stream(v, stream, layout) for v in views]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, logs = objective(encoder, views)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretraining loss is {loss.item()} at epoch {epoch} step {step} ({workdir})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0.0) + float(v)
        scheduler.step()
        record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": optimizer.param_groups[0]["lr"]}
        record.update({k: v / steps_per_epoch for k, v in logs_sum.items()})
        history.append(record)
        torch_save_atomic(
            {
                "epoch": epoch + 1,
                "encoder": encoder.state_dict(),
                "objective": objective.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "order_gen": order_gen.get_state(),
                "view_gen": view_gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "history": history,
            },
            state_path,
        )
        if on_epoch is not None:
            on_epoch(epoch + 1, spec.epochs, record["loss"])

    encoder.eval()
    write_json_atomic(workdir / HISTORY_FILE, history)
    checkpoint = save_encoder(workdir / ENCODER_FILE, encoder, epochs=spec.epochs, history=history, **(extra or {}))
    torch_save_atomic(objective.state_dict(), workdir / OBJECTIVE_FILE)  # projectors, for later analysis
    # the state file (optimiser moments included) is no longer needed once the encoder is final
    state_path.unlink(missing_ok=True)
    return PretrainResult(
        checkpoint=Path(checkpoint) if checkpoint else workdir / ENCODER_FILE,
        history=history,
        wall_time_s=time.perf_counter() - start_time,
        resumed_from_epoch=first_epoch,
    )
