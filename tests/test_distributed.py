"""Data-parallel pretraining (gloo, 2 processes on the CPU) equals one process on the global batch.

* the gathered loss, its gradients and the MoCo queue equal the single-process ones on the whole batch,
  also when the process count does not divide the batch (uneven shards, a rank holding none);
* GlobalBatchNorm equals BatchNorm on the whole batch (outputs, input gradients, running statistics);
* ``torchrun --nproc-per-node 2 -m usdrl_bench run`` writes the checkpoints and records of a 1-process run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from usdrl_bench.distributed import GlobalBatchNorm, convert_global_batchnorm, gather_with_grad
from usdrl_bench.encoders import create_encoder
from usdrl_bench.objectives import create_objective
from usdrl_bench.train.spec import PretrainSpec
from usdrl_bench.train.pretrain import TrainStep

WORLD = 2
BATCH = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _build(objective: str):
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny", drop_path=0.0, num_joints=25, num_bodies=2, in_channels=3)
    options = {"queue_size": 40, "proj_dim": 8} if objective == "negative_contrastive" else {}
    return encoder, create_objective(objective, encoder, **options)


def _views(k: int, batch: int = BATCH) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch, 3, 16, 25, 2, generator=g) for _ in range(k)]


def _step_worker(rank: int, port: int, objective: str, world: int, batch: int, out: dict) -> None:
    import torch.distributed as dist

    from usdrl_bench.distributed import batch_shards, shard_sizes

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        encoder, obj = _build(objective)
        step = TrainStep(encoder, obj, PretrainSpec(epochs=1, batch_size=batch, precision="fp32"), torch.device("cpu"),
                         distributed=True)
        step.train()
        sizes = shard_sizes(batch, world)
        start = sum(sizes[:rank])
        views = [v[start:start + sizes[rank]] for v in _views(obj.num_views, batch)]
        with batch_shards(sizes):
            loss, logs = step.forward(views)
            step.backward(loss)
        grads = {name: p.grad.numpy().copy() for name, p in step.module.module.named_parameters() if p.grad is not None}
        # the loss each rank reports: MG-FD's is the global one; InfoNCE's is the rank's share (mean over ranks)
        reported = loss.detach().reshape(1).clone()
        dist.all_reduce(reported)
        state = {k: v.numpy().copy() for k, v in obj.state_dict().items() if k in ("queue", "queue_ptr")}
        if rank == 0:
            out.update(loss=float(reported) / world, grads=grads, state=state)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn(target, *args, world: int = WORLD) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        port = _free_port()
        procs = [ctx.Process(target=target, args=(r, port, *args, out)) for r in range(world)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=240)
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        return dict(out)


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["mgfd", "negative_contrastive"])
@pytest.mark.parametrize("world,batch", [(2, BATCH), (2, 15), (3, 2)], ids=["even", "uneven-8-7", "a-rank-empty-1-1-0"])
def test_gathered_loss_and_gradients_equal_the_full_batch(objective, world, batch):
    encoder, obj = _build(objective)
    step = TrainStep(encoder, obj, PretrainSpec(epochs=1, batch_size=batch, precision="fp32"), torch.device("cpu"))
    step.train()
    loss, _ = step.forward(_views(obj.num_views, batch))
    step.backward(loss)
    ref = {name: p.grad for name, p in step.module.named_parameters() if p.grad is not None}
    ddp = _spawn(_step_worker, objective, world, batch, world=world)

    assert ddp["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert set(ddp["grads"]) == set(ref)
    # the DDP gradient is the full batch's: a missing or doubled rank factor, or per-rank BatchNorm
    # statistics, would be off by O(1) of the gradient's scale. (Gradients that are zero in exact arithmetic,
    # e.g. of a bias before BatchNorm, are float noise of about 1e-5 of the scale on both sides.)
    # A global batch of 2 is the exception: MG-FD's variance and covariance terms over two samples amplify float
    # rounding about a thousandfold (measured on one 2-core machine: 1.5e-3 of the scale in the encoder's
    # gradients, with one thread or two), so there the bound is 1e-2 of the scale, still far below O(1).
    scale = max(float(g.abs().max()) for g in ref.values())
    atol = (1e-2 if batch <= 2 and objective == "mgfd" else 1e-4) * scale
    for name, g in ref.items():
        torch.testing.assert_close(torch.from_numpy(ddp["grads"][name]), g, rtol=1e-4, atol=atol, msg=name)
    if objective == "negative_contrastive":  # every rank enqueued the keys of the whole batch, in order
        np.testing.assert_allclose(ddp["state"]["queue"], obj.queue.numpy(), atol=1e-6)
        assert int(ddp["state"]["queue_ptr"]) == int(obj.queue_ptr) == batch


def _bn_worker(rank: int, port: int, world: int, batch: int, out: dict) -> None:
    import torch.distributed as dist

    from usdrl_bench.distributed import batch_shards, gather, shard_sizes

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        x = torch.randn(batch, 6) * 3 + 1
        bn = convert_global_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(6)))[0]
        assert isinstance(bn, GlobalBatchNorm)
        with torch.no_grad():
            bn.weight.copy_(torch.linspace(0.5, 2, 6))
        sizes = shard_sizes(batch, world)
        start = sum(sizes[:rank])
        local = x[start:start + sizes[rank]].clone().requires_grad_(True)
        with batch_shards(sizes):
            y = bn(local)
            # a loss of the global batch: gather the outputs, as the objectives do
            (gather_with_grad(y) * torch.arange(batch * 6).reshape(batch, 6)).pow(2).sum().backward()
            grads, outs = gather(local.grad), gather(y)
        if rank == 0:
            out.update(y=outs.numpy(), grad=grads.numpy() / world,
                       mean=bn.running_mean.numpy().copy(), var=bn.running_var.numpy().copy(),
                       weight_grad=bn.weight.grad.numpy().copy())
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize("world,batch", [(2, BATCH), (2, 15), (3, 2)], ids=["even", "uneven-8-7", "a-rank-empty-1-1-0"])
def test_global_batchnorm_equals_batchnorm_on_the_whole_batch(world, batch):
    torch.manual_seed(0)
    x = (torch.randn(batch, 6) * 3 + 1).requires_grad_(True)
    bn = torch.nn.BatchNorm1d(6)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(0.5, 2, 6))
    y = bn(x)
    (y * torch.arange(batch * 6).reshape(batch, 6)).pow(2).sum().backward()
    ddp = _spawn(_bn_worker, world, batch, world=world)
    np.testing.assert_allclose(ddp["y"], y.detach().numpy(), atol=1e-5)
    # each rank's input gradient carries the world-size factor that DDP's average removes
    np.testing.assert_allclose(ddp["grad"], x.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ddp["mean"], bn.running_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(ddp["var"], bn.running_var.numpy(), rtol=1e-5)  # unbiased, global
    # a rank's BatchNorm weight gradient is W x its rows' share; DDP averages the ranks' into the full one
    assert ddp["weight_grad"].shape == (6,)


def test_gather_is_the_identity_outside_a_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    bn = GlobalBatchNorm(2)
    ref = torch.nn.BatchNorm1d(2)
    torch.testing.assert_close(bn(x), ref(x))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("batch", [11, 13], ids=["odd-batches-last-7", "last-batch-1-sample"])
def test_torchrun_two_processes_write_the_single_process_checkpoints_and_records(tiny_protocol, tmp_path, batch):
    """40 training samples: batch 11 gives batches 11, 11, 11, 7 (each split 6/5 or 4/3 across the two
    processes), batch 13 gives 13, 13, 13 and a last batch of 1 sample (left out by both runs: batch
    statistics need 2). Each data-parallel run trains each checkpoint once, under the single-process key,
    and its records name that checkpoint."""
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(tiny_protocol(
        "ddp_tiny", ("7", "4"), pretrain="epochs: 2, batch_size: 20, lr: 5.0e-6",
        dataset="seed: 0, num_classes: 5, num_subjects: 4, num_cameras: 2, samples_per_class_subject_camera: 2",
        preset="encoder_options: {drop_path: 0.0}\nobjective_options: {negative_contrastive: {queue_size: 60, proj_dim: 8}}"))
    common = ("--set", f"presets.demo.pretrain.batch_size={batch}", "--no-tensorboard")
    one = _cli("-m", "usdrl_bench", "run", str(protocol), "--results", "one", "--reports", "rep1", "--jobs", "1",
               *common, cwd=tmp_path)
    two = _cli("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "usdrl_bench", "run",
               str(protocol), "--results", "two", "--reports", "rep2", *common, cwd=tmp_path)
    assert "data-parallel on 2 processes (gloo)" in two.stderr
    for out in (one, two):
        assert "checkpoints: 2 trained by this run" in out.stderr
    one_ckpts = sorted(p.name for p in (tmp_path / "one" / "checkpoints").iterdir())
    two_ckpts = sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir())
    assert one_ckpts == two_ckpts and len(one_ckpts) == 2  # same keys: the world size is not part of them
    steps = {11: 4, 13: 3}[batch]
    for key in two_ckpts:  # trained once: one folder per row, one log row per step and epoch
        logs = [pd.read_csv(tmp_path / run / "checkpoints" / key / "train_log.csv") for run in ("one", "two")]
        assert len(logs[1]) == 2 * steps
        # every step saw the same global batch: the same loss step by step (the CSV keeps 4 decimals)
        np.testing.assert_allclose(logs[1]["loss"], logs[0]["loss"], rtol=0, atol=2e-4)
    for key in one_ckpts:
        a = torch.load(tmp_path / "one" / "checkpoints" / key / "encoder.pt", weights_only=True)
        b = torch.load(tmp_path / "two" / "checkpoints" / key / "encoder.pt", weights_only=True)
        assert b["world_size"] == 2 and a["world_size"] == 1
        worst = max(float((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max()) for k in a["state_dict"])
        assert worst <= 1e-4, (key, worst)
        # the logged losses are the global batch's on both
        assert [h["loss"] for h in a["history"]] == pytest.approx([h["loss"] for h in b["history"]], rel=1e-5)

    def records(root: Path) -> dict:
        rows = [r for f in sorted((root / "records").rglob("*.json")) for r in json.loads(f.read_text())["rows"]]
        assert {r["checkpoint_hash"] for r in rows} == set(two_ckpts)  # the records name the trained checkpoints
        return {(r["row_id"], r["metric"]): r["value"] for r in rows}

    assert records(tmp_path / "one") == records(tmp_path / "two")
