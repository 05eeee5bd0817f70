"""Evaluations of a frozen or fine-tuned encoder, each registered by name for protocols: ``linear``,
``linear_own`` (:mod:`.linear`), ``knn`` (:mod:`.knn`), ``semi``, ``finetune`` (:mod:`.semi`), ``early``
(:mod:`.early`), ``embedding`` (:mod:`.embedding`); the features they share (:mod:`.features`), score-level
ensembles (:mod:`.ensemble`), and what they return and take (:mod:`.base`: ``Metric``, the typed SGD
options)."""

# a package imports its own members: each module registers its evaluations when imported
from usdrl_bench.evaluate import early, embedding, knn, linear, semi  # noqa: F401, E402
