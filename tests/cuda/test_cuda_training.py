"""Pretraining on CUDA: every encoder and objective in every precision, the same records as on a CPU, resume
bit-exact, no host synchronisation in a step, DDP with one process. Skipped without a GPU; run on a GPU
machine (``python -m pytest tests/cuda``; ``benchmarks/gpu_check.sh`` runs them and returns the results)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from usdrl_bench.components import load_builtins
from usdrl_bench import registry
from usdrl_bench.data.augment import SampleKeys, make_views
from usdrl_bench.data.synthetic.generator import generate_synthetic
from usdrl_bench.encoders import create_encoder
from usdrl_bench.objectives import create_objective
from usdrl_bench.train.spec import PretrainSpec
from usdrl_bench.skeleton import get_layout, to_stream
from usdrl_bench.train.pretrain import PretrainTarget, TrainStep, TrainingOptions, pretrain

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
OPTIONS = {"negative_contrastive": {"queue_size": 64, "proj_dim": 16}}


def _pair(encoder_name: str, objective_name: str, **encoder_options):
    torch.manual_seed(0)
    encoder = create_encoder(encoder_name, "tiny", num_joints=25, num_bodies=2, in_channels=3, **encoder_options)
    return encoder, create_objective(objective_name, encoder, **OPTIONS.get(objective_name, {}))


def _inputs(n: int = 16, device=CUDA):
    """A batch on the device: (x, num_frames, sample indices)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(n, 3, 40, 25, 2, generator=g).to(device)
    nf = torch.randint(20, 41, (n,), generator=g).to(device)
    return x, nf, torch.arange(n, device=device)


def _views(objective, encoder, inputs=None):
    x, nf, idx = inputs if inputs is not None else _inputs()
    return make_views(x, nf, num_views=objective.num_views, out_frames=encoder.num_frames,
                      generator=SampleKeys(0, 0, idx), check=False)


load_builtins()


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("objective_name", registry.OBJECTIVES.names())
@pytest.mark.parametrize("encoder_name", registry.ENCODERS.names())
def test_every_encoder_and_objective_trains_in_every_precision(encoder_name, objective_name, precision):
    encoder, objective = _pair(encoder_name, objective_name)
    step = TrainStep(encoder, objective, PretrainSpec(epochs=1, batch_size=16, precision=precision), CUDA)
    step.train()
    assert (step.scaler is not None) == (precision == "fp16") and step.fused
    before = [p.detach().clone() for p in encoder.parameters()]
    for _ in range(2):
        loss, logs = step(_views(objective, encoder))
    assert torch.isfinite(loss) and all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters())), "no parameter moved"


def test_a_training_step_does_not_synchronise():
    for encoder_name in ("dste", "sttr"):
        for objective_name in ("mgfd", "negative_contrastive"):
            encoder, objective = _pair(encoder_name, objective_name)
            step = TrainStep(encoder, objective, PretrainSpec(epochs=1, batch_size=16, precision="bf16"), CUDA)
            step.train()
            inputs = _inputs()  # the batch is on the device, as the loop's device-resident data
            step(_views(objective, encoder, inputs))  # warm-up: lazy initialisation may synchronise
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")  # any synchronisation below raises
            try:
                for stream in ("joint", "bone", "motion"):
                    views = _views(objective, encoder, inputs)
                    loss, logs = step([to_stream(v, stream, get_layout("ntu25")) for v in views])
            finally:
                torch.cuda.set_sync_debug_mode("default")
            assert torch.isfinite(loss)


def test_resume_on_cuda_is_bit_exact(tmp_path, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        train = generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)
        spec = PretrainSpec(epochs=3, batch_size=8, lr=1e-3, milestones=(2,), precision="fp32")

        class Stop(Exception):
            pass

        def run(workdir, stop=None):
            encoder, objective = _pair("dste", "mgfd", drop_path=0.1)

            def on_epoch(done, total, loss):
                if done == stop:
                    raise Stop

            pretrain(encoder, objective, train, spec,
                     PretrainTarget(workdir, 3, CUDA), TrainingOptions(tensorboard=False), on_epoch=on_epoch)
            return encoder

        ref = run(tmp_path / "ref")
        with pytest.raises(Stop):
            run(tmp_path / "resumed", stop=1)
        resumed = run(tmp_path / "resumed")
        for (name, a), b in zip(ref.state_dict().items(), resumed.state_dict().values()):
            assert torch.equal(a, b), name
    finally:
        torch.use_deterministic_algorithms(False)


def test_ddp_with_one_process_equals_the_plain_step():
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=CUDA)
    try:
        results = []
        for distributed in (False, True):
            encoder, objective = _pair("dste", "mgfd", drop_path=0.0)
            step = TrainStep(encoder, objective, PretrainSpec(epochs=1, batch_size=16, precision="fp32"), CUDA,
                             distributed=distributed)
            step.train()
            loss, _ = step.forward(_views(objective, encoder))
            step.backward(loss)
            results.append((loss.detach(), [p.grad.clone() for p in encoder.parameters() if p.grad is not None]))
        (l0, g0), (l1, g1) = results
        torch.testing.assert_close(l1, l0)
        for a, b in zip(g0, g1):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)
    finally:
        dist.destroy_process_group()


TINY = """\
name: cuda_tiny
version: 1
paper_table: table5_ablation
rows:
  - {id: "7", label: "DSTE, MG-FD with XC", encoder: dste, objective: mgfd}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, options: {seed: 0, num_classes: 5, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    encoder_options: {drop_path: 0.0}
    pretrain: {epochs: 2, batch_size: 25, lr: 1.0e-4, precision: fp32}
    evaluations:
      linear: {epochs: 20, batch_size: 64, lr: 0.5, milestones: [], eval_every: 5}
      knn: {k: 1}
"""


def test_a_tiny_protocol_on_cuda_gives_the_cpu_records(tmp_path):
    (tmp_path / "p.yaml").write_text(TINY)
    values = {}
    for device in ("cpu", "cuda"):
        result = subprocess.run([sys.executable, "-m", "usdrl_bench", "run", "p.yaml", "--device", device, "--jobs", "1",
                                 "--results", device, "--reports", f"rep-{device}", "--no-tensorboard"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        rows = [r for f in (tmp_path / device / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
        values[device] = {r["metric"]: r["value"] for r in rows}
    assert values["cpu"].keys() == values["cuda"].keys()
    for metric, value in values["cpu"].items():  # float differences may move a sample or two (of 75)
        assert abs(values["cuda"][metric] - value) <= 3.0, (metric, value, values["cuda"][metric])
    keys = [sorted(p.name for p in (tmp_path / d / "checkpoints").iterdir()) for d in ("cpu", "cuda")]
    assert keys[0] == keys[1]  # fp32 on both: the same checkpoint key
    a = torch.load(next((tmp_path / "cpu" / "checkpoints").glob("*/encoder.pt")), weights_only=True)["state_dict"]
    b = torch.load(next((tmp_path / "cuda" / "checkpoints").glob("*/encoder.pt")), weights_only=True)["state_dict"]
    worst = max(float((a[k].float() - b[k].float().cpu()).abs().max()) for k in a)
    assert worst < 1e-3, worst
