"""Rehearsal (``run --rehearse``) and the plan's forecast (``usdrl-bench plan``): real shapes, cut lengths,
records and caches that never mix with real ones, a plan that lists what a run trains, measured costs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from usdrl_bench.components import load_builtins
from usdrl_bench import registry
from usdrl_bench.api import plan_protocols, protocol_path, run_protocol
from usdrl_bench.cli import main
from usdrl_bench.data.synthetic.releases import RELEASES, rehearsal_arrays
from usdrl_bench.encoders import create_encoder
from usdrl_bench.objectives import create_objective
from usdrl_bench.protocols.forecast import GPUS, forecast_totals
from usdrl_bench.protocols.rehearsal import Rehearsal, rehearse_cells
from usdrl_bench.protocols.spec import expand_cells, load_protocol
from usdrl_bench.records import REHEARSAL_BANNER, load_records
from usdrl_bench.report.tables import build_tables, to_markdown
from usdrl_bench.skeleton import LAYOUTS
from usdrl_bench.train.measure import LiveTensorBytes, StepCost, measure_step
from usdrl_bench.train.pretrain import pretraining_flops
from usdrl_bench.train.spec import PretrainSpec

PROTOCOL = """\
name: tiny_rehearsal
version: 1
paper_table: table5_ablation
rows:
  - {id: "7", paper_row: 7, label: "DSTE, MG-FD with XC", encoder: dste, objective: mgfd}
  - {id: "4", paper_row: 4, label: "DSTE, negative contrastive", encoder: dste, objective: negative_contrastive}
  - {id: R-DSTE, label: "DSTE, random init", encoder: dste, objective: null}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {seed: 0, num_classes: 3, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations: {knn: {k: 1}}
  paper:
    dataset: {name: ntu60_xsub, paper_setting: ntu60_xsub}
    encoder_preset: tiny
    pretrain: {epochs: 451, batch_size: 356, milestones: [351]}
    objective_options:
      negative_contrastive: {queue_size: 64}
    seeds: [0, 1]
    evaluations:
      knn: {k: 1}
      linear: {epochs: 160, batch_size: 512, lr: 0.006, milestones: [120, 140], eval_every: 5}
"""


@pytest.fixture
def protocol(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_rehearsal.yaml"
    path.write_text(PROTOCOL)
    return path


@pytest.mark.parametrize("name", sorted(RELEASES))
def test_rehearsal_data_has_the_release_shape(name):
    release = RELEASES[name]
    arrays = rehearsal_arrays(name, 6, "train")
    assert arrays.shape == (6, *release.shape)
    assert arrays.num_classes == release.num_classes and LAYOUTS[arrays.layout].num_joints == release.joints
    assert np.all((arrays.labels >= 0) & (arrays.labels < release.num_classes))
    assert len(np.unique(arrays.labels)) == 3  # two samples per class
    for x, n in zip(arrays.data, arrays.num_frames):
        assert 1 <= n <= release.frames and np.all(x[:, n:] == 0) and np.any(x[:, :n] != 0)
    assert not np.array_equal(arrays.data, rehearsal_arrays(name, 6, "test").data)


def test_a_rehearsal_cuts_the_length_and_keeps_the_shapes():
    protocol = load_protocol(protocol_path("table1_linear"))
    cells = expand_cells(protocol, "paper", check_paths=False)
    rehearsal = Rehearsal()
    cut = rehearse_cells(cells, rehearsal)
    assert len(cut) == len(cells)  # one seed in this preset: every cell
    for real, fake in zip(cells, cut):
        assert (fake.row, fake.encoder_preset, fake.encoder_options, fake.objective_options) == \
            (real.row, real.encoder_preset, real.encoder_options, real.objective_options)
        assert fake.dataset.name == "rehearsal" and fake.dataset.options["like"] == real.dataset.name
        assert (fake.dataset.column, fake.dataset.stream, fake.dataset.paper_setting) == \
            (real.dataset.column, real.dataset.stream, real.dataset.paper_setting)
        assert fake.preset_label == "paper-rehearsal"
        if real.row.objective is None:
            continue
        a, b = real.schedule, fake.schedule
        assert (b.epochs, b.batch_size, b.milestones) == (1, 4, ())
        assert (b.views, b.optimizer, b.lr, b.precision) == (a.views, a.optimizer, a.lr, a.precision)
        for name, opts in fake.evaluations.items():
            assert opts["epochs"] == 1 and opts["eval_every"] == 1 and opts["batch_size"] == 4
            assert {k: v for k, v in opts.items() if k not in ("epochs", "eval_every", "batch_size", "milestones")} == \
                {k: v for k, v in real.evaluations[name].items() if k not in ("epochs", "eval_every", "batch_size", "milestones")}
    # a GPU's rehearsal keeps the preset's batches
    gpu = rehearse_cells(cells, Rehearsal.for_device("cuda"))
    assert {c.schedule.batch_size for c in gpu if c.row.objective} == {c.schedule.batch_size for c in cells if c.row.objective}


def test_untrimmed_videos_are_replaced_by_synthetic_ones_with_the_release_classes():
    protocol = load_protocol(protocol_path("table4_detection"))
    cells = rehearse_cells(expand_cells(protocol, "paper", check_paths=False), Rehearsal())
    data = cells[0].evaluations["detection"]["data"]
    assert data["name"] == "synthetic_untrimmed" and data["options"]["num_classes"] == 51


def _checkpoints(results: Path) -> set[str]:
    folder = results / "checkpoints"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_rehearsal_records_and_checkpoints_never_enter_a_real_report_or_cache(protocol, tmp_path, one_thread):
    results = tmp_path / "results"
    rehearsed = run_protocol(protocol, preset="paper", rehearse=Rehearsal(keep_weights=True), results=results,
                             device="cpu", tensorboard=False)
    assert set(rehearsed["preset"]) == {"paper-rehearsal"} and rehearsed["rehearsal"].all()
    assert set(rehearsed["seed"]) == {0}  # the first seed only
    assert not (results / "records").exists() and not (results / "checkpoints").exists()  # all under rehearsal/
    rehearsal_keys = _checkpoints(results / "rehearsal")
    assert len(rehearsal_keys) == 3
    assert all((results / "rehearsal" / "checkpoints" / k / "encoder.pt").is_file() for k in rehearsal_keys)
    assert not any((results / "rehearsal" / "checkpoints" / k / "objective.pt").exists() for k in rehearsal_keys)

    # copy the rehearsal's checkpoints, features and records into the real results folder: a real run's keys
    # never find them (data, schedule and the rehearsal settings are in the key), so nothing is reused
    for sub in ("checkpoints", "features", "records"):
        shutil.copytree(results / "rehearsal" / sub, results / sub)
    plan = plan_protocols([protocol], preset="paper", device="cpu", results=results, gpu="h100")
    assert not plan["cached"].any() and set(plan["key"]).isdisjoint(rehearsal_keys)
    assert set(plan[plan["trains"]]["row"]) == {"7", "4"}

    real = run_protocol(protocol, preset="demo", results=results, device="cpu", tensorboard=False)
    assert not real["rehearsal"].any()
    records = load_records(results)
    tables = {t.preset: t for t in build_tables(records)}
    assert set(tables) == {"demo", "paper-rehearsal"}
    assert set(tables["demo"].records["rehearsal"]) == {False}
    assert REHEARSAL_BANNER in to_markdown(tables["paper-rehearsal"])
    assert REHEARSAL_BANNER not in to_markdown(tables["demo"])


def test_the_plan_lists_exactly_the_models_a_run_trains(protocol, tmp_path, one_thread):
    results = tmp_path / "results"
    plan = plan_protocols([protocol], preset="demo", device="cpu", results=results)
    to_train = set(plan[plan["trains"]]["key"])
    assert len(to_train) == 2 and not plan["cached"].any()
    run_protocol(protocol, preset="demo", results=results, device="cpu", tensorboard=False)
    trained = {k for k in _checkpoints(results) if (results / "checkpoints" / k / "history.json").exists()}
    assert trained == to_train
    assert _checkpoints(results) == set(plan["key"])  # and the random-init row's, under the planned key
    # one checkpoint gone: the plan lists it alone, and the run trains it alone
    gone = sorted(to_train)[0]
    shutil.rmtree(results / "checkpoints" / gone)
    for record in (results / "records").rglob("*.json"):
        record.unlink()
    plan = plan_protocols([protocol], preset="demo", device="cpu", results=results)
    assert set(plan[plan["trains"]]["key"]) == {gone}
    before = {k: (results / "checkpoints" / k / "encoder.pt").stat().st_mtime_ns for k in _checkpoints(results)}
    run_protocol(protocol, preset="demo", results=results, device="cpu", tensorboard=False)
    assert {k for k in _checkpoints(results) if k not in before} == {gone}
    assert all((results / "checkpoints" / k / "encoder.pt").stat().st_mtime_ns == t for k, t in before.items())


def test_rehearsal_keys_are_the_same_with_worker_processes(protocol, tmp_path, one_thread):
    one = run_protocol(protocol, preset="paper", rehearse=True, results=tmp_path / "a", device="cpu", tensorboard=False)
    two = run_protocol(protocol, preset="paper", rehearse=True, results=tmp_path / "b", device="cpu", jobs=2,
                       tensorboard=False)
    assert set(one["checkpoint_hash"]) == set(two["checkpoint_hash"])
    assert _checkpoints(tmp_path / "a" / "rehearsal") == _checkpoints(tmp_path / "b" / "rehearsal")


def test_live_tensor_bytes_follows_allocations_and_frees():
    base = torch.ones(1000)
    with LiveTensorBytes(exclude={base.untyped_storage().data_ptr()}) as tracker:
        a = base * 2  # 4000 bytes
        b = a.view(10, 100)  # a view: nothing new
        c = a + 1  # 8000 live
        assert tracker.live == 8000
        del a, b  # the view kept the storage alive; now both are gone
        assert tracker.live == 4000
        d = c.add_(1)  # in place: nothing new
        assert d is c and tracker.live == 4000
        e = torch.cat([c, c])  # 8000 more
        del e
    assert tracker.peak == 12000 and tracker.live == 4000


def test_measured_step_cost_grows_with_the_batch_and_counts_the_flops(one_thread):
    load_builtins()
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny", in_channels=3, num_joints=25, num_bodies=2)
    objective = create_objective("mgfd", encoder)
    spec = PretrainSpec(epochs=1, batch_size=8, precision="fp32")
    cost = measure_step(encoder, objective, spec, (8, 3, 40, 25, 2), "ntu25", batches=(2, 4, 8))
    (b1, m1), (b2, m2), (b3, m3) = cost.memory
    assert (b1, b2, b3) == (2, 4, 8) and m1 < m2 < m3
    params = sum(p.numel() for p in (*encoder.parameters(), *objective.parameters()))
    assert cost.static_bytes >= 3 * 4 * params  # weights and Adam's two moments, fp32
    assert cost.memory_at(16) == pytest.approx(m3 + (m3 - m2) / 4 * 8)
    counted = pretraining_flops(encoder, objective, (4, 3, 40, 25, 2), "ntu25", spec, batch=2)
    assert cost.flops_per_sample == pytest.approx(counted, rel=1e-6)
    assert 0 < cost.forward_flops_per_sample < cost.flops_per_sample
    assert all(p.grad is None for p in encoder.parameters())  # measured on copies


def test_the_forecast_prices_a_measured_model_by_hand(protocol, tmp_path, one_thread):
    results = tmp_path / "results"
    run_protocol(protocol, preset="paper", rehearse=True, results=results, device="cpu", tensorboard=False)
    files = sorted((results / "rehearsal" / "forecast").glob("*.json"))
    assert len(files) == 2  # MG-FD and negative contrastive on the same DSTE and shape
    plan = plan_protocols([protocol], preset="paper", device="cpu", results=results, gpu="h200", mfu=0.5)
    row = plan[plan["row"] == "7"].iloc[0]
    costs = [StepCost.from_dict(json.loads(f.read_text())["cost"]) for f in files]
    cost = next(c for c in costs if c.flops_per_sample == pytest.approx(row["gflops_per_sample"] * 1e9))
    release = RELEASES["ntu60_xsub"]
    samples = 451 * release.train * cost.flops_per_sample + cost.forward_flops_per_sample * (release.train + release.test)
    assert row["gpu_hours"] == pytest.approx(samples / (989e12 * 0.5) / 3600)
    assert row["peak_gb"] == pytest.approx(cost.memory_at(356) / 1e9)
    assert bool(row["fits"]) == (cost.memory_at(356) <= 0.9 * GPUS["h200"].memory_gb * 1e9)
    assert row["mfu_source"] == "given"
    totals = forecast_totals(plan)
    assert totals["to_train"] == 4 and totals["unmeasured"] == 0
    # the measurements travel: another results folder reads them with `measured`
    shutil.copytree(results / "rehearsal" / "forecast", tmp_path / "shipped" / "forecast")
    elsewhere = plan_protocols([protocol], preset="paper", device="cpu", results=tmp_path / "other", gpu="h200",
                               mfu=0.5, measured=[tmp_path / "shipped"])
    assert elsewhere["gpu_hours"].fillna(-1).tolist() == plan["gpu_hours"].fillna(-1).tolist()  # NaN: random init
    with pytest.raises(FileNotFoundError, match="no measured step costs"):
        plan_protocols([protocol], preset="paper", device="cpu", results=tmp_path / "other", measured=[tmp_path])  # two rows, two seeds
    assert totals["gpu_hours"] == pytest.approx(plan["gpu_hours"].sum())


def test_cli_plan_and_rehearse(protocol, tmp_path, capsys, one_thread):
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["plan", str(protocol), "--preset", "paper", "--results", str(results), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "4 model(s) to train, 0 cached; GPU-hours unknown (not measured: run --rehearse)" in out
    assert main(["run", str(protocol), "--preset", "paper", "--rehearse", "--results", str(results), "--reports",
                 str(reports), "--device", "cpu", "--jobs", "1", "--no-tensorboard"]) == 0
    md = (reports / "rehearsal" / "tiny_rehearsal__paper-rehearsal.md").read_text()
    assert REHEARSAL_BANNER in md
    assert main(["plan", str(protocol), "--preset", "paper", "--results", str(results), "--device", "cpu",
                 "--gpu", "h200", "--csv", str(tmp_path / "plan.csv")]) == 0
    out = capsys.readouterr().out
    assert "GPU-hours on H200" in out and "(assumed)" in out
    assert (tmp_path / "plan.csv").is_file()


@pytest.mark.parametrize("name", ["table4_detection"])  # all of them: `run protocols/*.yaml --preset paper --rehearse`
def test_a_shipped_paper_preset_rehearses(name, tmp_path):
    # (measuring the step for the forecast is tested on the tiny protocol above)
    records = run_protocol(name, preset="paper", rehearse=Rehearsal(measure=False), results=tmp_path, device="cpu",
                           tensorboard=False)
    assert len(records) and records["value"].notna().all() and set(records["preset"]) == {"paper-rehearsal"}
    tables = build_tables(records)
    assert tables and all(REHEARSAL_BANNER in to_markdown(t) for t in tables)


@pytest.mark.slow
def test_a_real_run_starts_with_the_rehearsals_forecast(protocol, tmp_path, capsys, one_thread):
    """After a rehearsal in the results folder, a real run (prepared NTU-shaped data under a data root)
    starts by listing each checkpoint to train with its measured memory, fit and GPU-hours."""
    from usdrl_bench.data.synthetic.raw import ntu_names, write_ntu_skeleton_tree

    results, root = tmp_path / "results", tmp_path / "data"
    run_protocol(protocol, preset="paper", rehearse=True, results=results, device="cpu", tensorboard=False)
    write_ntu_skeleton_tree(tmp_path / "raw", ntu_names([1], [1, 2], [1, 3], [1], [1, 2, 3]), min_frames=12, max_frames=16)
    assert main(["data", "prepare", "ntu60", "--raw", str(tmp_path / "raw"), "--data-root", str(root), "--workers", "1"]) == 0
    capsys.readouterr()
    short = ["--set", "presets.paper.pretrain.epochs=1", "--set", "presets.paper.pretrain.batch_size=4",
             "--set", "presets.paper.pretrain.milestones=[]", "--set", "presets.paper.evaluations.linear.epochs=2",
             "--set", "presets.paper.evaluations.linear.milestones=[1]", "--seeds", "0"]
    assert main(["run", str(protocol), "--preset", "paper", "--data-root", str(root), "--results", str(results),
                 "--reports", str(tmp_path / "reports"), "--device", "cpu", "--jobs", "1", "--no-tensorboard", *short]) == 0
    err = capsys.readouterr().err
    assert "plan: 2 checkpoint(s) to pretrain, 0 cached" in err
    lines = [line for line in err.splitlines() if "GB at batch 4 (fits on one H100 80 GB (SXM))" in line]
    assert len(lines) == 2 and all("GPU-hours at MFU 0.25 (assumed)" in line for line in lines)


@pytest.mark.slow
@pytest.mark.parametrize("path", ["launcher-local", "torchrun"])
def test_a_rehearsal_trains_under_the_same_keys_on_every_launch_path(protocol, tmp_path, path):
    """The rehearsal settings enter the checkpoint key: a submitit job and two torchrun ranks train the
    checkpoints of the one-process rehearsal, under the same keys, and the records name them."""
    import os
    import subprocess
    import sys

    if path == "launcher-local":
        pytest.importorskip("submitit")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["-m", "usdrl_bench", "run", str(protocol), "--preset", "paper", "--rehearse", "--no-tensorboard",
              "--device", "cpu"]

    def run(*args: str) -> None:
        result = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]

    run(*common, "--results", "one", "--reports", "r1", "--jobs", "1")
    if path == "torchrun":
        run("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *common[0:], "--results", "two",
            "--reports", "r2")
    else:
        run(*common, "--results", "two", "--reports", "r2", "--launcher", "local")
    keys = [_checkpoints(tmp_path / run_ / "rehearsal") for run_ in ("one", "two")]
    assert keys[0] == keys[1] and len(keys[0]) == 3
    for run_ in ("one", "two"):
        rows = [r for f in (tmp_path / run_ / "rehearsal" / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
        assert {r["checkpoint_hash"] for r in rows} == keys[0] and {r["preset"] for r in rows} == {"paper-rehearsal"}
