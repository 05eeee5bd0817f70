"""The official code of a peer, trained and linearly evaluated on NW-UCLA at the suite's CPU preset: the other
side of the official-code-versus-suite table (docs/reproduction.md).

Each run uses the method's own model, data feeder, augmentations, loss, optimiser, learning-rate schedule and
linear evaluation, on NW-UCLA cross-view as the suite reads it (``nwucla_xview`` with ``align: shoulders``,
``scaling: torso``: the same arrays), converted to the official loader's format:

* ``skeletonclr``: github.com/Levigty/AimCLR at 6cd73767 (its ``net/skeletonclr.py`` is CrosSCLR's SkeletonCLR
  without the cross-view branch, and its ``net/utils/graph.py`` has the ``nw-ucla`` graph that CrosSCLR's
  lacks), the model initialised by ``processor/pretrain.py``'s ``weights_init`` as ``PT_Processor.load_model`` does
  (after MoCo's copy, so the key encoder starts independent), with CrosSCLR's ``feeder.ntu_feeder.Feeder_dual`` at
  792b70c7 (temporal crop ratio 6, shear 0.5) on the sequences resized to the
  CPU preset's 32 frames (``train_position.npy``, ``train_label.pkl``); ``processor/pretrain_skeletonclr.py``'s
  loop (SGD lr 0.1, momentum 0.9, weight decay 1e-4, lr x0.1 after epoch 40, 48 epochs, batch 128, the last
  smaller batch dropped); ST-GCN hidden 8 / 128, queue 512; then ``processor/linear_evaluation.py`` (eval mode,
  SGD lr 3.0, x0.1 after epoch 80, 100 epochs, tested every 5; the final and the best top-1).
* ``mamp``: github.com/maoyunyao/MAMP at 09e6252a: ``feeder.feeder_ntu.Feeder`` (crop ratio U[0.5, 1] of the valid
  frames, at least 64, resized to 32; rotation U(-0.3, 0.3)) on an ``NW-UCLA.npz`` in its layout (``x_train``
  ``(N, T, M·V·C)``, one-hot ``y_train``); ``model_mamp/transformer.py`` (width 96, depth 4, 4 heads, decoder 96 x
  2, mask 0.9, tau 0.8); ``engine_pretrain.py``'s loop with ``util/lr_sched.py`` per iteration (AdamW (0.9,
  0.95), weight decay 0.05 off 1-D parameters, lr 1e-3, 5 warm-up epochs, cosine to 5e-4, 70 epochs, batch 128);
  then ``main_linprobe.py`` (``model/transformer.py``, BatchNorm probe, SGD lr 0.1, cosine per iteration, 100
  epochs, batch 128, rotation during probing, test crop 0.95, tested every epoch; the final and the best top-1).

Shims, none changing a computation: ``Tensor.cuda`` is the identity; the ST-GCN queue write is the first GPU's;
the MAMP feeder's hard-coded NTU reshape ``(N, T, 2, 25, 3)`` reads ``(N, T, 1, 20, 3)`` (a subclass overriding
``load_data``); empty ``h5py``, ``tensorboardX``, ``torchvision`` modules for imports the code never uses; fp32 on the
CPU (the official loops' autocast and GradScaler are CUDA's); on NumPy 2 MAMP's ``valid_crop_resize`` takes the
element of its 1-element random array (``int()`` of the array is refused; the same draw). Data loading runs in the
process (no workers).

    python benchmarks/official_nwucla.py convert --data-root ../shared/data --out /tmp/nwucla_official
    python benchmarks/official_nwucla.py run --method mamp --seed 0 --official /tmp/official \\
        --data /tmp/nwucla_official --out benchmarks/results/official_nwucla

Each run writes ``<method>-seed<k>.json``: the per-epoch pretraining loss, the probe's test top-1 at each
evaluation, the final and the best one, the wall time, the commit and the settings.
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

COMMITS = {"skeletonclr": ("github.com/Levigty/AimCLR", "6cd73767f17748792508647355fa324fa63e235d"),
           "mamp": ("github.com/maoyunyao/MAMP", "09e6252a5c7d061c226395d25e6aa47a69e7e58d")}
#: the suite's CPU presets (baselines/skeletonclr.py, baselines/mamp.py), as the official code takes them
SKELETONCLR = dict(frames=32, hidden_channels=8, hidden_dim=128, queue=512, epochs=48, step=[40], lr=0.1, batch=128,
                   le_epochs=100, le_lr=3.0, le_step=[80], le_batch=128, le_eval_every=5)
MAMP = dict(frames=32, dim=96, depth=4, heads=4, decoder_dim=96, decoder_depth=2, mask_ratio=0.9, tau=0.8, epochs=70,
            warmup=5, lr=1e-3, min_lr=5e-4, batch=128, lp_epochs=100, lp_lr=0.1, lp_batch=128)


def convert(data_root: Path, out: Path) -> None:
    """NW-UCLA cross-view as the suite reads it, in the two official loaders' formats."""
    from usdrl_bench.data.augment import resize_valid
    from usdrl_bench.data.loading import load_dataset

    train, test = load_dataset("nwucla_xview", None, "xview", data_root=data_root, align="shoulders", scaling="torso")
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("val", test)):
        x = torch.from_numpy(np.asarray(part.data, dtype=np.float32))
        resized = resize_valid(x, torch.from_numpy(np.asarray(part.num_frames)), SKELETONCLR["frames"]).numpy()
        np.save(out / f"{name}_position.npy", resized)  # (N, 3, 32, 20, 1): the family's fixed-length arrays
        with open(out / f"{name}_label.pkl", "wb") as f:
            pickle.dump((list(part.names), [int(v) for v in part.labels]), f)
    arrays = {}
    for key, part in (("train", train), ("test", test)):  # MAMP / CTR-GCN npz: (N, T, M·V·C), zero-padded; one-hot
        x = np.asarray(part.data, dtype=np.float32)  # (N, C, T, V, M)
        n, c, t, v, m = x.shape
        arrays[f"x_{key}"] = x.transpose(0, 2, 4, 3, 1).reshape(n, t, m * v * c)
        arrays[f"y_{key}"] = np.eye(part.num_classes, dtype=np.float32)[np.asarray(part.labels)]
    np.savez(out / "NW-UCLA.npz", **arrays)
    print(f"wrote {out}: train {len(train)}, test {len(test)}, classes {train.num_classes}")


def _shims() -> None:
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]
    for name in ("h5py", "tensorboardX", "torchvision"):
        sys.modules.setdefault(name, types.ModuleType(name))


def _official_function(path: Path, name: str):
    """One top-level function of an official script, its text unchanged (the scripts' module-level imports need
    tensorboardX and CUDA set-up)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"def {name}("))
    end = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    namespace: dict = {"torch": torch}
    exec(compile("\n".join(lines[start:end]) + "\n", str(path), "exec"), namespace)
    return namespace[name]


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --- SkeletonCLR (AimCLR's repository, torchlight processors) ----------------------------------------------------------
def run_skeletonclr(official: Path, data: Path, seed: int) -> dict:
    s = SKELETONCLR
    repo = official / "aimclr"
    SkeletonCLR, IO, Feeder_dual, _ = _skeletonclr_imports(official)
    _seed(seed)
    args = dict(base_encoder="net.st_gcn.Model", in_channels=3, hidden_channels=s["hidden_channels"],
                hidden_dim=s["hidden_dim"], dropout=0.5, graph_args={"layout": "nw-ucla", "strategy": "spatial"},
                edge_importance_weighting=True)
    model = SkeletonCLR(pretrain=True, feature_dim=128, queue_size=s["queue"], momentum=0.999, Temperature=0.07,
                        mlp=True, num_class=10, **args)
    model.apply(_official_function(repo / "processor" / "pretrain.py", "weights_init"))  # PT_Processor.load_model

    def enqueue(keys):  # the official body with the first GPU's index
        ptr = int(model.queue_ptr)
        model.queue[:, ptr:ptr + keys.shape[0]] = keys.T
    model._dequeue_and_enqueue = enqueue
    feeder = Feeder_dual(str(data / "train_position.npy"), str(data / "train_label.pkl"), shear_amplitude=0.5,
                         temperal_padding_ratio=6, mmap=False)
    loader = torch.utils.data.DataLoader(feeder, batch_size=s["batch"], shuffle=True, drop_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=s["lr"], momentum=0.9, nesterov=False, weight_decay=1e-4)
    losses = []
    t0 = time.perf_counter()
    for epoch in range(1, s["epochs"] + 1):  # processor.py: meta_info['epoch'] = epoch + 1 (1-based)
        lr = s["lr"] * (0.1 ** np.sum(epoch > np.array(s["step"])))  # adjust_lr
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        values = []
        for [data1, data2], _label in loader:  # pretrain_skeletonclr.py train()
            output, target = model(data1.float(), data2.float())
            model.update_ptr(output.size(0))
            loss = F.cross_entropy(output, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(loss.data.item())
        losses.append(float(np.mean(values)))
        print(f"skeletonclr seed {seed} epoch {epoch}: loss {losses[-1]:.4f}", flush=True)
    pretrain_s = time.perf_counter() - t0
    io = IO(str(data), save_log=False, print_log=False)
    ckpt = Path(data) / f"skeletonclr-seed{seed}.pt"
    io.save_model(model, ckpt.name)

    evaluations = skeletonclr_linear_eval(official, data, ckpt, seed)
    return {"pretrain_loss": losses, "pretrain_s": round(pretrain_s, 1), "evaluations": evaluations,
            "settings": {**s, "layout": "nw-ucla"}}


def _skeletonclr_imports(official: Path):
    sys.path[:0] = [str(official / "aimclr"), str(official / "crossclr" / "torchlight")]
    from net.skeletonclr import SkeletonCLR  # type: ignore[import-not-found]
    from torchlight import IO  # type: ignore[import-not-found]
    sys.path[0] = str(official / "crossclr")  # its feeder has Feeder_dual (AimCLR's has the triple one only)
    from feeder.ntu_feeder import Feeder_dual, Feeder_single  # type: ignore[import-not-found]
    return SkeletonCLR, IO, Feeder_dual, Feeder_single


def skeletonclr_linear_eval(official: Path, data: Path, ckpt: Path, seed: int) -> list[dict]:
    """``processor/linear_evaluation.py`` on a checkpoint in torchlight's format (the official pretraining's, or a
    suite checkpoint written by ``usdrl-bench export --method skeletonclr``): the test top-1 every 5 epochs."""
    s = SKELETONCLR
    SkeletonCLR, IO, _, Feeder_single = _skeletonclr_imports(official)
    repo = official / "aimclr"
    io = IO(str(data), save_log=False, print_log=False)
    args = dict(base_encoder="net.st_gcn.Model", in_channels=3, hidden_channels=s["hidden_channels"],
                hidden_dim=s["hidden_dim"], dropout=0.5, graph_args={"layout": "nw-ucla", "strategy": "spatial"},
                edge_importance_weighting=True)
    _seed(seed)
    lin = SkeletonCLR(pretrain=False, num_class=10, **args)

    lin.apply(_official_function(repo / "processor" / "linear_evaluation.py", "weights_init"))  # LE_Processor.load_model
    for name, param in lin.encoder_q.named_parameters():
        if name not in ["fc.weight", "fc.bias"]:
            param.requires_grad = False
    lin = io.load_weights(lin, str(ckpt), ["encoder_q.fc", "encoder_k", "queue"])
    train_loader = torch.utils.data.DataLoader(
        Feeder_single(str(data / "train_position.npy"), str(data / "train_label.pkl"), shear_amplitude=-1,
                      temperal_padding_ratio=-1, mmap=False), batch_size=s["le_batch"], shuffle=True, drop_last=True)
    test_loader = torch.utils.data.DataLoader(
        Feeder_single(str(data / "val_position.npy"), str(data / "val_label.pkl"), shear_amplitude=-1,
                      temperal_padding_ratio=-1, mmap=False), batch_size=s["le_batch"], shuffle=False)
    params = [p for p in lin.parameters() if p.requires_grad]
    assert len(params) == 2
    opt = torch.optim.SGD(params, lr=s["le_lr"], momentum=0.9, nesterov=False, weight_decay=0.0)
    evaluations = []
    for epoch in range(1, s["le_epochs"] + 1):
        lr = s["le_lr"] * (0.1 ** np.sum(epoch > np.array(s["le_step"])))
        for group in opt.param_groups:
            group["lr"] = lr
        lin.eval()
        for x, label in train_loader:
            loss = F.cross_entropy(lin(x.float()), label.long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % s["le_eval_every"] == 0:
            with torch.no_grad():
                pred = torch.cat([lin(x.float()).argmax(1) for x, _ in test_loader])
            labels = torch.tensor(test_loader.dataset.label)
            evaluations.append({"epoch": epoch, "top1": round(100 * float((pred == labels).float().mean()), 3)})
    return evaluations


# --- MAMP --------------------------------------------------------------------------------------------------------------
def _mamp_imports(official: Path):
    sys.path.insert(0, str(official / "mamp"))
    from feeder.feeder_ntu import Feeder  # type: ignore[import-not-found]
    from model.transformer import Transformer as Linprobe  # type: ignore[import-not-found]
    from model_mamp.transformer import Transformer  # type: ignore[import-not-found]
    from util import lr_sched  # type: ignore[import-not-found]
    from feeder import tools  # type: ignore[import-not-found]

    # NumPy 2 refuses int() of the 1-element array ``p = np.random.rand(1) * ...`` in valid_crop_resize: the same
    # draw, taken as its element (the function's text is otherwise unchanged)
    source = Path(tools.__file__).read_text()
    start = source.index("def valid_crop_resize")
    end = source.index("\ndef ", start + 1)
    namespace = dict(vars(tools))
    exec(source[start:end].replace("np.random.rand(1)*", "np.random.rand(1)[0]*"), namespace)
    tools.valid_crop_resize = namespace["valid_crop_resize"]

    class NWUCLAFeeder(Feeder):  # the official reshape is NTU's (N, T, 2, 25, 3)
        def load_data(self):
            npz = np.load(self.data_path)
            key = "train" if self.split == "train" else "test"
            self.data = npz[f"x_{key}"]
            self.label = np.where(npz[f"y_{key}"] > 0)[1]
            self.sample_name = [f"{key}_{i}" for i in range(len(self.data))]
            n, t, _ = self.data.shape
            self.data = self.data.reshape((n, t, 1, 20, 3)).transpose(0, 4, 1, 3, 2)

    return Transformer, Linprobe, NWUCLAFeeder, lr_sched


def mamp_linear_probe(official: Path, data: Path, state: dict, seed: int) -> list[dict]:
    """``main_linprobe.py`` on a MAMP model state (the official pretraining's, or the ``model`` of a suite
    checkpoint written by ``usdrl-bench export --method mamp``): the test top-1 after every epoch."""
    s = MAMP
    _, Linprobe, NWUCLAFeeder, lr_sched = _mamp_imports(official)
    npz = str(data / "NW-UCLA.npz")
    # main_linprobe.py
    _seed(seed)
    lin = Linprobe(dim_in=3, num_classes=10, dim_feat=s["dim"], depth=s["depth"], num_heads=s["heads"], mlp_ratio=4,
                   num_frames=s["frames"], num_joints=20, patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None,
                   drop_rate=0., attn_drop_rate=0., drop_path_rate=0., protocol="linprobe")
    checkpoint_model = dict(state)
    msg = lin.load_state_dict(checkpoint_model, strict=False)
    assert set(msg.missing_keys) == {"head.fc.weight", "head.fc.bias"}
    torch.nn.init.trunc_normal_(lin.head.fc.weight, std=0.01)  # main_linprobe: trunc_normal_(std=0.01)
    lin.head.fc = torch.nn.Sequential(torch.nn.BatchNorm1d(lin.head.fc.in_features, affine=False, eps=1e-6), lin.head.fc)
    for _, p in lin.named_parameters():
        p.requires_grad = False
    for _, p in lin.head.named_parameters():
        p.requires_grad = True
    train_lp = NWUCLAFeeder(npz, split="train", window_size=s["frames"], p_interval=[0.5, 1], random_rot=True,
                            use_mmap=False)
    test_lp = NWUCLAFeeder(npz, split="test", window_size=s["frames"], p_interval=[0.95], use_mmap=False)
    train_loader = torch.utils.data.DataLoader(train_lp, batch_size=s["lp_batch"], shuffle=True, drop_last=True)
    test_loader = torch.utils.data.DataLoader(test_lp, batch_size=s["lp_batch"], shuffle=False)
    opt = torch.optim.SGD(lin.head.parameters(), lr=s["lp_lr"], momentum=0.9, weight_decay=0)
    lp_sched = argparse.Namespace(lr=s["lp_lr"], min_lr=0.0, warmup_epochs=0, epochs=s["lp_epochs"])
    evaluations = []
    for epoch in range(s["lp_epochs"]):  # engine_linprobe.py: train_one_epoch, then evaluate
        lin.train()
        for step, (x, label, _) in enumerate(train_loader):
            lr_sched.adjust_learning_rate(opt, step / len(train_loader) + epoch, lp_sched)
            loss = F.cross_entropy(lin(x.float()), label.long())
            opt.zero_grad()
            loss.backward()
            opt.step()
        lin.eval()
        with torch.no_grad():
            pred = torch.cat([lin(x.float()).argmax(1) for x, _, _ in test_loader])
        labels = torch.from_numpy(test_lp.label)
        evaluations.append({"epoch": epoch + 1, "top1": round(100 * float((pred == labels).float().mean()), 3)})
    return evaluations


def run_mamp(official: Path, data: Path, seed: int) -> dict:
    s = MAMP
    Transformer, _, NWUCLAFeeder, lr_sched = _mamp_imports(official)
    _seed(seed)
    npz = str(data / "NW-UCLA.npz")
    train = NWUCLAFeeder(npz, split="train", window_size=s["frames"], p_interval=[0.5, 1], random_rot=True,
                         use_mmap=False)
    model = Transformer(dim_in=3, dim_feat=s["dim"], decoder_dim_feat=s["decoder_dim"], depth=s["depth"],
                        decoder_depth=s["decoder_depth"], num_heads=s["heads"], mlp_ratio=4, num_frames=s["frames"],
                        num_joints=20, patch_size=1, t_patch_size=4, qkv_bias=True, qk_scale=None, drop_rate=0.,
                        attn_drop_rate=0., drop_path_rate=0., norm_skes_loss=True)
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # timm's add_weight_decay
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.}, {"params": decay, "weight_decay": 0.05}],
                                  lr=s["lr"], betas=(0.9, 0.95))
    loader = torch.utils.data.DataLoader(train, batch_size=s["batch"], shuffle=True, drop_last=True)
    sched = argparse.Namespace(lr=s["lr"], min_lr=s["min_lr"], warmup_epochs=s["warmup"], epochs=s["epochs"])
    losses = []
    t0 = time.perf_counter()
    for epoch in range(s["epochs"]):  # engine_pretrain.py train_one_epoch
        model.train()
        values = []
        for step, (samples, _, _) in enumerate(loader):
            lr_sched.adjust_learning_rate(optimizer, step / len(loader) + epoch, sched)
            loss, _, _ = model(samples.float(), mask_ratio=s["mask_ratio"], motion_stride=1, motion_aware_tau=s["tau"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(loss.item())
        losses.append(float(np.mean(values)))
        print(f"mamp seed {seed} epoch {epoch + 1}: loss {losses[-1]:.4f}", flush=True)
    pretrain_s = time.perf_counter() - t0

    evaluations = mamp_linear_probe(official, data, model.state_dict(), seed)
    return {"pretrain_loss": losses, "pretrain_s": round(pretrain_s, 1), "evaluations": evaluations, "settings": s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="NW-UCLA as the suite reads it, in the official loaders' formats")
    c.add_argument("--data-root", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    r = sub.add_parser("run", help="one method and seed: official pretraining and linear evaluation")
    r.add_argument("--method", choices=sorted(COMMITS), required=True)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--official", type=Path, required=True, help="folder holding aimclr/, crossclr/, mamp/")
    r.add_argument("--data", type=Path, required=True, help="the output of convert")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--threads", type=int, default=1)
    q = sub.add_parser("probe", help="the official linear evaluation of a checkpoint in the method's official format "
                                     "(e.g. a suite checkpoint exported with usdrl-bench export)")
    q.add_argument("--method", choices=sorted(COMMITS), default="skeletonclr")
    q.add_argument("--checkpoint", type=Path, required=True)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--official", type=Path, required=True)
    q.add_argument("--data", type=Path, required=True)
    q.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.command == "convert":
        convert(args.data_root, args.out)
        return 0
    torch.set_num_threads(args.threads)
    _shims()
    if args.command == "probe":
        if args.method == "mamp":  # the file usdrl-bench export writes: {'model': ..., 'args': Namespace, ...}
            state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)["model"]
            evaluations = mamp_linear_probe(args.official.resolve(), args.data, state, args.seed)
        else:
            evaluations = skeletonclr_linear_eval(args.official.resolve(), args.data, args.checkpoint.resolve(), args.seed)
        top1 = [e["top1"] for e in evaluations]
        print(json.dumps({"checkpoint": str(args.checkpoint), "final_top1": top1[-1], "best_top1": max(top1),
                          "evaluations": top1}))
        return 0
    t0 = time.perf_counter()
    result = (run_skeletonclr if args.method == "skeletonclr" else run_mamp)(args.official.resolve(), args.data, args.seed)
    top1 = [e["top1"] for e in result["evaluations"]]
    repository, commit = COMMITS[args.method]
    result.update(method=args.method, seed=args.seed, repository=repository, commit=commit, torch=torch.__version__,
                  threads=args.threads, final_top1=top1[-1], best_top1=max(top1),
                  wall_s=round(time.perf_counter() - t0, 1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.method}-seed{args.seed}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{args.method} seed {args.seed}: final top-1 {top1[-1]:.2f}, best {max(top1):.2f} "
          f"({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
