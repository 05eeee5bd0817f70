"""Linear evaluation and kNN retrieval against hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from usdrl_bench.evaluate.features import valid_frame_counts
from usdrl_bench.evaluate.knn import knn_top1
from usdrl_bench.evaluate.linear import train_linear_probe


def test_knn_cosine_hand_computed():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([0, 1, 2])
    # cosine ignores the norm: (10, 1) is closest in angle to (1, 0); (-0.2, 1) to (0, 1); (-5, -1) to (-1, 0)
    queries = np.array([[10.0, 1.0], [-0.2, 1.0], [-5.0, -1.0], [0.1, -1.0]])
    truth = np.array([0, 1, 2, 1])  # the last one's nearest is (1,0) at 84° vs (-1,0) at 96°: predicted 0 -> wrong
    assert knn_top1(gallery, labels, queries, truth) == pytest.approx(75.0)
    with pytest.raises(ValueError, match="k must lie"):
        knn_top1(gallery, labels, queries, truth, k=4)


def test_linear_probe_separable_and_best_of_evals():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 3
    y = np.repeat(np.arange(3), 40)
    x = (centres[y] + rng.normal(size=(120, 8))).astype(np.float32)
    final, best, curve = train_linear_probe(x, y, x, y, 3, epochs=20, batch_size=32, lr=0.1, milestones=(15,), eval_every=5)
    assert final > 95.0
    assert [e for e, _ in curve] == [5, 10, 15, 20]
    assert best == max(v for _, v in curve) and best >= final


def test_linear_probe_random_labels_is_near_chance_on_test():
    rng = np.random.default_rng(1)
    xtr, xte = rng.normal(size=(200, 16)).astype(np.float32), rng.normal(size=(400, 16)).astype(np.float32)
    ytr, yte = rng.integers(0, 4, 200), rng.integers(0, 4, 400)
    final, _, _ = train_linear_probe(xtr, ytr, xte, yte, 4, epochs=10, batch_size=50, lr=0.05, milestones=())
    assert 10.0 < final < 40.0  # chance is 25 %


@pytest.mark.parametrize("momentum,weight_decay,milestones", [(0.9, 0.0, (3, 5)), (0.0, 1e-3, (4, 4)), (0.9, 1e-4, ())])
def test_linear_probe_makes_the_updates_of_torch_sgd_on_nn_linear(momentum, weight_decay, milestones):
    """The probe's hand-written gradients and SGD are nn.Linear + CrossEntropyLoss + torch.optim.SGD +
    MultiStepLR: the same classifier (the same init draws, order and schedule, a last batch of 7 included)."""
    import torch
    from torch import nn

    rng = np.random.default_rng(0)
    x = rng.standard_normal((71, 12)).astype(np.float32)
    y = rng.integers(0, 5, 71)
    final, _, _, probs, _ = train_linear_probe(x, y, x, y, 5, epochs=6, batch_size=16, lr=0.3, momentum=momentum,
                                               weight_decay=weight_decay, milestones=milestones, eval_every=2,
                                               return_probs=True)
    gen = torch.Generator().manual_seed(0)
    fc = nn.Linear(12, 5)
    with torch.no_grad():
        fc.weight.normal_(0.0, 0.01, generator=gen)
        fc.bias.zero_()
    opt = torch.optim.SGD(fc.parameters(), lr=0.3, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), 0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(6):
        perm = torch.randperm(71, generator=gen)
        for start in range(0, 71, 16):
            idx = perm[start:start + 16]
            loss = nn.functional.cross_entropy(fc(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with torch.no_grad():
        ref = torch.softmax(fc(xt), dim=1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    assert final == pytest.approx(float((ref.argmax(1) == y).mean() * 100))


def test_linear_probe_rejects_bad_labels():
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        train_linear_probe(x, np.array([0, 1, 2, 0]), x, np.array([0, 1, 1, 0]), 2, epochs=1)


def test_valid_frame_counts():
    x = np.zeros((3, 3, 10, 2, 1), np.float32)
    x[0, :, :7] = 1.0
    x[1, 0, 3, 1, 0] = 2.0  # a single non-zero frame at t=3 -> 4 valid frames
    assert valid_frame_counts(x).tolist() == [7, 4, 1]


def test_ensemble_hand_computed():
    from usdrl_bench.evaluate.ensemble import ensemble_top1, fuse_scores

    joint = np.array([[0.6, 0.4], [0.2, 0.8], [0.55, 0.45]])
    motion = np.array([[0.3, 0.7], [0.1, 0.9], [0.3, 0.7]])
    labels = np.array([0, 1, 0])
    # equal weights: sums [0.9, 1.1], [0.3, 1.7], [0.85, 1.15] -> predictions 1, 1, 1 -> 1 of 3 right
    assert np.allclose(fuse_scores([joint, motion]), [[0.9, 1.1], [0.3, 1.7], [0.85, 1.15]])
    assert ensemble_top1([joint, motion], labels) == pytest.approx(100 / 3)
    # joint weighted 3:1 -> [2.1, 1.9], [0.7, 3.3], [1.95, 2.05] -> 0, 1, 1 -> 2 of 3
    assert ensemble_top1([joint, motion], labels, weights=[3, 1]) == pytest.approx(200 / 3)
    assert ensemble_top1([joint], labels) == 100.0  # one stream: its own accuracy (0, 1, 0: all right)
    with pytest.raises(ValueError, match="weights"):
        fuse_scores([joint, motion], [1.0])
    with pytest.raises(ValueError, match="same"):
        fuse_scores([joint, motion[:2]])


def test_linear_probe_returns_test_probabilities():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    final, _, _, probs, _ = train_linear_probe(x, y, x, y, 2, epochs=30, batch_size=8, lr=0.5, milestones=(), return_probs=True)
    assert probs.shape == (40, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == y).mean() * 100 == pytest.approx(final)


def test_linear_train_crop_encodes_the_middle_of_each_training_sequence(tmp_path):
    """``linear: {train_crop: 0.5}`` (official PKU-MMD II): training features from the centred half of
    each valid sequence, cached under their own name; test features from the whole sequence."""
    import torch

    from usdrl_bench.data.synthetic.generator import load_synthetic
    from usdrl_bench.encoders import create_encoder
    from usdrl_bench.evaluate.features import EvalContext, extract
    from usdrl_bench.evaluate.linear import LinearOptions, linear_evaluation

    train, test = load_synthetic(None, "xsub", num_classes=3, samples_per_class_subject_camera=1)
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny").eval()
    ctx = EvalContext(encoder=encoder, train=train, test=test, device=torch.device("cpu"), seed=0, cache_dir=tmp_path)
    linear_evaluation(ctx, epochs=2, batch_size=8, lr=0.1, eval_every=1, train_crop=0.5)
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["test.npy", "train-crop0.5.npy"]
    cropped = np.load(tmp_path / "train-crop0.5.npy")
    expected = extract(encoder, train.data, train.num_frames, crop=0.5)
    assert np.allclose(cropped, expected, atol=1e-6)
    assert not np.allclose(cropped, extract(encoder, train.data, train.num_frames), atol=1e-3)
    with pytest.raises(ValueError, match=r"LinearOptions.train_crop must be <= 1.0, got 1.5"):
        LinearOptions(train_crop=1.5)
