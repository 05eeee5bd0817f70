"""Semi-supervised fine-tuning (Table 2): class-stratified subsets (every class, the right sizes, the same
indices for every method and run) and fine-tuning that learns without touching the cached encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from usdrl_bench.data.synthetic.generator import load_synthetic
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
                                                         milestones=[12], subset="stratified", repeats=1,
                                                         train_crop=[1.0, 1.0], test_crop=1.0)}
    assert set(metrics) == {"semi_top1_50pct", "semi_top1_100pct"}
    assert metrics["semi_top1_100pct"] > 60.0  # 3 classes: chance is 33 %
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())  # fine-tuned a copy
    assert subset_file(tmp_path, 0.5, 0).exists()


def test_cmd_defaults_random_subsets_repeats_and_crops(tmp_path):
    """CMD's recipe as the default: int(N * ratio) random samples (seeded, one subset per repeat, saved),
    the metric the mean of the repeats (each in the note), training on random crops of scale [0.5, 1]
    and testing on the centred 95 %."""
    from usdrl_bench.evaluate import semi
    from usdrl_bench.evaluate.semi import SemiOptions, random_subset

    index = random_subset(200, 0.1, seed=3)
    assert len(index) == 20 and len(set(index)) == 20 and list(index) == sorted(index)
    assert np.array_equal(index, random_subset(200, 0.1, seed=3)) and not np.array_equal(index, random_subset(200, 0.1, 4))
    assert len(random_subset(50, 0.01, 0)) == 1  # int(0.5) = 0: at least one

    train, test = load_synthetic(None, "xsub", num_classes=3, samples_per_class_subject_camera=2)
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny").eval()
    ctx = EvalContext(encoder=encoder, train=train, test=test, device=torch.device("cpu"), seed=0, subset_dir=tmp_path)
    calls = []
    real = semi.fine_tune

    def spy(ctx_, index_, **kw):
        calls.append((index_.copy(), kw))
        return float(len(calls))  # run r "scores" r + 1

    semi.fine_tune = spy
    try:
        (metric,) = semi_evaluation(ctx, ratios=[0.25], repeats=3, epochs=1)
    finally:
        semi.fine_tune = real
    assert [len(i) for i, _ in calls] == [int(len(train) * 0.25)] * 3
    assert len({tuple(i) for i, _ in calls}) == 3  # a new subset per run
    assert [kw["seed"] for _, kw in calls] == [0, 1, 2]
    assert all(kw["train_crop"] == (0.5, 1.0) and kw["test_crop"] == 0.95 for _, kw in calls)
    assert metric.value == 2.0 and "runs 1.0, 2.0, 3.0" in metric.note and "random subsets" in metric.note
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"random-ratio0.25-seed{s}.npy" for s in (0, 1, 2)]

    # the crops change what the model sees: training on crops differs from training on whole sequences
    index = np.arange(len(train))
    kw = dict(epochs=2, batch_size=16, lr=0.05, momentum=0.9, weight_decay=0.0, milestones=[], gamma=0.1)
    a = real(ctx, index, **kw, train_crop=(1.0, 1.0), test_crop=1.0)
    b = real(ctx, index, **kw, train_crop=(1.0, 1.0), test_crop=1.0)
    assert a == b  # deterministic
    seen = []
    real_crop = semi.random_crop_resize

    def crop_spy(x, nf, frames, keys, **k):
        seen.append(k)
        return real_crop(x, nf, frames, keys, **k)

    semi.random_crop_resize = crop_spy
    try:
        real(ctx, index, **kw, train_crop=(0.5, 1.0), test_crop=0.95)
    finally:
        semi.random_crop_resize = real_crop
    assert seen and all(k == {"min_scale": 0.5, "max_scale": 1.0} for k in seen)

    for bad, message in (({"subset": "balanced"}, "subset expected one of"), ({"repeats": 0}, "repeats"),
                         ({"ratios": [0.0]}, "ratios"), ({"train_crop": [0.8, 0.5]}, "train_crop"),
                         ({"test_crop": 0}, "test_crop"), ({"lr": -1}, "lr")):
        with pytest.raises(ValueError, match=message):
            SemiOptions(**bad)
