"""Methods in the contract: registration, method rows and their per-preset settings, the optimisers and the
per-iteration cosine schedule (resume included), the method probe recipe, the pretraining cost, and the
leaderboard's statistics against values computed by hand."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import baselines.mamp  # noqa: F401 - registers mamp
import baselines.skeletonclr  # noqa: F401 - registers skeletonclr, aimclr
from usdrl_bench import register_method
from usdrl_bench.data.synthetic.generator import generate_synthetic
from usdrl_bench.encoders import create_encoder
from usdrl_bench.evaluate.linear import standardize
from usdrl_bench.protocols.schema import ProtocolError
from usdrl_bench.protocols.spec import expand_cells, load_protocol
from usdrl_bench.data.augment import ViewOptions
from usdrl_bench.train.spec import PretrainSpec
from usdrl_bench.report.leaderboard import holm, paired_p_value, ranking
from usdrl_bench.train.pretrain import PretrainTarget, STATE_FILE, TrainingOptions, build_optimizer, cosine_factor, pretrain, pretraining_flops

from baselines.mamp import MAMP
from baselines.skeletonclr import SkeletonCLR

PROTOCOL = """
name: methods_test
version: 1
plugins: [baselines.skeletonclr]
rows:
  - {{id: CLR, label: SkeletonCLR, method: skeletonclr}}
  - {{id: R-CLR, label: "ST-GCN, random init", method: skeletonclr, objective: null}}
  - {{id: USDRL, label: USDRL, method: usdrl}}
presets:
  demo:
    method_preset: {method_preset}
    dataset: {{name: synthetic, split: xsub}}
    encoder_preset: tiny
    pretrain: {{epochs: 3, batch_size: 16, lr: 1.0e-3, views: {{min_scale: 0.5}}}}
    evaluations:
      linear: {{epochs: 10}}
      linear_own: {{}}
"""


def _protocol(tmp_path, method_preset: str = "cpu"):
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.format(method_preset=method_preset))
    return load_protocol(path)


def test_method_rows_take_the_methods_components_and_settings(tmp_path):
    protocol = _protocol(tmp_path)
    cells = {c.row.id: c for c in expand_cells(protocol, "demo")}
    clr, random_init, usdrl = cells["CLR"], cells["R-CLR"], cells["USDRL"]
    assert (clr.row.encoder, clr.row.objective) == ("stgcn", "skeletonclr")
    assert (random_init.row.encoder, random_init.row.objective) == ("stgcn", None)  # objective: null kept
    # the method's cpu preset over the protocol's: encoder preset and options, schedule, objective options
    assert clr.encoder_preset == "paper" and clr.encoder_options["hidden_channels"] == 8
    assert (clr.schedule.optimizer, clr.schedule.lr, clr.schedule.epochs) == ("sgd", 0.1, 48)
    assert clr.objective_options == {"queue_size": 512}
    assert clr.evaluations["linear_own"]["lr"] == 3.0 and clr.evaluations["linear"] == {"epochs": 10}
    # USDRL's cpu preset keeps the protocol's optimiser and views, with its size and epochs
    assert usdrl.schedule.optimizer == "adam" and usdrl.schedule.lr == 1e-3 and usdrl.schedule.epochs == 100
    assert usdrl.schedule.views == ViewOptions(min_scale=0.5) and usdrl.encoder_options == {"hidden_size": 32}


def test_method_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(ProtocolError, match="method_preset.*no preset 'fast'"):
        _protocol(tmp_path, "fast")
    (tmp_path / "q.yaml").write_text("name: q\nversion: 1\nrows:\n  - {id: a, label: a, method: mamq}\npresets:\n"
                                     "  demo: {dataset: {name: synthetic}, encoder_preset: tiny, pretrain: {epochs: 1, batch_size: 8}, evaluations: {knn: {}}}\n")
    with pytest.raises(ProtocolError, match=r"rows\[0\].method.*Did you mean: mamp"):
        load_protocol(tmp_path / "q.yaml")
    with pytest.raises(TypeError, match="unknown key"):
        register_method("bad_method", encoder="dste", objective="mgfd", paper="x", presets={"paper": {"epochs": 3}})
    with pytest.raises(ValueError, match="at least one preset"):
        register_method("bad_method", encoder="dste", objective="mgfd", paper="x", presets={})
    with pytest.raises(ValueError, match="already registered"):
        register_method("mamp", encoder="dste", objective="mgfd", paper="x", presets={"paper": {}})
    # a method preset's options are checked like a protocol's
    register_method("typo_method", encoder="dste", objective="mgfd", paper="x",
                    presets={"cpu": {"objective_options": {"alfa": 1.0}}})
    (tmp_path / "r.yaml").write_text("name: r\nversion: 1\nrows:\n  - {id: a, label: a, method: typo_method}\n"
                                     "presets:\n  demo: {method_preset: cpu, encoder_preset: tiny, dataset: {name: synthetic}, "
                                     "pretrain: {epochs: 1, batch_size: 8}, evaluations: {knn: {}}}\n")
    with pytest.raises(ProtocolError, match="typo_method.*objective_options.alfa"):
        load_protocol(tmp_path / "r.yaml")


@pytest.mark.slow
def test_list_shows_methods_with_papers_and_presets():
    out = subprocess.run([sys.executable, "-m", "usdrl_bench", "list", "--plugin", "baselines.mamp"],
                         capture_output=True, text=True, timeout=120, env={"COLUMNS": "250", "PATH": ""})
    assert out.returncode == 0, out.stderr
    methods = out.stdout.split("\nencoders\n")[0]  # the first table
    lines = [line for line in methods.splitlines() if line.startswith(("│ mamp ", "│ usdrl "))]
    assert len(lines) == 2 and all("paper, cpu" in line for line in lines)
    assert "ICCV 2023" in methods and "AAAI 2025" in methods and "maoyunyao/MAMP@09e6252a" in methods
    for name in ("aimclr", "barlow_twins", "cmd", "skeletonclr", "vicreg"):  # the shipped baselines, without --plugin
        assert f"│ {name} " in methods, name


# --- optimisers and schedules --------------------------------------------------------------------------------
def test_cosine_factor_by_hand():
    # 10 steps, 2 of warm-up, floor 0.5: 0, 1/2, then 1 -> 0.5 along a half cosine
    assert cosine_factor(0, 10, 2, 0.5) == 0 and cosine_factor(1, 10, 2, 0.5) == 0.5
    assert cosine_factor(2, 10, 2, 0.5) == 1.0
    assert cosine_factor(6, 10, 2, 0.5) == pytest.approx(0.75)  # half way: (1 + cos(pi/2)) / 2 = 1/2
    assert cosine_factor(10, 10, 2, 0.5) == pytest.approx(0.5)


def test_build_optimizer_follows_the_spec():
    params = [torch.nn.Parameter(torch.zeros(3, 3)), torch.nn.Parameter(torch.zeros(3))]
    opt, _ = build_optimizer(params, PretrainSpec(epochs=1, batch_size=2, optimizer="adamw", betas=(0.9, 0.95),
                                                  weight_decay=0.05, no_decay_1d=True), torch.device("cpu"))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.95)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [1, 1]
    opt, _ = build_optimizer(params, PretrainSpec(epochs=1, batch_size=2, optimizer="sgd", lr=0.1, momentum=0.8,
                                                  weight_decay=1e-4), torch.device("cpu"))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.8
    with pytest.raises(ValueError, match="betas"):
        build_optimizer(params, PretrainSpec(epochs=1, batch_size=2, betas=(0.9, 1.0)), torch.device("cpu"))


class _Interrupt(Exception):
    pass


@pytest.mark.slow
def test_cosine_schedule_and_own_views_resume_bit_identical(tmp_path):
    train = generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)
    spec = PretrainSpec(epochs=3, batch_size=8, lr=1e-3, optimizer="adamw", schedule="cosine", warmup_epochs=1,
                        min_lr=1e-4, no_decay_1d=True, weight_decay=0.05)

    def run(workdir, stop_after=None):
        torch.manual_seed(0)
        encoder = create_encoder("stgcn", "tiny")
        objective = SkeletonCLR(encoder, queue_size=16)

        def on_epoch(done, total, loss):
            if stop_after is not None and done == stop_after:
                raise _Interrupt

        result = pretrain(encoder, objective, train, spec,
                          PretrainTarget(workdir, 1, torch.device("cpu")),
                          TrainingOptions(tensorboard=False), on_epoch=on_epoch)
        return encoder, objective, result

    ref_encoder, ref_objective, ref = run(tmp_path / "ref")
    # per-iteration warm-up: the first epoch's logged lr is that of its first step (0), then the cosine
    assert ref.history[0]["lr"] == 0.0 and 1e-4 < ref.history[2]["lr"] < 1e-3
    with pytest.raises(_Interrupt):
        run(tmp_path / "cut", stop_after=2)
    assert (tmp_path / "cut" / STATE_FILE).exists()
    encoder, objective, resumed = run(tmp_path / "cut")
    assert resumed.resumed_from_epoch == 2 and resumed.history == ref.history
    for mine, theirs in ((encoder, ref_encoder), (objective, ref_objective)):
        for key, value in mine.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key]), key


def test_pretraining_flops_counts_without_changing_the_objective():
    torch.manual_seed(0)
    encoder = create_encoder("mamp_vit", "tiny", num_joints=20, num_bodies=1)
    objective = MAMP(encoder, decoder_dim=16, decoder_depth=1, decoder_heads=2, min_length=8)
    before = {k: v.clone() for k, v in objective.state_dict().items()}
    flops = pretraining_flops(encoder, objective, (4, 3, 30, 20, 1), "nwucla20", PretrainSpec(epochs=1, batch_size=4))
    assert flops > 0
    assert all(torch.equal(v, before[k]) for k, v in objective.state_dict().items())
    assert all(p.grad is None for p in encoder.parameters())
    clr_encoder = create_encoder("stgcn", "tiny", num_joints=20, num_bodies=1)
    clr = SkeletonCLR(clr_encoder, queue_size=8)
    queue = clr.queue.queue.clone()
    pretraining_flops(clr_encoder, clr, (4, 3, 30, 20, 1), "nwucla20", PretrainSpec(epochs=1, batch_size=4))
    assert torch.equal(clr.queue.queue, queue)  # the copy's queue took the keys, not this one


def test_standardize_is_the_batchnorm_probes_inference_form():
    x = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], dtype=np.float32)
    train, test = standardize(x, np.array([[2.0, 3.0]], dtype=np.float32))
    # BatchNorm1d(affine=False) in training mode on the whole set normalises exactly so (biased variance)
    bn = torch.nn.BatchNorm1d(2, affine=False, eps=1e-6).train()
    assert np.allclose(bn(torch.from_numpy(x)).detach().numpy(), train, atol=1e-6)
    assert np.allclose(train.mean(0), 0, atol=1e-6) and test.tolist() == [[0.0, 0.0]]


# --- leaderboard statistics ------------------------------------------------------------------------------
def test_paired_t_test_by_hand():
    # differences 1, 2, 3 over three seeds: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 3.4641 with 2 degrees of
    # freedom: two-sided p = 1 - t / sqrt(2 + t^2) (Student's t with 2 d.o.f.) = 1 - sqrt(12 / 14) = 0.07418
    p, n = paired_p_value({0: 11.0, 1: 12.0, 2: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    assert n == 3 and p == pytest.approx(1 - math.sqrt(12 / 14))
    assert paired_p_value({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0}) == (0.0, 2)  # a constant difference: no variance
    assert np.isnan(paired_p_value({0: 2.0}, {0: 1.0, 1: 2.0})[0])  # one common seed: no test


def test_holm_by_hand():
    # m = 3: sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, max(0.06, 0.04) = 0.06; NaN stays out of the family
    assert holm([0.04, 0.01, float("nan"), 0.03]) == pytest.approx([0.06, 0.03, float("nan"), 0.06], nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_ranking_orders_marks_and_costs():
    rows = []
    values = {"A": [80.0, 81.0, 82.0], "B": [70.0, 70.5, 72.0], "C": [79.9, 81.1, 81.8]}
    for row, vals in values.items():
        for seed, v in enumerate(vals):
            rows.append({"row_id": row, "row_label": row, "column": "c", "metric": "knn1_top1", "seed": seed,
                         "value": v, "higher_is_better": True, "method": row.lower(), "method_published": None,
                         "encoder_params": 1000, "pretrain_gflops_per_sample": 0.5, "pretrain_wall_time_s": 120.0})
    rank = ranking(pd.DataFrame(rows), "c", "knn1_top1")
    assert rank["row"].tolist() == ["A", "C", "B"] and rank["rank"].tolist() == [1, 2, 3]
    assert rank["delta"].tolist() == pytest.approx([0.0, 242.8 / 3 - 81.0, 212.5 / 3 - 81.0])
    p_c = paired_p_value(dict(enumerate(values["A"])), dict(enumerate(values["C"])))[0]
    p_b = paired_p_value(dict(enumerate(values["A"])), dict(enumerate(values["B"])))[0]
    assert rank.loc[1, "p"] == pytest.approx(holm([p_c, p_b])[0]) and not rank.loc[1, "significant"]
    assert rank.loc[2, "p"] == pytest.approx(holm([p_c, p_b])[1]) and rank.loc[2, "significant"]
    assert rank.loc[0, "pretrain_min"] == 2.0 and rank.loc[0, "gflops"] == 0.5


def test_report_ranks_methods_and_draws_accuracy_against_cost(tmp_path):
    from usdrl_bench.records import RECORD_COLUMNS
    from usdrl_bench.report.writer import write_reports

    rows = []
    for i, (row, vals, gflops) in enumerate((("A", [80.0, 81.0, 82.0], 0.1), ("B", [70.0, 70.5, 72.0], 1.0))):
        for seed, v in enumerate(vals):
            rows.append({c: None for c in RECORD_COLUMNS} | {
                "protocol": "lb", "preset": "demo", "row_id": row, "row_label": f"method {row}", "row_index": i,
                "encoder": "dste", "objective": "mgfd", "dataset": "nwucla_xview", "split": "xview", "stream": "joint",
                "column": "nwucla_xview", "column_index": 0, "seed": seed, "evaluation": "knn", "metric": "knn1_top1",
                "value": v, "higher_is_better": True, "date": "2026-01-01T00:00:00", "method": row.lower(),
                "encoder_params": 70_000, "pretrain_gflops_per_sample": gflops, "pretrain_wall_time_s": 60.0,
                "train_samples": 1020, "test_samples": 464})
    written = write_reports(pd.DataFrame(rows, columns=list(RECORD_COLUMNS)), tmp_path)
    assert (tmp_path / "lb__demo__cost.png") in written
    md = (tmp_path / "lb__demo.md").read_text()
    section = md[md.index("### Leaderboard"):]
    assert "paired t-test" in section and "Holm" in section
    line_b = next(line for line in section.splitlines() if "| B " in line)
    p_b = holm([paired_p_value({0: 80.0, 1: 81.0, 2: 82.0}, {0: 70.0, 1: 70.5, 2: 72.0})[0]])[0]
    assert f"{p_b:.3f} *" in line_b and "-10.2" in line_b and "0.07" in line_b  # Δ best, params (M)


def test_published_numbers_only_beside_the_benchmarks_own_data(tmp_path):
    from usdrl_bench.records import RECORD_COLUMNS
    from usdrl_bench.report.writer import write_reports

    base = {c: None for c in RECORD_COLUMNS} | {
        "protocol": "lb", "preset": "demo", "row_label": "MAMP", "row_index": 0, "encoder": "mamp_vit",
        "objective": "mamp", "split": "xsub", "stream": "joint", "evaluation": "linear",
        "metric": "linear_top1_best_of_evals", "value": 50.0, "higher_is_better": True, "date": "2026-01-01",
        "method": "mamp", "method_published": 84.9, "paper_setting": "ntu60_xsub", "seed": 0, "row_id": "MAMP"}
    rows = [base | {"dataset": "synthetic", "column": "synthetic_xsub", "column_index": 0, "train_samples": 285,
                    "test_samples": 285},
            base | {"dataset": "ntu60_xsub", "column": "ntu60_xsub", "column_index": 1, "train_samples": 40_091,
                    "test_samples": 16_487}]
    write_reports(pd.DataFrame(rows, columns=list(RECORD_COLUMNS)), tmp_path)
    md = (tmp_path / "lb__demo.md").read_text()
    synthetic = md[md.index("#### `synthetic_xsub`"):md.index("#### `ntu60_xsub`")]
    ntu = md[md.index("#### `ntu60_xsub`"):]
    assert "84.9" not in synthetic and "84.9" in ntu.split("####")[1]
