"""Semi-supervised fine-tuning (paper Table 2): the whole encoder and a new ``fc`` trained on 1 % or 10 %
of the labelled training set, test top-1 on the whole test split.

The paper does not publish its fine-tuning recipe and the official code has none (FACTS §6). The defaults
here are CMD's (``CMD:script_*_semi.sh``): SGD (momentum 0.9, weight decay 0), lr 0.01, batch 64, 80 epochs
with lr x0.1 at 50 and 70, the whole encoder trained, no augmentation (the downstream input of FACTS §6:
the valid sequence resized to the encoder's T). Reports say that this recipe is an assumption.

Subsets differ from CMD's in one respect the issue asks for: they are **class-stratified** (CMD draws at
random, which can miss classes at 1 %): ``max(1, round(ratio * n_c))`` samples of every class c, drawn
from a seed and saved as an index file, so every method and every run is compared on the same samples.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from usdrl_bench.data.augment import resize_valid
from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.evaluate.linear import FC_INIT_STD
from usdrl_bench.io import save_npy_atomic
from usdrl_bench.registry import EVALUATIONS
from usdrl_bench.skeleton import get_layout, to_stream

#: said wherever a semi-supervised number is shown
RECIPE_NOTE = "fine-tuning recipe of CMD (SGD 0.01, batch 64, 80 epochs, x0.1 at 50/70); the paper gives none"


def stratified_subset(labels: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """Indices of a class-stratified subset: ``max(1, round(ratio * n_c))`` samples of every class c
    present in ``labels``, drawn without replacement with ``numpy.random.default_rng(seed)``, sorted.

    Raises:
        ValueError: ``ratio`` outside (0, 1].
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"subset ratio must lie in (0, 1], got {ratio}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, int(round(ratio * len(members))))
        picked.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64)


def subset_file(directory: Path, ratio: float, seed: int) -> Path:
    return Path(directory) / f"ratio{ratio:g}-seed{seed}.npy"


def load_or_make_subset(directory: Path | None, labels: np.ndarray, ratio: float, seed: int) -> np.ndarray:
    """The saved subset of ``directory`` for (ratio, seed), made and saved on first use; without a
    directory, made afresh (the same indices: the draw is seeded).

    Raises:
        ValueError: a saved subset that does not fit ``labels`` (index out of range).
    """
    if directory is None:
        return stratified_subset(labels, ratio, seed)
    path = subset_file(directory, ratio, seed)
    if path.exists():
        index = np.load(path)
        if len(index) and (index.min() < 0 or index.max() >= len(labels)):
            raise ValueError(f"{path}: indices do not fit a training split of {len(labels)} samples")
        return index
    index = stratified_subset(labels, ratio, seed)
    save_npy_atomic(path, index)
    return index


def _batches(ctx: EvalContext, which: str, index: np.ndarray, device: torch.device, frames: int) -> torch.Tensor:
    arrays = ctx.train if which == "train" else ctx.test
    order = np.sort(index)
    x = torch.from_numpy(np.asarray(arrays.data[order], dtype=np.float32)).to(device)
    nf = torch.from_numpy(np.minimum(arrays.num_frames[order], arrays.data.shape[2])).to(device)
    x = resize_valid(x, nf, frames)
    return to_stream(x, ctx.stream, get_layout(arrays.layout)) if ctx.stream != "joint" else x


def fine_tune(ctx: EvalContext, index: np.ndarray, *, epochs: int, batch_size: int, lr: float, momentum: float,
              weight_decay: float, milestones: Sequence[int], gamma: float, eval_batch_size: int = 256) -> float:
    """Fine-tune a copy of ``ctx.encoder`` with a new ``fc`` (N(0, 0.01) init) on the training samples
    ``index``; return the final test top-1 (%). The cached encoder is left untouched."""
    device = torch.device(ctx.device)
    gen = torch.Generator().manual_seed(ctx.seed)
    torch.manual_seed(ctx.seed)  # DropPath while fine-tuning
    encoder = copy.deepcopy(ctx.encoder).to(device)
    fc = nn.Linear(encoder.embed_dim, ctx.num_classes)
    with torch.no_grad():
        fc.weight.normal_(0.0, FC_INIT_STD, generator=gen)
        fc.bias.zero_()
    fc.to(device)
    model = nn.Sequential(encoder, fc)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    labels = torch.as_tensor(ctx.labels("train"), dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()
    frames = encoder.num_frames
    for _ in range(epochs):
        model.train()
        perm = index[torch.randperm(len(index), generator=gen).numpy()]
        for start in range(0, len(perm), batch_size):
            idx = np.sort(perm[start:start + batch_size])
            x = _batches(ctx, "train", idx, device, frames)
            loss = loss_fn(model(x), labels[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    model.eval()
    test_y = ctx.labels("test")
    correct = 0
    with torch.no_grad():
        for start in range(0, len(test_y), eval_batch_size):
            idx = np.arange(start, min(start + eval_batch_size, len(test_y)))
            pred = model(_batches(ctx, "test", idx, device, frames)).argmax(1).cpu().numpy()
            correct += int((pred == test_y[idx]).sum())
    return 100.0 * correct / max(len(test_y), 1)


@EVALUATIONS.register("semi", description="semi-supervised fine-tuning on class-stratified 1% / 10% subsets (Table 2)")
def semi_evaluation(
    ctx: EvalContext,
    *,
    ratios: list[float] | tuple[float, ...] = (0.01, 0.1),
    subset_seed: int = 0,
    epochs: int = 80,
    batch_size: int = 64,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    milestones: list[int] | tuple[int, ...] = (50, 70),
    gamma: float = 0.1,
) -> list[Metric]:
    """Fine-tune on each labelled fraction in ``ratios``; metrics ``semi_top1_<p>pct`` (``semi_top1_1pct``,
    ``semi_top1_10pct``). Subsets are drawn with ``subset_seed`` (not the cell's seed, so every method and
    seed fine-tunes on the same samples) and saved in ``ctx.subset_dir``."""
    metrics = []
    for ratio in ratios:
        index = load_or_make_subset(ctx.subset_dir, ctx.labels("train"), ratio, subset_seed)
        top1 = fine_tune(ctx, index, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, milestones=milestones, gamma=gamma)
        metrics.append(Metric(f"semi_top1_{ratio * 100:g}pct", top1,
                              note=f"{len(index)} labelled samples (class-stratified, seed {subset_seed}); {RECIPE_NOTE}"))
    return metrics
