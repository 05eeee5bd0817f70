"""Pretraining step of each peer plug-in against its official model and loss: samples/s side by side, one process
per method (the ST-GCN repositories share module names), interleaved rounds, medians and the ratio.

The same views go through one optimisation step (forward, loss, backward, optimiser) of:

* ``suite``: :class:`usdrl_bench.train.pretrain.TrainStep` as the pretraining loop runs it, with the method's
  objective (CMD's motion and bone streams computed from the two views inside the step, as the official model does);
* ``official``: the method's own model and the loss of its own training loop (SkeletonCLR: CrosSCLR
  ``net/skeletonclr.py`` with ``processor/pretrain_skeletonclr.py``'s loss; AimCLR: ``net/aimclr.py`` with
  ``processor/pretrain_aimclr.py``'s, before mining; MAMP: ``model_mamp/transformer.py`` with AdamW as
  ``main_pretrain.py``; CMD: ``moco/builder_cmd.py`` with ``pretrain_moco_cmd.py``'s loss), including the
  ``.item()`` reads of each official loop. The official repositories are not part of this project:
  ``--official PATH`` is a folder holding ``crossclr/``, ``aimclr/``, ``mamp/``, ``cmd/`` (each exported with
  ``git archive`` at the commit in ``tests/fixtures/official_peers/generate.py``, whose CPU shims are applied:
  ``Tensor.cuda`` the identity, the queue write of one GPU, empty ``torchvision`` / ``h5py`` modules).

Sizes (``--size``): ``cpu``, the methods' ``cpu`` presets on NTU-shaped input (25 joints, 2 persons), and
``paper``, the published configurations; the batch is ``--batch``. fp32 on the CPU with the threads given.

    python benchmarks/peer_step.py --official /tmp/official --out benchmarks/results/peer_step_cpu.json
    python benchmarks/peer_step.py --official /tmp/official --size paper --batch 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

METHODS = ("skeletonclr", "aimclr", "mamp", "cmd")
SIZES = {
    "cpu": {"stgcn": dict(hidden_channels=8, hidden_dim=128, frames=32), "queue": 512,
            "mamp": dict(dim=96, depth=4, heads=4, frames=32, decoder_dim=96, decoder_depth=2),
            "cmd": dict(hidden=128, layers=3, frames=32, topk=256)},
    "paper": {"stgcn": dict(hidden_channels=16, hidden_dim=256, frames=50), "queue": 32768,
              "mamp": dict(dim=256, depth=8, heads=8, frames=120, decoder_dim=256, decoder_depth=3),
              "cmd": dict(hidden=1024, layers=3, frames=64, topk=8192)},
}


def _views(n: int, batch: int, frames: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn((batch, 3, frames, 25, 2), generator=g) * 0.3 for _ in range(n)]


# --- the suite ------------------------------------------------------------------------------------------------------
def suite_step(method: str, size: dict, batch: int):
    from usdrl_bench import create_encoder, get_layout, to_stream
    from usdrl_bench.components import load_builtins
    from usdrl_bench.methods.shipped import load_shipped_baselines
    from usdrl_bench.registry import OBJECTIVES
    from usdrl_bench.train.pretrain import TrainStep
    from usdrl_bench.train.spec import PretrainSpec

    load_builtins()
    load_shipped_baselines()
    torch.manual_seed(0)
    if method in ("skeletonclr", "aimclr"):
        s = size["stgcn"]
        encoder = create_encoder("stgcn", None, hidden_channels=s["hidden_channels"], hidden_size=s["hidden_dim"],
                                 num_frames=s["frames"], num_joints=25, num_bodies=2)
        objective = OBJECTIVES.get(method)(encoder, queue_size=size["queue"])
        spec = PretrainSpec(epochs=1, batch_size=batch, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
        n, prepare = (2 if method == "skeletonclr" else 3), list
    elif method == "mamp":
        s = size["mamp"]
        encoder = create_encoder("mamp_vit", None, hidden_size=s["dim"], num_layers=s["depth"], num_heads=s["heads"],
                                 num_frames=s["frames"], num_joints=25, num_bodies=2)
        objective = OBJECTIVES.get("mamp")(encoder, decoder_dim=s["decoder_dim"], decoder_depth=s["decoder_depth"],
                                           decoder_heads=s["heads"])
        spec = PretrainSpec(epochs=1, batch_size=batch, optimizer="adamw", lr=1e-3, betas=[0.9, 0.95],
                            weight_decay=0.05, no_decay_1d=True)
        n, prepare = 1, list
    else:
        s = size["cmd"]
        encoder = create_encoder("bigru", None, hidden_size=s["hidden"], num_layers=s["layers"], num_frames=s["frames"],
                                 num_joints=25, num_bodies=2)
        objective = OBJECTIVES.get("cmd")(encoder, queue_size=size["queue"], topk=s["topk"])
        spec = PretrainSpec(epochs=1, batch_size=batch, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4)
        layout = get_layout("ntu25")
        n = 2

        def prepare(views):  # motion and bone of each view, inside the step (as the official forward)
            return [to_stream(v, m, layout) for v in views for m in ("joint", "motion", "bone")]
    step = TrainStep(encoder, objective, spec, torch.device("cpu"))
    step.train()

    def run(views):
        loss, _ = step(prepare(views))
        return loss

    return run, n


# --- the official code ----------------------------------------------------------------------------------------------
def _shims() -> None:
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    for name in ("torchvision", "h5py"):
        sys.modules.setdefault(name, types.ModuleType(name))


def official_step(method: str, size: dict, batch: int, root: Path):
    _shims()
    torch.manual_seed(0)
    if method in ("skeletonclr", "aimclr"):
        repo = root / ("crossclr" if method == "skeletonclr" else "aimclr")
        sys.path[:0] = [str(repo), str(root / "crossclr" / "torchlight")]
        module = __import__(f"net.{method}", fromlist=["x"])
        cls = module.SkeletonCLR if method == "skeletonclr" else module.AimCLR
        s = size["stgcn"]
        model = cls(base_encoder="net.st_gcn.Model", pretrain=True, feature_dim=128, queue_size=size["queue"],
                    momentum=0.999, Temperature=0.07, mlp=True, in_channels=3, hidden_channels=s["hidden_channels"],
                    hidden_dim=s["hidden_dim"], num_class=60, dropout=0.5,
                    graph_args={"layout": "ntu-rgb+d", "strategy": "spatial"}, edge_importance_weighting=True)

        def enqueue(keys):  # the official body with the first GPU's index
            ptr = int(model.queue_ptr)
            model.queue[:, ptr:ptr + keys.shape[0]] = keys.T
        model._dequeue_and_enqueue = enqueue
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

        def run(views):
            if method == "skeletonclr":
                output, target = model(views[0], views[1])
                model.update_ptr(output.size(0))
                loss = F.cross_entropy(output, target)
            else:
                output1, target1, output2, output3, target2 = model(*views)
                model.update_ptr(output1.size(0))
                loss = F.cross_entropy(output1, target1) + (
                    -torch.mean(torch.sum(torch.log(output2) * target2, dim=1))
                    - torch.mean(torch.sum(torch.log(output3) * target2, dim=1))) / 2.
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.data.item()
            return loss
        return run, (2 if method == "skeletonclr" else 3)
    if method == "mamp":
        sys.path.insert(0, str(root / "mamp"))
        from model_mamp.transformer import Transformer  # type: ignore[import-not-found]
        s = size["mamp"]
        model = Transformer(dim_in=3, dim_feat=s["dim"], decoder_dim_feat=s["decoder_dim"], depth=s["depth"],
                            decoder_depth=s["decoder_depth"], num_heads=s["heads"], mlp_ratio=4, num_frames=s["frames"],
                            num_joints=25, patch_size=1, t_patch_size=4, norm_skes_loss=True)
        decay, no_decay = [], []
        for name, p in model.named_parameters():  # timm's add_weight_decay
            (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
        optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.}, {"params": decay, "weight_decay": 0.05}],
                                      lr=1e-3, betas=(0.9, 0.95))
        model.train()

        def run(views):
            loss, _, _ = model(views[0], mask_ratio=0.9, motion_stride=1, motion_aware_tau=0.8)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
            return loss
        return run, 1
    sys.path.insert(0, str(root / "cmd"))
    from moco.builder_cmd import MoCo  # type: ignore[import-not-found]
    s = size["cmd"]
    model = MoCo("graph-based", {"en_input_size": 150, "en_hidden_size": s["hidden"], "en_num_layers": s["layers"],
                                 "num_class": 128}, dim=128, K=size["queue"], m=0.999, T=0.07, teacher_T=0.05,
                 student_T=0.1, cmd_weight=1.0, topk=s["topk"], mlp=True)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), 0.01, momentum=0.9, weight_decay=1e-4)

    def run(views):
        output, output_motion, output_bone, target, loss_sim = model(views[0], views[1])
        loss = (F.cross_entropy(output, target) + F.cross_entropy(output_motion, target)
                + F.cross_entropy(output_bone, target) + loss_sim)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for value in (loss, loss_sim):
            value.item()
        return loss
    return run, 2


def frames_of(method: str, size: dict) -> int:
    return size["stgcn"]["frames"] if method in ("skeletonclr", "aimclr") else size[method]["frames"]


def measure(method: str, args: argparse.Namespace) -> list[dict]:
    size = SIZES[args.size]
    variants = {"suite": suite_step(method, size, args.batch)}
    if args.official is not None:
        variants["official"] = official_step(method, size, args.batch, args.official.resolve())
    n = variants["suite"][1]
    views = _views(n, args.batch, frames_of(method, size))
    for fn, _ in variants.values():
        for _ in range(args.warmup):
            fn(views)
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.repeats):
        for key, (fn, _) in variants.items():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                fn(views)
            rates[key].append(args.steps * args.batch / (time.perf_counter() - t0))
    reference = statistics.median(rates["official"]) if "official" in rates else None
    return [{"method": method, "size": args.size, "batch": args.batch, "variant": key,
             "samples_per_s": round(statistics.median(v), 3),
             "vs_official": round(statistics.median(v) / reference, 3) if reference else None,
             "rounds": [round(x, 3) for x in v]} for key, v in rates.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, default=None, help="folder of the official repositories (optional)")
    parser.add_argument("--method", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="steps per round (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process: one method, JSON out
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure(args.method[0], args)))
        return 0
    rows = []
    for method in args.method:  # one process each: the official ST-GCN repositories share module names
        argv = [sys.executable, __file__, "--one", "--method", method, "--size", args.size, "--batch", str(args.batch),
                "--threads", str(args.threads), "--steps", str(args.steps), "--repeats", str(args.repeats),
                "--warmup", str(args.warmup)] + (["--official", str(args.official)] if args.official else [])
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        for row in result:
            ratio = f"{row['vs_official']:.2f}x" if row["vs_official"] else "-"
            print(f"{method:11s} {row['variant']:8s} {row['samples_per_s']:9.2f} samples/s  {ratio:>6s} official   "
                  "rounds " + " ".join(f"{v:.1f}" for v in row["rounds"]), flush=True)
        rows += result
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "size": args.size,
                                        "batch": args.batch, "steps": args.steps, "repeats": args.repeats,
                                        "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
