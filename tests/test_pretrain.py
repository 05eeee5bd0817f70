"""Pretraining: an interrupted run resumes from its last finished epoch and ends bit-identical to an
uninterrupted one (sample order, views, DropPath, optimiser and queue state are all restored)."""

from __future__ import annotations

import json

import pytest
import torch

from usdrl_bench.data.synthetic.generator import generate_synthetic
from usdrl_bench.encoders import create_encoder
from usdrl_bench.objectives import create_objective
from usdrl_bench.train.spec import PretrainSpec
from usdrl_bench.train.pretrain import ENCODER_FILE, HISTORY_FILE, PretrainTarget, STATE_FILE, TrainingOptions, pretrain

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = PretrainSpec(epochs=3, batch_size=8, lr=1e-3, milestones=(2,), views={"min_scale": 0.5})


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def train():
    return generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)


def _run(train, workdir, objective_name, stop_after=None):
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny", drop_path=0.1)  # DropPath on: the global generator matters
    objective = create_objective(objective_name, encoder, **({"queue_size": 20} if objective_name != "mgfd" else {}))

    def on_epoch(done, total, loss):
        if stop_after is not None and done == stop_after:
            raise Interrupt

    result = pretrain(encoder, objective, train, SPEC,
                      PretrainTarget(workdir, 3, torch.device("cpu")), on_epoch=on_epoch)
    return encoder, objective, result


@pytest.mark.slow
@pytest.mark.parametrize("objective_name", ["mgfd", "negative_contrastive"])
def test_resume_equals_uninterrupted(train, tmp_path, objective_name):
    ref_encoder, ref_objective, ref = _run(train, tmp_path / "ref", objective_name)
    assert len(ref.history) == SPEC.epochs and ref.resumed_from_epoch == 0
    assert (tmp_path / "ref" / ENCODER_FILE).exists() and not (tmp_path / "ref" / STATE_FILE).exists()

    work = tmp_path / "interrupted"
    with pytest.raises(Interrupt):
        _run(train, work, objective_name, stop_after=1)
    # the interruption leaves the resumable state of the finished epoch, and no final checkpoint
    assert (work / STATE_FILE).exists() and not (work / ENCODER_FILE).exists()
    assert torch.load(work / STATE_FILE, weights_only=False)["epoch"] == 1

    encoder, objective, resumed = _run(train, work, objective_name)
    assert resumed.resumed_from_epoch == 1
    assert resumed.history == ref.history
    assert json.loads((work / HISTORY_FILE).read_text()) == json.loads((tmp_path / "ref" / HISTORY_FILE).read_text())
    for mine, theirs in ((encoder, ref_encoder), (objective, ref_objective)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.slow
def test_losses_are_finite_and_recorded_per_term(train, tmp_path):
    _, _, result = _run(train, tmp_path, "mgfd")
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    # lr x0.1 after the milestone at epoch 2 (MultiStepLR steps once per epoch)
    assert result.history[0]["lr"] == pytest.approx(1e-3) and result.history[-1]["lr"] == pytest.approx(1e-4)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert {k for k in result.history[0]} > {"epoch", "loss", "lr"}  # the objective's per-term logs


def _run_steps(train, workdir, objective_name, spec, *, at_step=None, action=None, save_every_s=None):
    """A run with a per-step callback that, at global step ``at_step``, sends SIGINT to this process
    (``action="sigint"``) or fails (``"crash"``)."""
    import os
    import signal

    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny", drop_path=0.1)
    objective = create_objective(objective_name, encoder, **({"queue_size": 20} if objective_name != "mgfd" else {}))

    def on_step(done, total, rate, loss):
        if done == at_step and action in ("sigint", "sigterm"):
            os.kill(os.getpid(), signal.SIGINT if action == "sigint" else signal.SIGTERM)
        elif done == at_step and action == "crash":
            raise Interrupt

    result = pretrain(encoder, objective, train, spec,
                      PretrainTarget(workdir, 3, torch.device("cpu")),
                      TrainingOptions(log_every=1, save_every_s=save_every_s), on_step=on_step)
    return encoder, objective, result


def _same_weights(a_modules, b_modules):
    for mine, theirs in zip(a_modules, b_modules):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key


def _log_rows(workdir):
    from usdrl_bench.train.logs import read_step_log
    from usdrl_bench.train.pretrain import LOG_FILE

    return [{k: v for k, v in r.items() if k not in ("time", "samples_per_s", "max_memory_mb")}
            for r in read_step_log(workdir / LOG_FILE)]


@pytest.mark.slow
@pytest.mark.parametrize("objective_name, schedule", [("mgfd", "step"), ("negative_contrastive", "cosine")])
def test_ctrl_c_inside_an_epoch_saves_the_state_and_resuming_is_bit_identical(train, tmp_path, objective_name, schedule):
    import signal

    spec = PretrainSpec(epochs=3, batch_size=8, lr=1e-3, milestones=(2,), views={"min_scale": 0.5}, schedule=schedule,
                        warmup_epochs=1.0 if schedule == "cosine" else 0.0)
    steps = len(train) // 8  # 24 samples: 3 steps an epoch
    ref_modules = _run_steps(train, tmp_path / "ref", objective_name, spec)
    work = tmp_path / "interrupted"
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match=r"stopped by SIGINT at epoch 2 step 2"):
        # SIGINT during global step 4 (epoch 2, step 1): the state is saved after the next step, inside the epoch
        _run_steps(train, work, objective_name, spec, at_step=steps + 1, action="sigint")
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    state = torch.load(work / STATE_FILE, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 2)
    assert not (work / ENCODER_FILE).exists()
    *modules, resumed = _run_steps(train, work, objective_name, spec)
    assert (resumed.resumed_from_epoch, resumed.resumed_from_step) == (state["epoch"], state["step"])
    _same_weights(modules, ref_modules[:2])
    assert resumed.history == ref_modules[2].history
    assert _log_rows(work) == _log_rows(tmp_path / "ref")  # the step log is whole: no step lost or repeated


@pytest.mark.slow
def test_a_crash_inside_an_epoch_loses_only_the_steps_since_the_last_timed_save(train, tmp_path):
    spec = PretrainSpec(epochs=2, batch_size=8, lr=1e-3, views={"min_scale": 0.5})
    ref_modules = _run_steps(train, tmp_path / "ref", "mgfd", spec)
    work = tmp_path / "crashed"
    with pytest.raises(Interrupt):  # save_every_s=0: the state is saved after every step
        _run_steps(train, work, "mgfd", spec, at_step=5, action="crash", save_every_s=0)
    state = torch.load(work / STATE_FILE, weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1)  # after global step 4; step 5 was lost with the crash
    *modules, resumed = _run_steps(train, work, "mgfd", spec, save_every_s=0)
    assert (resumed.resumed_from_epoch, resumed.resumed_from_step) == (1, 1)
    _same_weights(modules, ref_modules[:2])
    assert _log_rows(work) == _log_rows(tmp_path / "ref")


@pytest.mark.slow
def test_sigterm_inside_an_epoch_saves_the_state_too(train, tmp_path):
    """A cluster's stop (SIGTERM) is handled as Ctrl-C: the state after the next step, then a stop."""
    import signal

    spec = PretrainSpec(epochs=2, batch_size=8, lr=1e-3, views={"min_scale": 0.5})
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match=r"stopped by SIGTERM at epoch 1 step 2"):
        _run_steps(train, tmp_path, "mgfd", spec, at_step=1, action="sigterm")
    assert signal.getsignal(signal.SIGTERM) is before
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    assert (state["epoch"], state["step"]) == (0, 2)
