"""Early action prediction: the official truncation, features of the observed part only, the evaluation's
modes, and the protocol with its curve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from usdrl_bench.cli import main
from usdrl_bench.data.augment import observed_frames
from usdrl_bench.data.synthetic.generator import load_synthetic
from usdrl_bench.encoders import create_encoder
from usdrl_bench.evaluate.features import EvalContext, extract

pytestmark = pytest.mark.usefixtures("one_thread")


def test_observed_frames_is_the_official_truncation():
    n = np.array([100, 10, 2, 50, 29])
    assert observed_frames(n, 0.1).tolist() == [10, 3, 2, 5, 3]  # max(3, floor(r n)), at most n
    assert observed_frames(n, 0.25).tolist() == [25, 3, 2, 12, 7]
    assert observed_frames(n, 1.0).tolist() == n.tolist()
    assert observed_frames(torch.tensor(n), 0.25).tolist() == [25, 3, 2, 12, 7]
    with pytest.raises(ValueError, match=r"observed ratio must be in \(0, 1\]"):
        observed_frames(n, 0.0)


def test_features_of_the_observed_part_ignore_later_frames():
    train, _ = load_synthetic(None, "xsub", num_classes=3, samples_per_class_subject_camera=1)
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny").eval()
    data = np.array(train.data[:6])
    nf = np.asarray(train.num_frames[:6])
    a = extract(encoder, data, nf, observe=0.3)
    later = data.copy()
    kept = observed_frames(np.minimum(nf, data.shape[2]), 0.3)
    for i, k in enumerate(kept):
        later[i, :, k:] += 5.0  # change everything after the observed part
    np.testing.assert_allclose(extract(encoder, later, nf, observe=0.3), a, atol=1e-6)
    assert not np.allclose(extract(encoder, later, nf), extract(encoder, data, nf), atol=1e-3)


def test_early_evaluation_modes_and_truncation(tmp_path, monkeypatch):
    from usdrl_bench.evaluate import early

    train, test = load_synthetic(None, "xsub", num_classes=3, samples_per_class_subject_camera=1)
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny").eval()
    ctx = EvalContext(encoder=encoder, train=train, test=test, device=torch.device("cpu"), seed=0, cache_dir=tmp_path)
    metrics = early.early_prediction(ctx, ratios=[0.2, 1.0], truncate="test", epochs=3, batch_size=16, lr=0.5,
                                     milestones=[], eval_every=1)
    assert [m.name for m in metrics] == ["early_top1@20", "early_top1@100"]
    assert all(0 <= m.value <= 100 for m in metrics) and "first 0.2 of each test sequence" in metrics[0].note
    # truncate: test trains on whole sequences: only the test features are truncated
    assert sorted(p.name for p in tmp_path.glob("*.npy")) == ["test-observe0.2.npy", "test.npy", "train.npy"]
    early.early_prediction(ctx, ratios=[0.2], truncate="both", epochs=1, batch_size=16, milestones=[])
    assert (tmp_path / "train-observe0.2.npy").exists()
    calls = []
    monkeypatch.setattr(early, "fine_tune", lambda ctx_, index, **kw: calls.append((len(index), kw["observe"])) or 50.0)
    (m,) = early.early_prediction(ctx, ratios=[0.3], mode="finetune", truncate="both", epochs=1)
    assert calls == [(len(train), (0.3, 0.3))] and m.value == 50.0 and "fine-tuned" in m.note
    with pytest.raises(ValueError, match="differ in whole percent"):
        early.EarlyOptions(ratios=[0.101, 0.1])
    with pytest.raises(ValueError, match="truncate expected one of .both., .test., got .train."):
        early.EarlyOptions(truncate="train")


PROTOCOL = """\
name: early_tiny
version: 1
paper_table: J-early
rows:
  - {id: D, label: "DSTE MG-FD", encoder: dste, objective: mgfd}
  - {id: Dc, label: "DSTE MG-FD causal", encoder: dste, objective: mgfd, encoder_options: {causal_temporal: true}}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {num_classes: 4, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      early: {ratios: [0.2, 0.5, 1.0], epochs: 5, batch_size: 32, lr: 1.0, milestones: [], eval_every: 1}
"""


@pytest.mark.slow
def test_early_protocol_records_and_curve(tmp_path):
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(reports),
                 "--device", "cpu", "--jobs", "1"]) == 0
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {(r["row_id"], r["metric"]) for r in rows} == {(row, f"early_top1@{p}") for row in ("D", "Dc")
                                                          for p in (20, 50, 100)}
    ckpts = {r["row_id"]: r["checkpoint_hash"] for r in rows}
    assert ckpts["D"] != ckpts["Dc"]  # the causal encoder is another model
    config = json.loads((results / "checkpoints" / ckpts["Dc"] / "config.json").read_text())
    assert json.dumps(config).count('"causal_temporal": true') >= 1
    md = (reports / "early_tiny__demo.md").read_text()
    assert "| Row   | Method" in md and "20 %" in md and "100 %" in md
    assert (reports / "early_tiny__demo__early.png").stat().st_size > 0
