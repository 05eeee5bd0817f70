"""kNN retrieval on frozen features (FACTS §6, official ``action_retrieval.py``).

The 2H features are L2-normalised; scikit-learn's ``KNeighborsClassifier`` with cosine distance and
k = 1 is fitted on the training split (the gallery) and scored on the test split (the queries).
"""

from __future__ import annotations

import numpy as np

from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.ranges import PositiveInt
from usdrl_bench.registry import EVALUATIONS


def knn_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, k: int = 1) -> float:
    """Top-1 accuracy (%) of a k-nearest-neighbour classifier with cosine distance.

    Args:
        train_x, test_x: ``(N, D)`` features (gallery, queries).
        train_y, test_y: ``(N,)`` labels.
        k: neighbours (official: 1).
    Raises:
        ValueError: ``k`` larger than the gallery.
    """
    if k < 1 or k > len(train_x):
        raise ValueError(f"k must lie in [1, {len(train_x)}] (gallery size); got {k}")
    # deferred: scikit-learn (and SciPy under it) cost a second at every start of the command line
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import normalize

    clf = KNeighborsClassifier(n_neighbors=k, metric="cosine")
    clf.fit(normalize(train_x), train_y)
    return float((clf.predict(normalize(test_x)) == test_y).mean() * 100)


@EVALUATIONS.register("knn", description="kNN retrieval: cosine k-NN (k=1) on frozen 2H features, test top-1")
def knn_evaluation(ctx: EvalContext, *, k: PositiveInt = 1) -> list[Metric]:
    """kNN-k retrieval; the metric is named ``knn{k}_top1`` (``knn1_top1`` in the paper's tables)."""
    value = knn_top1(ctx.features("train"), ctx.labels("train"), ctx.features("test"), ctx.labels("test"), k=k)
    return [Metric(f"knn{k}_top1", value)]
