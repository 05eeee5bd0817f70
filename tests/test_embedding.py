"""Figure 5's embedding evaluation: class choice from a seed, silhouette scores against hand-computed
values, the coordinates written for the report, and the panel figure."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from usdrl_bench.evaluate.embedding import EMBEDDING_FILE, choose_classes, embedding_evaluation, select_samples
from usdrl_bench.evaluate.features import EvalContext


def _ctx(features: np.ndarray, labels: np.ndarray, tmp_path=None, names=None) -> EvalContext:
    split = SimpleNamespace(labels=labels, num_classes=int(labels.max()) + 1, class_names=names)
    ctx = EvalContext(encoder=None, train=split, test=split, device="cpu", seed=0,  # type: ignore[arg-type]
                      artifact_dir=tmp_path)
    ctx._cache["test"] = features
    return ctx


def test_choose_and_select():
    labels = np.array([0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0])
    a = choose_classes(labels, 3, seed=5)
    assert len(a) == 3 and list(a) == sorted(a) and set(a) <= set(range(5))
    assert np.array_equal(a, choose_classes(labels, 3, seed=5))  # the same seed: the same classes
    assert any(not np.array_equal(a, choose_classes(labels, 3, seed=s)) for s in range(6, 12))
    assert list(choose_classes(labels, 9, seed=0)) == [0, 1, 2, 3, 4]  # fewer classes than asked: all
    assert list(select_samples(labels, np.array([0, 3]), max_per_class=2)) == [0, 3, 5, 8]


def test_feature_silhouette_by_hand(tmp_path):
    # cosine distances: within a class 1 - 0.6 = 0.4; to the other class 2 and 1.6 (mean 1.8)
    # -> every point has s = (1.8 - 0.4) / 1.8 = 7/9
    x = np.array([[1.0, 0.0], [0.6, 0.8], [-1.0, 0.0], [-0.6, -0.8]], dtype=np.float32)
    y = np.array([0, 0, 1, 1])
    metrics = {m.name: m.value for m in embedding_evaluation(_ctx(x, y, tmp_path), num_classes=2, methods=["tsne"])}
    assert metrics["silhouette_features"] == pytest.approx(7 / 9)
    assert -1.0 <= metrics["silhouette_tsne"] <= 1.0


@pytest.mark.slow
def test_embedding_writes_coordinates_and_separates_clusters(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16)) * 10
    y = np.repeat(np.arange(4), 20)
    x = (centres[y] + rng.normal(size=(80, 16))).astype(np.float32)
    ctx = _ctx(x, y, tmp_path, names=["a", "b", "c", "d"])
    metrics = {m.name: m.value for m in embedding_evaluation(ctx, num_classes=3, class_seed=1, max_per_class=15,
                                                             perplexity=10, n_neighbors=10)}
    assert set(metrics) == {"silhouette_features", "silhouette_tsne", "silhouette_umap"}
    assert metrics["silhouette_tsne"] > 0.5 and metrics["silhouette_umap"] > 0.5  # well separated clusters
    with np.load(tmp_path / EMBEDDING_FILE) as z:
        classes = z["classes"]
        assert len(classes) == 3 and z["tsne"].shape == z["umap"].shape == (45, 2)
        assert set(z["labels"]) == set(classes) and list(z["class_names"]) == [["a", "b", "c", "d"][c] for c in classes]
    assert ctx.artifacts["embedding"] == tmp_path / EMBEDDING_FILE


def test_embedding_rejects_bad_options(tmp_path):
    x, y = np.zeros((6, 2), dtype=np.float32), np.array([0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="num_classes"):
        embedding_evaluation(_ctx(x, y, tmp_path), num_classes=1)
    with pytest.raises(ValueError, match="unknown embedding method"):
        embedding_evaluation(_ctx(np.eye(6, dtype=np.float32), y, tmp_path), num_classes=3, methods=["pca"])
