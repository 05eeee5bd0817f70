"""Pretraining: the loop (:mod:`.pretrain`: data-parallel, resumable, no host synchronisation per step), its
live logs (:mod:`.logs`: per-step CSV, TensorBoard, W&B) and cluster jobs (:mod:`.launch`: submitit)."""
