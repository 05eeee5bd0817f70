"""Semi-supervised fine-tuning (paper Table 2): the whole encoder and a new ``fc`` trained on 1 % or 10 %
of the labelled training set, test top-1 on the whole test split.

The paper does not publish its fine-tuning recipe and the official code has none (FACTS §6). The recipe
here is CMD's (``CMD:action_classification_cmd_semi.py``, ``script_action_classification_cmd_semi.sh``,
``feeder/feeder_downstream_semi_supervised.py``), and its behaviour is the default:

- SGD (momentum 0.9, weight decay 0), lr 0.01, batch 64, 80 epochs with lr x0.1 at 50 and 70, the whole
  encoder trained;
- ``subset: random``: ``int(N · ratio)`` training samples drawn at random (CMD's ``random_select_data``;
  seeded here, ``subset_seed + repeat``), which can miss classes at 1 %; ``subset: stratified`` draws
  ``max(1, round(ratio · n_c))`` samples of every class c instead;
- ``repeats: 5``: CMD's scripts run each ratio 5 times (a new subset each time) and the number is their
  mean; the record keeps each run's top-1 in its note;
- crops: training on a random crop of scale U[0.5, 1] of each valid sequence (at least T frames, as
  CMD's ``crop_subsequence`` with ``l_ratio [0.5, 1.0]`` and minimum length 64 = its input size), testing
  on the centred 95 % (``l_ratio [0.95]``), both resized to the encoder's T; ``train_crop: [1, 1]`` and
  ``test_crop: 1`` give the whole valid sequence (the linear protocol's input).

Subsets are saved as index files shared by every method and run on the same data, so all are compared on
the same samples. Reports say that this recipe is an assumption.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import torch
from torch import nn

from usdrl_bench.data.augment import SampleKeys, centre_crop_resize, observed_frames, random_crop_resize
from usdrl_bench.evaluate.base import Metric, SGDOptions, evaluation_with
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.evaluate.linear import FC_INIT_STD
from usdrl_bench.io import save_npy_atomic
from usdrl_bench.ranges import Fraction, MinLen, NonNegativeInt, PositiveFloat, PositiveInt
from usdrl_bench.registry import EVALUATIONS
from usdrl_bench.skeleton import get_layout, to_stream

#: said wherever a semi-supervised number is shown
RECIPE_NOTE = "fine-tuning recipe of CMD (SGD 0.01, batch 64, 80 epochs, x0.1 at 50/70); the paper gives none"

#: how a labelled subset is drawn
SUBSET_MODES = ("random", "stratified")


def random_subset(num_samples: int, ratio: float, seed: int) -> np.ndarray:
    """CMD's subset (``random_select_data``): ``int(num_samples · ratio)`` indices (at least 1) drawn
    without replacement with ``numpy.random.default_rng(seed)``, sorted.

    Raises:
        ValueError: ``ratio`` outside (0, 1].
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"subset ratio must lie in (0, 1], got {ratio}")
    k = max(1, int(num_samples * ratio))
    return np.sort(np.random.default_rng(seed).permutation(num_samples)[:k]).astype(np.int64)


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


def subset_file(directory: Path, ratio: float, seed: int, mode: str = "stratified") -> Path:
    prefix = "" if mode == "stratified" else f"{mode}-"
    return Path(directory) / f"{prefix}ratio{ratio:g}-seed{seed}.npy"


def make_subset(labels: np.ndarray, ratio: float, seed: int, mode: str = "stratified") -> np.ndarray:
    """:func:`stratified_subset` or :func:`random_subset` by ``mode``.

    Raises:
        ValueError: unknown mode, ``ratio`` outside (0, 1].
    """
    if mode == "stratified":
        return stratified_subset(labels, ratio, seed)
    if mode == "random":
        return random_subset(len(labels), ratio, seed)
    raise ValueError(f"subset must be one of {', '.join(SUBSET_MODES)}; got {mode!r}")


def load_or_make_subset(directory: Path | None, labels: np.ndarray, ratio: float, seed: int,
                        mode: str = "stratified") -> np.ndarray:
    """The saved subset of ``directory`` for (mode, ratio, seed), made and saved on first use; without a
    directory, made afresh (the same indices: the draw is seeded).

    Raises:
        ValueError: a saved subset that does not fit ``labels`` (index out of range).
    """
    if directory is None:
        return make_subset(labels, ratio, seed, mode)
    path = subset_file(directory, ratio, seed, mode)
    if path.exists():
        index = np.load(path)
        if len(index) and (index.min() < 0 or index.max() >= len(labels)):
            raise ValueError(f"{path}: indices do not fit a training split of {len(labels)} samples")
        return index
    index = make_subset(labels, ratio, seed, mode)
    save_npy_atomic(path, index)
    return index


def _batches(ctx: EvalContext, which: str, index: np.ndarray, device: torch.device, frames: int,
             crop: float | tuple[float, float], keys: SampleKeys | None = None, observe: float = 1.0) -> torch.Tensor:
    """Samples ``index`` (sorted) of a split as the encoder's input: the first ``observe`` of each valid
    sequence (early prediction, :func:`~usdrl_bench.data.augment.observed_frames`), then a random crop of
    scale in ``crop`` (a pair, drawn from ``keys``) or the centred fraction ``crop`` (a number), resized to
    ``frames``."""
    arrays = ctx.train if which == "train" else ctx.test
    x = torch.from_numpy(np.asarray(arrays.data[index], dtype=np.float32)).to(device)
    counts = np.minimum(arrays.num_frames[index], arrays.data.shape[2])
    nf = torch.from_numpy(observed_frames(counts, observe) if observe != 1 else counts).to(device)
    if isinstance(crop, (tuple, list)):
        if keys is None:
            raise ValueError("a random crop needs SampleKeys")
        x = random_crop_resize(x, nf, frames, keys, min_scale=crop[0], max_scale=crop[1])
    else:
        x = centre_crop_resize(x, nf, float(crop), frames)
    return to_stream(x, ctx.stream, get_layout(arrays.layout)) if ctx.stream != "joint" else x


def fine_tune(ctx: EvalContext, index: np.ndarray, *, epochs: int, batch_size: int, lr: float, momentum: float,
              weight_decay: float, milestones: Sequence[int], gamma: float, eval_batch_size: int = 256,
              train_crop: Sequence[float] = (1.0, 1.0), test_crop: float = 1.0, seed: int | None = None,
              observe: tuple[float, float] = (1.0, 1.0)) -> float:
    """Fine-tune a copy of ``ctx.encoder`` with a new ``fc`` (N(0, 0.01) init) on the training samples
    ``index``; return the final test top-1 (%). The cached encoder is left untouched.

    ``train_crop``: scale range of the random training crop (``[1, 1]``: the whole valid sequence);
    ``test_crop``: centred fraction of each test sequence; ``seed``: of the order, crops, fc and DropPath
    (default ``ctx.seed``); ``observe``: (train, test) observed ratios (early prediction; 1 = all frames)."""
    seed = ctx.seed if seed is None else seed
    device = torch.device(ctx.device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # DropPath while fine-tuning
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
    whole = tuple(train_crop) == (1.0, 1.0)
    for epoch in range(epochs):
        model.train()
        perm = index[torch.randperm(len(index), generator=gen).numpy()]
        for start in range(0, len(perm), batch_size):
            idx = np.sort(perm[start:start + batch_size])
            keys = SampleKeys(seed, epoch, torch.from_numpy(idx))
            x = _batches(ctx, "train", idx, device, frames, 1.0 if whole else tuple(train_crop), keys, observe[0])
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
            pred = model(_batches(ctx, "test", idx, device, frames, test_crop, observe=observe[1])).argmax(1).cpu().numpy()
            correct += int((pred == test_y[idx]).sum())
    return 100.0 * correct / max(len(test_y), 1)


@dataclass(frozen=True)
class FineTuneOptions(SGDOptions):
    """Options of fine-tuning the whole encoder (``finetune``, and each run of ``semi``): the SGD schedule,
    CMD's by default (batch 64, lr 0.01, 80 epochs, x0.1 at 50 and 70; module docstring), and

    Attributes:
        train_crop: ``[min_scale, max_scale]`` of the random training crop (``[1, 1]``: the whole sequence).
        test_crop: the centred fraction of each test sequence.

    Raises:
        ValueError: a value out of range (checked when a protocol is loaded, before any training).
    """

    epochs: PositiveInt = 80
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 0.01
    milestones: tuple[PositiveInt, ...] = (50, 70)
    train_crop: tuple[Fraction, Fraction] = (0.5, 1.0)
    test_crop: Fraction = 0.95

    def __post_init__(self) -> None:
        object.__setattr__(self, "train_crop", tuple(self.train_crop))  # YAML gives a list
        super().__post_init__()
        if self.train_crop[0] > self.train_crop[1]:
            raise ValueError(f"train_crop must be [min_scale, max_scale] with min <= max, got {list(self.train_crop)}")


@dataclass(frozen=True)
class SemiOptions(FineTuneOptions):
    """Options of semi-supervised evaluation: :class:`FineTuneOptions` for each run, and

    Attributes:
        ratios: the labelled fractions (metrics ``semi_top1_<p>pct``).
        subset_seed: run ``r`` fine-tunes on the subset drawn with seed ``subset_seed + r``.
        subset: ``random`` (CMD's) or ``stratified`` (:data:`SUBSET_MODES`).
        repeats: runs per fraction (their mean is the metric).

    Raises:
        ValueError: a value out of range (checked when a protocol is loaded, before any training).
    """

    ratios: Annotated[tuple[Fraction, ...], MinLen(1)] = (0.01, 0.1)
    subset_seed: NonNegativeInt = 0
    subset: Literal["random", "stratified"] = "random"
    repeats: PositiveInt = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(self.ratios))  # YAML gives a list
        super().__post_init__()


@EVALUATIONS.register("semi", description="semi-supervised fine-tuning on 1% / 10% labelled subsets (Table 2; CMD's recipe)",
                      check=SemiOptions)
@evaluation_with(SemiOptions)
def semi_evaluation(ctx: EvalContext, options: SemiOptions) -> list[Metric]:
    """Fine-tune on each labelled fraction in ``ratios``; metrics ``semi_top1_<p>pct`` (``semi_top1_1pct``,
    ``semi_top1_10pct``): the mean test top-1 of ``repeats`` runs, run ``r`` on the subset drawn with seed
    ``subset_seed + r`` (not the cell's seed, so every method and seed fine-tunes on the same samples;
    saved in ``ctx.subset_dir``) and trained with seed ``ctx.seed + r``. Defaults: CMD's (module docstring)."""
    metrics = []
    o = options
    for ratio in o.ratios:
        runs, sizes = [], []
        for r in range(o.repeats):
            index = load_or_make_subset(ctx.subset_dir, ctx.labels("train"), ratio, o.subset_seed + r, o.subset)
            sizes.append(len(index))
            runs.append(fine_tune(ctx, index, **o.sgd, train_crop=o.train_crop, test_crop=o.test_crop, seed=ctx.seed + r))
        spread = f"; runs {', '.join(f'{v:.1f}' for v in runs)} (std {np.std(runs):.1f})" if o.repeats > 1 else ""
        size = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
        metrics.append(Metric(
            f"semi_top1_{ratio * 100:g}pct", float(np.mean(runs)),
            note=f"mean of {o.repeats} run(s) on {o.subset} subsets of {size} labelled samples (subset seeds "
                 f"{o.subset_seed}..{o.subset_seed + o.repeats - 1}){spread}; crops: train scale {list(o.train_crop)}, "
                 f"test centre {o.test_crop}; {RECIPE_NOTE}"))
    return metrics


@EVALUATIONS.register("finetune", description="fine-tuning of the whole encoder with all labels (transfer; CMD's recipe)",
                      check=FineTuneOptions)
@evaluation_with(FineTuneOptions)
def finetune_evaluation(ctx: EvalContext, options: FineTuneOptions) -> list[Metric]:
    """The whole encoder and a new ``fc`` trained on every training sample; metric ``finetune_top1`` (final
    test top-1, %). The recipe is :func:`fine_tune`'s, CMD's by default (module docstring); the journal's
    transfer fine-tuning recipe is not published."""
    top1 = fine_tune(ctx, np.arange(len(ctx.labels("train"))), **options.sgd, train_crop=options.train_crop,
                     test_crop=options.test_crop)
    return [Metric("finetune_top1", top1, note=f"whole encoder fine-tuned on all {len(ctx.labels('train'))} training "
                                               f"samples, final epoch; crops: train scale {list(options.train_crop)}, "
                                               f"test centre {options.test_crop}; {RECIPE_NOTE}")]
