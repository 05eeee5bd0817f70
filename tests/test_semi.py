"""Semi-supervised fine-tuning (Table 2): class-stratified subsets (every class, the right sizes, the same
indices for every method and run) and fine-tuning that learns without touching the cached encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usdrl_bench.data.synthetic import load_synthetic
from usdrl_bench.encoders import create_encoder
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.evaluate.semi import load_or_make_subset, semi_evaluation, stratified_subset, subset_file

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stratified_sizes_and_every_class():
    labels = np.repeat(np.arange(5), [100, 40, 7, 1, 250])
    for ratio, expected in ((0.01, [1, 1, 1, 1, 2]), (0.1, [10, 4, 1, 1, 25]), (1.0, [100, 40, 7, 1, 250])):
        index = stratified_subset(labels, ratio, seed=0)
        assert np.bincount(labels[index], minlength=5).tolist() == expected  # max(1, round(ratio * n_c))
        assert len(set(index)) == len(index) and list(index) == sorted(index)
    assert np.array_equal(stratified_subset(labels, 0.1, 3), stratified_subset(labels, 0.1, 3))
    assert not np.array_equal(stratified_subset(labels, 0.1, 3), stratified_subset(labels, 0.1, 4))
    with pytest.raises(ValueError, match="ratio"):
        stratified_subset(labels, 0.0, 0)


def test_subset_saved_once_and_reused(tmp_path):
    labels = np.repeat(np.arange(3), 20)
    first = load_or_make_subset(tmp_path, labels, 0.1, seed=1)
    path = subset_file(tmp_path, 0.1, 1)
    assert path.exists() and np.array_equal(np.load(path), first)
    # a later run (another method) reads the file: a doctored file is what it gets
    np.save(path, np.array([0, 20, 40]))
    assert load_or_make_subset(tmp_path, labels, 0.1, seed=1).tolist() == [0, 20, 40]
    np.save(path, np.array([0, 99]))
    with pytest.raises(ValueError, match="do not fit"):
        load_or_make_subset(tmp_path, labels, 0.1, seed=1)


def test_fine_tuning_learns_and_leaves_the_encoder(tmp_path):
    train, test = load_synthetic(None, "xsub", num_classes=3, samples_per_class_subject_camera=2)
    torch.manual_seed(0)
    encoder = create_encoder("sttr", "tiny").eval()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    ctx = EvalContext(encoder=encoder, train=train, test=test, device=torch.device("cpu"), seed=0, subset_dir=tmp_path)
    metrics = {m.name: m.value for m in semi_evaluation(ctx, ratios=[0.5, 1.0], epochs=15, batch_size=16, lr=0.05,
                                                         milestones=[12])}
    assert set(metrics) == {"semi_top1_50pct", "semi_top1_100pct"}
    assert metrics["semi_top1_100pct"] > 60.0  # 3 classes: chance is 33 %
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # fine-tuned a copy
    assert subset_file(tmp_path, 0.5, 0).exists()
