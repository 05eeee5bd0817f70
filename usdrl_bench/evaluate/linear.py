"""Linear evaluation: a linear classifier on frozen features (FACTS §6, official ``action_recognition.py``).

Official protocol: only ``fc`` (2H -> classes) is trained, initialised N(0, 0.01) with bias 0; the
backbone is frozen in ``eval()`` mode and the input is the whole valid sequence resized to T without
augmentation. SGD (momentum 0.9, weight decay 0), batch 512, 160 epochs with lr x0.1 at 120 and 140,
lr 0.006 (DSTE, NTU-60 xsub). Test top-1 is evaluated every 5 epochs and the official number is the
**best** of those evaluations (test-set model selection, FACTS §8 row 13).

Because the backbone is frozen and the input deterministic, the features are computed once and the
classifier is trained on them: mathematically the same optimisation as the official loop (which
re-encodes every batch every epoch), at a fraction of the cost.

Records: ``linear_top1`` = final-epoch test top-1 (the suite's headline number), and
``linear_top1_best_of_evals`` = the official number (best over evaluations every ``eval_every`` epochs).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from usdrl_bench.evaluate.base import Metric, SGDOptions, evaluation_with
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.io import save_npy_atomic
from usdrl_bench.ranges import Fraction, PositiveInt
from usdrl_bench.registry import EVALUATIONS

#: the final linear classifier's test softmax probabilities, written beside the records
PROBS_FILE = "test_probs.npy"
#: the test softmax probabilities at the best periodic evaluation (the official reported number's classifier)
BEST_PROBS_FILE = "test_probs_best.npy"

#: fc initialisation of the official downstream model: N(0, 0.01), bias 0
FC_INIT_STD = 0.01


def train_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    num_classes: int,
    *,
    epochs: int = 160,
    batch_size: int = 512,
    lr: float = 0.006,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    milestones: tuple[int, ...] = (120, 140),
    gamma: float = 0.1,
    eval_every: int = 5,
    seed: int = 0,
    device: torch.device | str = "cpu",
    return_probs: bool = False,
) -> tuple:
    """Train ``fc`` on features and evaluate test top-1.

    Args:
        train_x, test_x: ``(N, D)`` float32 features.
        train_y, test_y: ``(N,)`` int labels in ``[0, num_classes)``.
        epochs ... gamma: the SGD schedule (official defaults, FACTS §6).
        eval_every: test every this many epochs (and after the last).
        return_probs: also return the test softmax probabilities ``(N_test, classes)`` of the final
            classifier and of the classifier at the best periodic evaluation (what a score-level ensemble
            of streams fuses).
    Returns:
        (final-epoch top-1 %, best top-1 % over the periodic evaluations (the first of equal ones),
        [(epoch, top-1 %), ...]), and with ``return_probs`` the final and the best test probabilities as
        fourth and fifth elements.
    Raises:
        ValueError: shape mismatch or labels out of range.
    """
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D; got {train_x.shape} and {test_x.shape}")
    for what, y, x in (("train", train_y, train_x), ("test", test_y, test_x)):
        if len(y) != len(x):
            raise ValueError(f"{what}: {len(x)} features but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{what} labels must lie in [0, {num_classes}); got [{y.min()}, {y.max()}]")
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    weight = torch.empty(num_classes, train_x.shape[1])
    weight.normal_(0.0, FC_INIT_STD, generator=gen)
    weight = weight.to(device)
    bias = torch.zeros(num_classes, device=device)
    xtr = torch.as_tensor(train_x, dtype=torch.float32, device=device)
    ytr = torch.as_tensor(train_y, dtype=torch.long, device=device)
    xte = torch.as_tensor(test_x, dtype=torch.float32, device=device)
    yte = torch.as_tensor(test_y, dtype=torch.long, device=device)
    step = _SGD([weight, bias], lr=lr, momentum=momentum, weight_decay=weight_decay, milestones=milestones, gamma=gamma)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(bias, x, weight.T)

    def probabilities() -> np.ndarray:
        return torch.softmax(logits(xte), dim=1).cpu().numpy() if len(xte) else np.zeros((0, num_classes), np.float32)

    def top1() -> float:
        return float((logits(xte).argmax(1) == yte).float().mean() * 100) if len(yte) else float("nan")

    curve: list[tuple[int, float]] = []
    best_probs: np.ndarray | None = None
    n = len(xtr)
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=gen).to(device)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            x = xtr[idx]
            # the cross-entropy gradient, written out: d/dlogits of the batch mean is (softmax - onehot) / n
            grad = torch.softmax(logits(x), dim=1)
            grad[torch.arange(len(idx), device=device), ytr[idx]] -= 1.0
            grad /= len(idx)
            step([grad.T @ x, grad.sum(dim=0)])
        step.epoch_done()
        if epoch % eval_every == 0 or epoch == epochs:  # one host read per evaluation, not per step
            curve.append((epoch, top1()))
            periodic = [v for e, v in curve if e % eval_every == 0]
            if return_probs and epoch % eval_every == 0 and (len(periodic) == 1 or periodic[-1] > max(periodic[:-1])):
                best_probs = probabilities()
    final = curve[-1][1]
    best = max(v for e, v in curve if e % eval_every == 0) if any(e % eval_every == 0 for e, _ in curve) else final
    if return_probs:
        probs = probabilities()
        return final, best, curve, probs, (best_probs if best_probs is not None else probs)
    return final, best, curve


class _SGD:
    """``torch.optim.SGD`` (momentum, no dampening, not Nesterov, weight decay on every parameter) with
    ``MultiStepLR``, applied to gradients given by hand: the same updates, without autograd and the optimiser's
    per-step bookkeeping, which are most of a linear probe's time on a CPU (one step is two small matrix
    products). ``tests/test_evaluations.py`` checks it against ``nn.Linear`` + ``torch.optim.SGD``."""

    def __init__(self, params: list[torch.Tensor], *, lr: float, momentum: float, weight_decay: float,
                 milestones: tuple[int, ...], gamma: float) -> None:
        self.params, self.lr, self.momentum, self.weight_decay = params, lr, momentum, weight_decay
        self.milestones, self.gamma, self.epoch = collections.Counter(milestones), gamma, 0
        self.buffers: list[torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self, grads: list[torch.Tensor]) -> None:
        if self.weight_decay:
            grads = [g.add(p, alpha=self.weight_decay) for g, p in zip(grads, self.params)]
        if self.momentum:
            if self.buffers is None:
                self.buffers = [g.clone() for g in grads]
            else:
                for b, g in zip(self.buffers, grads):
                    b.mul_(self.momentum).add_(g)
            grads = self.buffers
        for p, g in zip(self.params, grads):
            p.add_(g, alpha=-self.lr)

    def epoch_done(self) -> None:
        """``MultiStepLR.step()``: the rate times ``gamma`` (per occurrence) at each milestone epoch."""
        self.epoch += 1
        self.lr *= self.gamma ** self.milestones[self.epoch]


def standardize(train_x: np.ndarray, test_x: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Both feature sets standardised with the training features' mean and (biased) variance, per dimension.

    The inference form of MAMP's probe head ``BatchNorm1d(D, affine=False, eps=1e-6)`` (``main_linprobe.py``;
    FACTS-peers §1.6): its running statistics converge to these. Simplified: MAMP trains through per-batch
    statistics; here the classifier sees the full-set standardisation from the first step."""
    mean = train_x.mean(axis=0, dtype=np.float64)
    std = np.sqrt(train_x.var(axis=0, dtype=np.float64) + eps)
    return ((train_x - mean) / std).astype(np.float32), ((test_x - mean) / std).astype(np.float32)


#: ``none``: the features as they are (USDRL, the ST-GCN family, CMD); ``batchnorm``: standardised (MAMP)
FEATURE_NORMS = ("none", "batchnorm")


@dataclass(frozen=True)
class LinearOptions(SGDOptions):
    """Options of linear evaluation (``linear``, ``linear_own``): the probe's SGD schedule (official defaults,
    :class:`~usdrl_bench.evaluate.base.SGDOptions`), and

    Attributes:
        eval_every: test the probe every this many epochs (the official best-of-evaluations number).
        train_crop: the training features encode the centred fraction ``train_crop`` of each valid sequence
            (the test features always the whole of it). The official PKU-MMD II setting is 0.5: its
            ``l_ratio = [0.5, 1.0]`` takes the deterministic centre-crop branch of ``crop_subsequence``
            (``feeder/augmentations.py``; FACTS §6), not a random crop.
        feature_norm: ``none``, or ``batchnorm``: the features standardised first (:func:`standardize`:
            MAMP's probe).

    Raises:
        ValueError: a value out of range (checked when a protocol is loaded, before any training).
    """

    eval_every: PositiveInt = 5
    train_crop: Fraction = 1.0
    feature_norm: Literal["none", "batchnorm"] = "none"


@EVALUATIONS.register("linear", description="linear evaluation: fc on frozen 2H features, test top-1 (FACTS §6)",
                      check=LinearOptions)
@evaluation_with(LinearOptions)
def linear_evaluation(ctx: EvalContext, options: LinearOptions) -> list[Metric]:
    """Linear evaluation with the official defaults (DSTE, NTU-60 xsub; :class:`LinearOptions`). The final
    classifier's test softmax probabilities are written beside the records (``test_probs.npy``, and
    ``test_probs_best.npy`` of the best periodic evaluation), for score-level ensembles."""
    final, best, probs, best_probs = _probe(ctx, options)
    if ctx.artifact_dir is not None:
        save_npy_atomic(Path(ctx.artifact_dir) / BEST_PROBS_FILE, best_probs.astype(np.float32))
        ctx.artifacts["linear"] = save_npy_atomic(Path(ctx.artifact_dir) / PROBS_FILE, probs.astype(np.float32))
    return [
        Metric("linear_top1", final, note="final epoch"),
        Metric("linear_top1_best_of_evals", best,
               note=f"official: best test top-1 over evaluations every {options.eval_every} epochs (test-set selection)"),
    ]


def _probe(ctx: EvalContext, options: LinearOptions):
    """(final top-1, best top-1, final and best test probabilities) of the probe on the context's features."""
    train_x, test_x = ctx.features("train", crop=options.train_crop), ctx.features("test")
    if options.feature_norm == "batchnorm":
        train_x, test_x = standardize(train_x, test_x)
    final, best, _, probs, best_probs = train_linear_probe(
        train_x, ctx.labels("train"), test_x, ctx.labels("test"), ctx.num_classes, **options.sgd,
        eval_every=options.eval_every, seed=ctx.seed, device=ctx.device, return_probs=True,
    )
    return final, best, probs, best_probs


@EVALUATIONS.register("linear_own", description="linear evaluation with the method's own published probe recipe "
                      "(its preset's evaluations.linear_own)", check=LinearOptions)
@evaluation_with(LinearOptions)
def linear_own_evaluation(ctx: EvalContext, options: LinearOptions) -> list[Metric]:
    """The linear probe of :func:`linear_evaluation` run with a method's own recipe (a method preset's
    ``evaluations: {linear_own: {...}}``: MAMP's standardised features and lr 0.1, the ST-GCN family's lr
    3.0, CMD's lr 0.1 with steps at 50 and 70), beside the suite's common recipe (``linear``) in the same
    table, so the two can be told apart. Records ``linear_own_top1`` (final epoch) and
    ``linear_own_top1_best_of_evals``; writes no probabilities (ensembles fuse ``linear``'s)."""
    final, best, _, _ = _probe(ctx, options)
    return [
        Metric("linear_own_top1", final, note="method's own probe recipe, final epoch"),
        Metric("linear_own_top1_best_of_evals", best,
               note=f"method's own probe recipe, best test top-1 over evaluations every {options.eval_every} epochs"),
    ]
