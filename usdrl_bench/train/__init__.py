"""Pretraining: the schedule (:mod:`.spec`: ``PretrainSpec``, ``Provenance``), the loop (:mod:`.pretrain`:
data-parallel, resumable, no host synchronisation per step) and its live logs (:mod:`.logs`: per-step CSV,
TensorBoard, W&B). Cluster jobs are scheduled by :mod:`usdrl_bench.protocols.launch`."""
