"""Score-level ensembles of streams (paper Table 1, "3s-USDRL": joint + motion + bone).

Neither the paper nor the official code says how 3s-USDRL fuses its streams (FACTS §6, [UNVERIFIED]);
the common practice (CTR-GCN's ``ensemble.py``) is a weighted sum of the streams' per-class scores
followed by argmax. Here the scores are the linear classifiers' test softmax probabilities and the
weights default to equal. The report says that the fusion rule is an assumption.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: said wherever an ensemble number is shown
FUSION_NOTE = ("weighted sum of the streams' linear-classifier softmax scores, then argmax; the paper does "
               "not give its fusion rule")


def fuse_scores(scores: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted sum of per-stream scores.

    Args:
        scores: one ``(N, classes)`` array per stream, rows in the same sample order.
        weights: one per stream (default: all 1).
    Returns:
        ``(N, classes)`` fused scores.
    Raises:
        ValueError: no stream, shapes that differ, or a weight count that does not match.
    """
    if not scores:
        raise ValueError("an ensemble needs at least one stream")
    shapes = {np.shape(s) for s in scores}
    if len(shapes) != 1:
        raise ValueError(f"every stream's scores must have the same (N, classes) shape; got {sorted(shapes)}")
    w = np.ones(len(scores)) if weights is None or len(weights) == 0 else np.asarray(weights, dtype=np.float64)
    if len(w) != len(scores):
        raise ValueError(f"{len(scores)} streams but {len(w)} weights")
    return sum(wi * np.asarray(s, dtype=np.float64) for wi, s in zip(w, scores))


def ensemble_top1(scores: Sequence[np.ndarray], labels: np.ndarray, weights: Sequence[float] | None = None) -> float:
    """Top-1 accuracy (%) of the argmax of :func:`fuse_scores`. Ties go to the lowest class index."""
    fused = fuse_scores(scores, weights)
    labels = np.asarray(labels)
    if len(labels) != len(fused):
        raise ValueError(f"{len(fused)} fused scores but {len(labels)} labels")
    return float((fused.argmax(axis=1) == labels).mean() * 100)
