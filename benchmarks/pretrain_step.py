"""Pretraining step of the suite against the official USDRL code: samples/s side by side in one process.

The same 4 views (random skeletons ``(B, 3, T, 25, 2)``) go through one optimisation step — forward of the
encoder and the three projectors on every view, the MG-FD loss, backward, Adam — of:

* ``suite``: :class:`usdrl_bench.train.pretrain.TrainStep` exactly as the pretraining loop runs it
  (MG-FD objective, official defaults: one encoder pass per view);
* ``suite concat``: the same with ``concat_views: true`` (one encoder pass on the 4 views concatenated;
  DSTE and STTR have no batch-coupled layer, so the loss is the same up to DropPath draws);
* ``official`` (only with ``--official PATH``, a checkout of https://github.com/wengwanjiang/USDRL, which this
  project does not contain): ``model/DSTE.py`` or ``model/STTR.py``'s ``USDRL`` and the loss of its
  ``pretrain.py`` (``model/loss.py``: similarity, ``v_ac``, ``cal_xc``; weights 5 / 1 / 1e-3; the four
  ``.item()`` reads of its loop), Adam (lr 5e-4, weight decay 1e-5).

fp32 on the CPU with the threads given; official drop-path defaults on both sides. Rounds are interleaved
(suite, suite concat, official, then again), each round times ``--steps`` steps after warm-up; the table
gives the median samples/s and the ratio to the official code.

    python benchmarks/pretrain_step.py --official ../USDRL                       # both configurations
    python benchmarks/pretrain_step.py --official ../USDRL --config dste-paper --repeats 7
    python benchmarks/pretrain_step.py                                           # the suite's variants only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

#: the configurations of the issue: DSTE at the paper size (hidden 1024, T 64) with batch 8, STTR hidden 256 batch 32
CONFIGS = {
    "dste-paper": {"encoder": "dste", "hidden": 1024, "frames": 64, "batch": 8},
    "sttr-256": {"encoder": "sttr", "hidden": 256, "frames": 64, "batch": 32},
}


def make_views(batch: int, frames: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, 3, frames, 25, 2, generator=g) for _ in range(4)]


def suite_step(config: dict, concat: bool):
    from usdrl_bench.encoders import create_encoder
    from usdrl_bench.objectives import create_objective
    from usdrl_bench.train.spec import PretrainSpec
    from usdrl_bench.train.pretrain import TrainStep

    torch.manual_seed(0)
    encoder = create_encoder(config["encoder"], "paper", hidden_size=config["hidden"], num_frames=config["frames"],
                             in_channels=3, num_joints=25, num_bodies=2)
    objective = create_objective("mgfd", encoder, concat_views=concat)
    step = TrainStep(encoder, objective, PretrainSpec(epochs=1, batch_size=config["batch"], precision="fp32"),
                     torch.device("cpu"))
    step.train()
    return lambda views: step(views)


def official_step(config: dict, root: Path):
    sys.path.insert(0, str(root))
    try:
        if config["encoder"] == "dste":
            from model.DSTE import USDRL  # type: ignore[import-not-found]
        else:
            from model.STTR import USDRL  # type: ignore[import-not-found]
        from model.loss import cal_xc, similarity, v_ac  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(root))
    torch.manual_seed(0)
    h = config["hidden"]
    kwargs = dict(t_input_size=150, s_input_size=192, hidden_size=h, num_head=1, num_layer=2)
    model = USDRL(**kwargs)
    model.train()
    criterion = torch.nn.MSELoss()
    optimizer = torch.optim.Adam(model.parameters(), 5e-4, weight_decay=1e-5)
    ws = {"sim": 5, "vac": 1.0, "xcorr": 1e-3}

    def step(views):  # pretrain.py's train(), without the DataLoader and GradScaler (fp32 on the CPU)
        optimizer.zero_grad()
        z_t_list, z_s_list, z_i_list = model(*views)
        sim = similarity(z_i_list, criterion) + 0.5 * (similarity(z_t_list, criterion) + similarity(z_s_list, criterion))
        vac_i = sum(v_ac(x) for x in z_i_list)
        vac = vac_i + 0.5 * (sum(v_ac(x) for x in z_t_list) + sum(v_ac(x) for x in z_s_list))
        xcorr = cal_xc(z_i_list) + 0.5 * (cal_xc(z_s_list) + cal_xc(z_t_list))
        loss = sim * ws["sim"] + vac * ws["vac"] + xcorr * ws["xcorr"]
        loss.item(), vac.item(), sim.item(), xcorr.item()
        loss.backward()
        optimizer.step()

    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", type=Path, default=None, help="checkout of wengwanjiang/USDRL (optional)")
    parser.add_argument("--config", nargs="+", choices=sorted(CONFIGS), default=sorted(CONFIGS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--steps", type=int, default=3, help="steps per round (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.config:
        config = CONFIGS[name]
        views = make_views(config["batch"], config["frames"])
        variants = {"suite": suite_step(config, False), "suite concat": suite_step(config, True)}
        if args.official is not None:
            variants["official"] = official_step(config, args.official.resolve())
        for fn in variants.values():
            for _ in range(args.warmup):
                fn(views)
        rates: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for key, fn in variants.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn(views)
                rates[key].append(args.steps * config["batch"] / (time.perf_counter() - t0))
        reference = statistics.median(rates["official"]) if "official" in rates else None
        for key, values in rates.items():
            median = statistics.median(values)
            rows.append({"config": name, **config, "variant": key, "samples_per_s": round(median, 3),
                         "vs_official": round(median / reference, 3) if reference else None,
                         "rounds": [round(v, 3) for v in values]})
            ratio = f"{median / reference:.2f}x" if reference else "-"
            print(f"{name:11s} {key:13s} {median:8.2f} samples/s  {ratio:>6s} official   rounds "
                  + " ".join(f"{v:.2f}" for v in values), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"threads": args.threads, "torch": torch.__version__, "steps": args.steps,
                                        "repeats": args.repeats, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
