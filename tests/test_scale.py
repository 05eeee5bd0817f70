"""The pretraining loop at scale: no host synchronisation per step, live logs, precision in the key, file
locks across concurrent runs, submitit jobs, and the ``bench`` command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from usdrl_bench.cli import main
from usdrl_bench.data.augment import SampleKeys, make_views
from usdrl_bench.data.synthetic.generator import generate_synthetic
from usdrl_bench.encoders import create_encoder
from usdrl_bench.objectives import create_objective
from usdrl_bench.train.spec import PretrainSpec
from usdrl_bench.skeleton import get_layout, to_stream
from usdrl_bench.train.logs import read_step_log
from usdrl_bench.train.pretrain import LOG_FILE, PretrainTarget, TrainStep, TrainingOptions, pretrain, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")

#: operators that read a device value on the host (a synchronisation on a GPU) or index by a boolean mask
SYNC_OPS = {"aten::nonzero", "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::masked_select"}


def _ops(fn) -> dict[str, int]:
    """Operator name -> number of calls while ``fn`` runs."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key: e.count for e in prof.key_averages()}


@pytest.fixture
def scale_tiny(tiny_protocol) -> str:
    """The tiny protocol with rows 7 and 5 (MG-FD with and without XC), 4 epochs."""
    return tiny_protocol("scale_tiny", ("7", "5"), pretrain="epochs: 4, batch_size: 16")


@pytest.mark.slow
@pytest.mark.parametrize("encoder_name", ["dste", "sttr"])
@pytest.mark.parametrize("objective_name", ["mgfd", "negative_contrastive"])
def test_a_training_step_reads_nothing_from_the_device(encoder_name, objective_name):
    torch.manual_seed(0)
    encoder = create_encoder(encoder_name, "tiny", num_joints=25, num_bodies=2, in_channels=3)
    objective = create_objective(objective_name, encoder, **({"queue_size": 20} if objective_name != "mgfd" else {}))
    step = TrainStep(encoder, objective, PretrainSpec(epochs=1, batch_size=8), torch.device("cpu"))
    step.train()
    x, nf, idx = torch.randn(8, 3, 40, 25, 2), torch.randint(10, 41, (8,)), torch.arange(8)
    layout = get_layout("ntu25")

    def one_step(stream: str) -> None:
        """Views, streams, forward, loss, backward: the suite's part of a step. (Adam's step is PyTorch's: on
        CUDA the fused kernel, sync-free; its CPU path reads its host-side step counters.)"""
        views = make_views(x, nf, num_views=objective.num_views, out_frames=encoder.num_frames,
                           generator=SampleKeys(0, 0, idx), check=False)
        loss, logs = step.forward([to_stream(v, stream, layout) for v in views])
        step.backward(loss)

    one_step("joint")  # first call: lazy initialisation
    step.optimizer_step()
    for stream in ("joint", "bone", "motion"):
        found = set(_ops(lambda: one_step(stream))) & SYNC_OPS
        assert not found, f"{encoder_name}/{objective_name}/{stream}: {found}"
    # the checks that do synchronise are where they belong: validating input once, not per step
    assert "aten::is_nonzero" in _ops(lambda: make_views(x, nf, generator=SampleKeys(0, 0, idx), check=True))


@pytest.fixture(scope="module")
def train():
    return generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)


@pytest.mark.slow
def test_the_loop_reads_losses_once_per_log_block(train, tmp_path):
    torch.manual_seed(0)
    encoder = create_encoder("sttr", "tiny")
    objective = create_objective("mgfd", encoder)
    spec = PretrainSpec(epochs=1, batch_size=6)  # 24 samples: 4 steps
    ops = _ops(lambda: pretrain(encoder, objective, train, spec,
                                PretrainTarget(tmp_path, 0, torch.device("cpu")),
                                TrainingOptions(log_every=100, tensorboard=False)))
    assert "aten::nonzero" not in ops and "aten::masked_select" not in ops
    assert ops.get("aten::is_nonzero", 0) == 1  # the frame counts, checked once for the whole dataset
    assert len(read_step_log(tmp_path / LOG_FILE)) == 4


def test_live_logs_are_written_while_training_and_cut_back_on_resume(train, tmp_path):
    tb = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    spec = PretrainSpec(epochs=3, batch_size=8, lr=1e-3)  # 24 samples: 3 steps per epoch
    seen: list[list[dict]] = []

    class Stop(Exception):
        pass

    def on_epoch(done, total, loss):
        rows = read_step_log(tmp_path / LOG_FILE)  # read by another reader while the run goes on
        seen.append(rows)
        events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
        assert events, "no TensorBoard event file while training"
        if done == 2:
            raise Stop

    def run(callback):
        torch.manual_seed(0)
        encoder = create_encoder("dste", "tiny")
        objective = create_objective("mgfd", encoder)
        return pretrain(encoder, objective, train, spec,
                        PretrainTarget(tmp_path, 0, torch.device("cpu")),
                        TrainingOptions(log_every=2), on_epoch=callback)

    with pytest.raises(Stop):
        run(on_epoch)
    assert [len(rows) for rows in seen] == [3, 6]
    first = seen[0][0]
    assert set(first) >= {"epoch", "step", "global_step", "loss", "sim", "vac", "xcorr", "lr", "samples_per_s"}
    assert [int(r["global_step"]) for r in seen[1]] == list(range(6))
    assert all(float(r["samples_per_s"]) > 0 and float(r["loss"]) > 0 for r in seen[1])
    # a run killed in the middle of epoch 3 left rows of it behind: resuming drops them first
    with open(tmp_path / LOG_FILE, "a") as f:
        f.write("3,0,6,99,1,1,1,99,0.001,1.0,,0\n")
    run(None)
    rows = read_step_log(tmp_path / LOG_FILE)
    assert [int(r["global_step"]) for r in rows] == list(range(9))
    assert [int(r["epoch"]) for r in rows] == [1] * 3 + [2] * 3 + [3] * 3
    assert all(float(r["loss"]) != 99 for r in rows)
    acc = tb.EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert "pretrain/loss" in acc.Tags()["scalars"] and "pretrain/samples_per_s" in acc.Tags()["scalars"]
    steps = sorted({e.step for e in acc.Scalars("pretrain/loss")})
    assert steps == list(range(9))


def test_precision_is_resolved_per_device_and_checked():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision("auto", cpu) == "fp32" and resolve_precision("auto", cuda) == "bf16"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="fp16 .* needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", cpu)


def test_bf16_pretraining_on_the_cpu_runs_and_is_keyed_apart(scale_tiny, train, tmp_path):
    from usdrl_bench.protocols.runner import ProtocolRunner
    from usdrl_bench.protocols.spec import expand_cells, load_protocol

    torch.manual_seed(0)
    encoder = create_encoder("sttr", "tiny")
    objective = create_objective("mgfd", encoder)
    result = pretrain(encoder, objective, train, PretrainSpec(epochs=1, batch_size=8, precision="bf16"),
                      PretrainTarget(tmp_path / "bf16", 0, torch.device("cpu")), TrainingOptions(tensorboard=False))
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)

    path = tmp_path / "p.yaml"
    keys = {}
    for precision in ("auto", "fp32", "bf16"):
        path.write_text(scale_tiny.replace("batch_size: 16", f"batch_size: 16, precision: {precision}"))
        cells = expand_cells(load_protocol(path), "demo")
        keys[precision] = ProtocolRunner(tmp_path / "r", torch.device("cpu")).plan(cells[0]).checkpoint_hash
    assert keys["auto"] == keys["fp32"] != keys["bf16"]  # auto is fp32 on a CPU


def _start(cwd: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "usdrl_bench", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_concurrent_runs_train_each_checkpoint_once(scale_tiny, tmp_path):
    (tmp_path / "p.yaml").write_text(scale_tiny)
    args = ("run", "p.yaml", "--results", "results", "--jobs", "1", "--no-tensorboard")
    first = _start(tmp_path, *args, "--reports", "rep1")
    time.sleep(0.5)
    second = _start(tmp_path, *args, "--reports", "rep2")
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, [err[-2000:] for _, err in outputs]
    counts = []
    for _, err in outputs:
        match = re.search(r"checkpoints: (\d+) trained by this run, (\d+) trained by a concurrent run", err)
        assert match, err[-2000:]
        counts.append((int(match[1]), int(match[2])))
    assert sum(trained for trained, _ in counts) == 2  # two checkpoints, each trained by exactly one run
    for log in (tmp_path / "results" / "checkpoints").glob("*/" + LOG_FILE):
        rows = read_step_log(log)
        assert [int(r["global_step"]) for r in rows] == list(range(len(rows)))  # one training, not two interleaved
    records = list((tmp_path / "results" / "records").rglob("*.json"))
    assert len(records) == 2
    # both runs print the same table
    assert outputs[0][0].count("|") == outputs[1][0].count("|") > 0


@pytest.mark.slow
def test_launcher_local_runs_the_pretrainings_as_submitit_jobs(scale_tiny, tmp_path, capsys):
    pytest.importorskip("submitit")
    (tmp_path / "p.yaml").write_text(scale_tiny.replace("epochs: 4", "epochs: 1"))
    results = tmp_path / "results"
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "rep"),
                 "--launcher", "local", "--no-tensorboard"]) == 0
    err = capsys.readouterr().err
    assert "2 pretraining job(s) finished (local)" in err
    job_logs = list((results / "jobs").rglob("*_log.err"))
    assert len(job_logs) == 2  # one submitit job per checkpoint, each with its log
    assert len(list((results / "checkpoints").glob("*/encoder.pt"))) == 2
    assert len(list((results / "records").rglob("*.json"))) == 2
    # a second run finds everything: no job is submitted
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "rep"),
                 "--launcher", "local"]) == 0
    assert "job(s) finished" not in capsys.readouterr().err


@pytest.mark.slow
def test_bench_prints_and_writes_the_measurements(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--encoder", "sttr", "dste", "--preset", "tiny", "--batch-size", "8", "--steps", "1",
                 "--repeats", "2", "--warmup", "1", "--out", str(out), "--device", "cpu"])
    assert code == 0
    printed = capsys.readouterr()
    assert "samples/s" in printed.out and "sttr-tiny b8 fp32" in printed.out
    files = list(out.glob("bench-*.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data["environment"]["device"] == "cpu"
    assert [r["config"]["encoder"] for r in data["results"]] == ["sttr", "dste"]
    for r in data["results"]:
        assert r["error"] is None and r["samples_per_s"] > 0 and len(r["rounds_samples_per_s"]) == 2
        assert set(r["phase_ms"]) == {"input", "views", "forward", "backward", "optimizer"}
        assert r["flops_per_sample"] > 0 and r["mfu"] is None  # no known peak for a CPU
        assert r["ms_per_step"] == pytest.approx(8 / r["samples_per_s"] * 1e3)
    assert main(["bench", "--batch-size", "1"]) == 2


@pytest.mark.slow
def test_gpu_check_script_dry_run(tmp_path):
    """benchmarks/gpu_check.sh, prepared for a GPU machine, runs every part end to end on the CPU at toy sizes."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(root / "benchmarks" / "gpu_check.sh"), "--dry-run", "--steps", "1",
                             "--repeats", "1"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert {r["config"]["precision"] for r in bench["results"]} == {"fp32", "bf16"}
    assert all(r["error"] is None and r["samples_per_s"] > 0 for r in bench["results"])
    epochs = json.loads((tmp_path / "epochs.json").read_text())
    assert [r["precision"] for r in epochs["runs"]] == ["fp32", "bf16"]
    for run in epochs["runs"]:
        assert run["steps"] == 16 and len(run["loss_per_step"]) == 16 and len(run["loss_per_epoch"]) == 2
        assert run["projected_451_epochs_h"] == pytest.approx(run["seconds_per_epoch"] * 40_091 / 64 * 451 / 3600)
    assert 0 <= epochs["bf16_vs_fp32"]["max_relative_difference_per_epoch"] < 0.5
    linear = json.loads((tmp_path / "linear.json").read_text())
    assert {m["name"] for m in linear["metrics"]} == {"linear_top1", "linear_top1_best_of_evals"}
    largest = json.loads((tmp_path / "largest_batch.json").read_text())
    assert largest["largest_batch"] == 32 and largest["samples_per_s"] > 0  # the dry run's cap: nothing runs out
    tests = json.loads((tmp_path / "cuda_tests.json").read_text())
    assert tests["tests"] > 0 and tests["tests"] == tests["skipped"] and tests["failures"] == tests["errors"] == 0
    assert (tmp_path / "cuda_tests.xml").exists()
    assert not (tmp_path / "work").exists()  # checkpoints stay behind on the machine, only numbers return


def test_the_last_partial_batch_is_kept_as_the_official_loader_does(train, tmp_path, monkeypatch):
    """24 samples, batch 10: batches of 10, 10 and 4, every sample once per epoch (the official
    ``DataLoader`` has no ``drop_last``); ``drop_last: true`` leaves the 4 out; a rest of 1 sample is
    always left out, since batch statistics need 2."""
    from usdrl_bench.train import pretrain as pretrain_module
    from usdrl_bench.train.pretrain import epoch_batch_sizes

    assert epoch_batch_sizes(24, 10) == [10, 10, 4]
    assert epoch_batch_sizes(24, 10, drop_last=True) == [10, 10]
    assert epoch_batch_sizes(21, 10) == [10, 10]  # a rest of 1
    assert epoch_batch_sizes(25, 10) == [10, 10, 5]  # the process count never enters: split unevenly instead
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        epoch_batch_sizes(24, 0)

    seen: list[list[int]] = []
    real = pretrain_module.make_views

    def spy(x, nf, *, generator, **kw):
        seen.append(torch.as_tensor(generator.index).tolist())
        return real(x, nf, generator=generator, **kw)

    monkeypatch.setattr(pretrain_module, "make_views", spy)
    for drop_last, expected in ((False, [10, 10, 4]), (True, [10, 10])):
        seen.clear()
        torch.manual_seed(0)
        encoder = create_encoder("dste", "tiny")
        pretrain(encoder, create_objective("mgfd", encoder), train, PretrainSpec(epochs=1, batch_size=10, drop_last=drop_last),
                 PretrainTarget(tmp_path / str(drop_last), 0, torch.device("cpu")), TrainingOptions(tensorboard=False))
        assert [len(s) for s in seen] == expected
        assert len(read_step_log(tmp_path / str(drop_last) / LOG_FILE)) == len(expected)
        if not drop_last:
            assert sorted(i for s in seen for i in s) == list(range(24))


@pytest.mark.slow
@pytest.mark.parametrize("path", ["one-process", "jobs", "launcher-local"])
def test_every_launch_path_trains_each_missing_checkpoint_once_under_the_key_it_evaluates(scale_tiny, tmp_path, capsys, path):
    """One plan, one key: whichever process trains a checkpoint (this one, a --jobs worker, a submitit job;
    torchrun ranks: tests/test_distributed.py), it trains each missing one exactly once, under the key the
    evaluations look up, and the records name it. A second key for the same row would show as an extra
    checkpoint folder no record names."""
    if path == "launcher-local":
        pytest.importorskip("submitit")
    protocol = scale_tiny.replace("epochs: 4", "epochs: 1").replace(
        "rows:\n", 'rows:\n  - {id: R, label: "DSTE, random init", encoder: dste, objective: null}\n')
    (tmp_path / "p.yaml").write_text(protocol)
    results = tmp_path / "results"
    launch = {"one-process": ["--jobs", "1"], "jobs": ["--jobs", "2"], "launcher-local": ["--launcher", "local"]}[path]
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "rep"),
                 "--no-tensorboard", *launch]) == 0
    err = capsys.readouterr().err
    folders = {p.name for p in (results / "checkpoints").iterdir()}
    assert len(folders) == 3  # rows 7, 5 and R: one checkpoint each, none trained twice under another key
    assert "checkpoints: 2 trained by this run" in " ".join(err.split()), err  # R is initialised, not trained
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {r["checkpoint_hash"] for r in rows} == folders and len(rows) == 3
    for key in folders:
        assert json.loads((results / "checkpoints" / key / "config.json").read_text())["checkpoint_hash"] == key
        log = results / "checkpoints" / key / LOG_FILE
        if log.exists():  # pretrained rows: one epoch of one training (45 samples: batches of 16, 16, 13)
            assert [int(r["global_step"]) for r in read_step_log(log)] == [0, 1, 2]


def test_an_objective_that_does_not_declare_uneven_shards_is_refused_by_name():
    """A data-parallel run whose batches the process count does not divide refuses a plug-in objective
    that does not declare ``uneven_shards``, naming it, instead of training another model; the built-in
    objectives declare it, and an even split or one process needs nothing."""
    from usdrl_bench import Objective
    from usdrl_bench.train.pretrain import check_uneven_shards

    class LocalMean(Objective):
        pass

    with pytest.raises(ValueError, match=r"objective LocalMean does not declare uneven_shards.*batch\(es\) of 7 samples"):
        check_uneven_shards(LocalMean(), [10, 10, 7], world=2)
    check_uneven_shards(LocalMean(), [10, 10, 8], world=2)  # every batch splits evenly
    check_uneven_shards(LocalMean(), [10, 10, 7], world=1)
    encoder = create_encoder("dste", "tiny")
    for name in ("mgfd", "negative_contrastive"):
        check_uneven_shards(create_objective(name, encoder), [10, 10, 7], world=2)


def test_the_process_count_enters_a_key_only_with_per_process_batchnorm(scale_tiny, tmp_path):
    """One plan, one key: the key depends on the run's process count (fixed when the runner is made, not
    read from the process group when a key is computed) only when BatchNorm statistics are per process."""
    from usdrl_bench.protocols.runner import ProtocolRunner
    from usdrl_bench.protocols.spec import expand_cells, load_protocol

    keys = {}
    for sync in (True, False):
        path = tmp_path / f"p{sync}.yaml"
        path.write_text(scale_tiny.replace("batch_size: 16", f"batch_size: 16, sync_batchnorm: {str(sync).lower()}"))
        cells = expand_cells(load_protocol(path), "demo")
        for world in (1, 2, 8):
            runner = ProtocolRunner(tmp_path / "r", torch.device("cpu"), world_size=world)
            plan = runner.plan(cells[0])
            assert runner.plan(cells[0]) is plan  # computed once per cell
            keys[sync, world] = plan.checkpoint_hash
    assert keys[True, 1] == keys[True, 2] == keys[True, 8]
    assert len({keys[False, 1], keys[False, 2], keys[False, 8]}) == 3


def test_worker_progress_reaches_the_parents_bar():
    """A --jobs worker's pretraining line (its loss, samples/s; rich computes the time left) arrives in the
    parent's progress through the queue, is updated, and goes when the worker removes it."""
    import multiprocessing

    from rich.progress import Progress

    from usdrl_bench.protocols.schedule import ProgressRelay, RemoteProgress

    updates = multiprocessing.get_context("fork").Queue()
    remote = RemoteProgress(updates)
    task = remote.add_task("pretrain 7 (seed 0)", total=None)
    remote.update(task, completed=21, total=42, description="pretrain 7 (seed 0) loss 31.2, 850 samples/s")
    with Progress(disable=True) as progress:
        relay = ProgressRelay(progress)
        deadline = time.time() + 5
        while not relay.tasks and time.time() < deadline:
            relay.drain(updates)
            time.sleep(0.05)
        time.sleep(0.2)
        relay.drain(updates)
        (shown,) = progress.tasks
        assert (shown.completed, shown.total) == (21, 42) and "loss 31.2, 850 samples/s" in shown.description
        remote.remove_task(task)
        time.sleep(0.2)
        relay.drain(updates)
        assert not progress.tasks


def test_threads_per_job_share_the_free_cores(monkeypatch):
    from usdrl_bench.protocols import schedule

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(schedule.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    for busy, jobs, expected in ((0.0, 1, 4), (0.0, 2, 2), (1.2, 1, 3), (1.2, 2, 1), (3.9, 1, 1), (0.0, 8, 1)):
        monkeypatch.setattr(schedule, "busy_cores", lambda busy=busy: busy)
        assert schedule.threads_per_job(jobs) == expected, (busy, jobs)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert schedule.threads_per_job(2) == 3  # the user's word


@pytest.mark.slow
def test_the_runs_total_time_is_the_wall_clock_with_pretraining_in_workers_counted(tiny_protocol, tmp_path):
    """The end-of-run time counts everything, pretraining in --jobs workers included (it once said 27 s after
    a 3 min 10 s run): the total is the call's wall time within 5 %, and its parts add up to no more."""
    from usdrl_bench.api import RunTiming, run_protocols

    path = tmp_path / "p.yaml"
    path.write_text(tiny_protocol("timed", ("7", "5", "R-DSTE"), pretrain="epochs: 3, batch_size: 16"))
    timing = RunTiming()
    t0 = time.perf_counter()
    run_protocols([path], results=tmp_path / "results", jobs=2, tensorboard=False, timing=timing)
    wall = time.perf_counter() - t0
    assert abs(timing.total_s - wall) <= 0.05 * wall, (timing, wall)
    parts = timing.pretraining_s + timing.extraction_s + timing.evaluation_s
    assert timing.pretraining_s > 0 and timing.extraction_s > 0 and timing.evaluation_s > 0
    assert parts <= timing.total_s and timing.other_s == pytest.approx(timing.total_s - parts)
    # the workers' pretraining is inside it: each model's first to last logged step (train_log.csv) fits in it
    import csv

    logs = list((tmp_path / "results" / "checkpoints").glob("*/train_log.csv"))
    assert len(logs) == 2
    for log in logs:
        times = [float(r["time"]) for r in csv.DictReader(log.open())]
        assert max(times) - min(times) <= timing.pretraining_s, (log, timing)
    from usdrl_bench.api import duration

    line = timing.describe(wall)
    assert line.startswith(f"{duration(wall)}: pretraining {duration(timing.pretraining_s)}, feature extraction ")
