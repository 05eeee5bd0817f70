"""2-D embeddings of frozen instance features (paper Figure 5): t-SNE and UMAP, with silhouette scores.

Figure 5 of the paper shows t-SNE plots of the instance-level features of nine classes for four variants
(negative contrastive, MG-FD without XC, single-grained FD with XC, MG-FD with XC). The paper gives no
number behind the figure; here every panel gets the silhouette score of its points (scikit-learn,
Euclidean in the 2-D embedding) and the features themselves get one too (cosine, the geometry kNN
retrieval uses), so variants can be compared without reading dots.

The classes are drawn from a seed (the same seed gives the same classes for every variant), the points
are the test split's samples of those classes (at most ``max_per_class`` each, the first ones in order),
and the 2-D coordinates are written beside the records for the report to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.io import save_npz_atomic
from usdrl_bench.ranges import Ge, MinLen, NonNegativeInt, PositiveFloat, PositiveInt
from usdrl_bench.registry import EVALUATIONS

Method = Literal["tsne", "umap"]

#: what ``embedding`` writes beside the records
EMBEDDING_FILE = "embedding.npz"


def choose_classes(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """``num_classes`` distinct labels present in ``labels``, drawn without replacement from ``seed``,
    sorted. All labels when there are no more than ``num_classes``."""
    present = np.unique(labels)
    if len(present) <= num_classes:
        return present
    return np.sort(np.random.default_rng(seed).choice(present, size=num_classes, replace=False))


def select_samples(labels: np.ndarray, classes: np.ndarray, max_per_class: int) -> np.ndarray:
    """Indices of the first ``max_per_class`` samples of each class in ``classes``, in ascending order."""
    keep = [np.flatnonzero(labels == c)[:max_per_class] for c in classes]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def embed_2d(features: np.ndarray, method: Method, *, seed: int = 0, perplexity: float = 30.0,
             n_neighbors: int = 15) -> np.ndarray:
    """``(N, D)`` features -> ``(N, 2)`` coordinates with scikit-learn's t-SNE or umap-learn's UMAP.

    t-SNE: PCA initialisation, ``perplexity`` capped below N. UMAP: ``n_neighbors`` capped below N.
    Both are seeded with ``seed``.

    Raises:
        ValueError: unknown method or fewer than 3 points.
    """
    n = len(features)
    if n < 3:
        raise ValueError(f"a 2-D embedding needs at least 3 points, got {n}")
    x = np.asarray(features, dtype=np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE  # deferred: scikit-learn costs a second at every start

        return TSNE(n_components=2, perplexity=min(perplexity, (n - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    if method == "umap":
        import umap  # deferred: umap-learn (numba) takes seconds to import; only UMAP figures need it

        reducer = umap.UMAP(n_components=2, n_neighbors=min(n_neighbors, n - 1), random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(x))
    raise ValueError(f"unknown embedding method {method!r}; choose 'tsne' or 'umap'")


@EVALUATIONS.register("embedding", description="t-SNE / UMAP of test features for classes drawn from a seed, with silhouette scores (Fig. 5)")
def embedding_evaluation(
    ctx: EvalContext,
    *,
    num_classes: Annotated[int, Ge(2)] = 9,
    class_seed: NonNegativeInt = 0,
    max_per_class: PositiveInt = 60,
    methods: Annotated[tuple[Method, ...], MinLen(1)] = ("tsne", "umap"),
    perplexity: PositiveFloat = 30.0,
    n_neighbors: Annotated[int, Ge(2)] = 15,
) -> list[Metric]:
    """Figure 5: 2-D embeddings of the test split's instance features of ``num_classes`` classes.

    Records ``silhouette_features`` (cosine, on the 2H features) and ``silhouette_<method>`` for each
    method (in [-1, 1], higher = tighter, better separated classes), and writes the coordinates, labels and
    class names to ``embedding.npz`` in the evaluation's artifact directory.

    Raises:
        ValueError: ``num_classes`` < 2, an unknown method, or a test split whose selected samples are one per
            class (or of one class): silhouette scores are then undefined.
    """
    if num_classes < 2:
        raise ValueError(f"embedding: num_classes must be >= 2, got {num_classes}")
    labels = ctx.labels("test")
    classes = choose_classes(labels, num_classes, class_seed)
    index = select_samples(labels, classes, max_per_class)
    features, y = ctx.features("test")[index], labels[index]
    if not 2 <= len(np.unique(y)) < len(y):  # scikit-learn's own message names neither the data nor the way out
        raise ValueError(f"embedding: silhouette scores need 2 to n - 1 classes among the n selected test samples; the "
                         f"test split ({ctx.test.source}) gives {len(y)} sample(s) of {len(np.unique(y))} class(es): "
                         "it has too few samples per class for this evaluation")
    from sklearn.metrics import silhouette_score  # deferred: scikit-learn costs a second at every start

    metrics = [Metric("silhouette_features", float(silhouette_score(features, y, metric="cosine")),
                      note=f"cosine, {len(classes)} classes drawn with seed {class_seed}")]
    arrays: dict[str, np.ndarray] = {"labels": y, "classes": classes, "index": index}
    names = ctx.test.class_names or [str(c) for c in range(ctx.num_classes)]
    arrays["class_names"] = np.array([names[c] for c in classes])
    for method in methods:
        coords = embed_2d(features, method, seed=ctx.seed, perplexity=perplexity, n_neighbors=n_neighbors)
        arrays[method] = coords.astype(np.float32)
        metrics.append(Metric(f"silhouette_{method}", float(silhouette_score(coords, y)), note="Euclidean, in 2-D"))
    if ctx.artifact_dir is not None:
        path = Path(ctx.artifact_dir) / EMBEDDING_FILE
        save_npz_atomic(path, **arrays)
        ctx.artifacts["embedding"] = path
    return metrics
