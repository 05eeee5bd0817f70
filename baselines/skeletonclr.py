"""SkeletonCLR and AimCLR: MoCo v2 on ST-GCN (objectives ``skeletonclr``, ``aimclr``; methods of the same names).

* **SkeletonCLR** (Li et al., "3D Human Action Representation Learning via Cross-View Consistency
  Pursuit", CVPR 2021; github.com/LinguoLi/CrosSCLR at 792b70c7, ``net/skeletonclr.py``): a query and a
  momentum key ST-GCN (``baselines.stgcn``), projector ``Linear(256, 256)-ReLU-Linear(256, 128)``, L2-normalised,
  InfoNCE of the query against its key and a queue (K 32768, momentum 0.999, temperature 0.07). Views: the
  whole valid sequence resized to 50 frames, then ``temperal_crop`` (T // 6 mirrored frames padded at both
  ends, a random window of T) and ``shear`` (off-diagonals U(-0.5, 0.5)). SGD lr 0.1, momentum 0.9, weight
  decay 1e-4, batch 128, 300 epochs, lr x0.1 at 250.
* **AimCLR** (Guo et al., "Contrastive Learning from Extremely Augmented Skeleton Sequences for
  Self-supervised Action Recognition", AAAI 2022; github.com/Levigty/AimCLR at 6cd73767, ``net/aimclr.py``,
  ``net/att_drop.py``, ``feeder/tools.py``): a third, *extreme* view (the normal view, then a left/right
  flip p 0.5, a rotation of one random main axis by U(0, 30) degrees and the others by U(0, 1), Gaussian
  noise std 0.01 p 0.5, a Gaussian blur along time (kernel 15, sigma U(0.1, 2)) p 0.5, one coordinate axis
  zeroed p 0.5); the energy-based attention-guided drop (EADM: SimAM energy on the last ST-GCN map, joints
  and (channel·joint, frame) positions with attention >= 0.7 zeroed, rescaled); the D3M loss
  ``CE(l, 0) + 1/2 [H(softmax(l.detach()), l_e) + H(softmax(l.detach()), l_ed)]``; and from
  ``mining_epoch`` (150) the nearest-neighbour mining: the top-1 queue entry of each of the three queries
  becomes a positive of a multi-positive InfoNCE.

Initialisation: the family's processors build the MoCo model (the key encoder a copy of the query encoder) and
then apply ``weights_init`` to all of it (``processor/pretrain.py``: N(0, 0.02) weights, N(1, 0.02) BatchNorm
scales), which draws the key encoder and its projector anew: they start independent of the query side and follow
it only through the momentum update (at momentum 0.999, 71 % of the initial key weights remain after 336 steps).
``key_init: independent`` (the default) does the same; ``copy`` is MoCo's copy.

Reproduced: the above, as the code computes it. Simplified: the data pipeline is the suite's (the family's
``NTUMotionProcessor`` centres on the spine-shoulder and rotates every frame's shoulders parallel to x; here
the dataset's preprocessing stands), the rotation matrices act on row vectors in the order x, y, z (the
signs of AimCLR's matrices were not checked), a batch need not divide the queue. Every random number is
drawn from the per-sample keys, so data-parallel runs see one process's views.

Official checkpoints (:data:`SKELETONCLR_FORMAT`, :data:`AIMCLR_FORMAT`): torchlight's ``IO.save_model`` writes the
pretraining model's flat state dict (``module.`` removed): the query encoder ``encoder_q.*`` (its projector
``encoder_q.fc.*``), ``encoder_k.*``, ``queue`` ``(dim, K)`` and ``queue_ptr``. The encoder loads from
``encoder_q.*`` alone (a linear-evaluation file's ``encoder_q.fc`` classifier is left out); a pretraining file also
gives the objective. Features, losses, the mined positives, gradients and one SGD step equal the official code's
(tests/test_official_peers.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from collections import OrderedDict
from typing import Any, Mapping

from baselines.moco import (KeyQueue, axis_rotations, moco_logits, momentum_copy, momentum_update,
                            official_queue_transforms)
from baselines.stgcn import STGCN_OFFICIAL_ARGS, family_init, official_stgcn_name, stgcn_from_official
from usdrl_bench import (CheckpointMismatchError, Objective, OfficialFormat, OfficialModel, batch_mean, load_renamed,
                         register_method, register_objective, renamed_state, resize_valid, shaping_args, shear,
                         strip_module_prefix)

__all__ = ["SkeletonCLR", "AimCLR", "temporal_crop", "extreme_augment", "energy_drop", "d3m_loss", "mined_positives",
           "SKELETONCLR_FORMAT", "AIMCLR_FORMAT"]


def temporal_crop(x: Tensor, draw, padding_ratio: int = 6) -> Tensor:
    """AimCLR ``temperal_crop``: ``T // padding_ratio`` frames mirrored at both ends, a window of T frames
    from a start uniform in ``[0, 2 * pad]``. ``x (N, C, T, V, M)``; ``draw(shape)`` gives U[0, 1)."""
    n, c, t, v, m = x.shape
    pad = t // padding_ratio
    if pad == 0:
        return x
    start = (draw((n,)) * (2 * pad + 1)).long().clamp(max=2 * pad)
    p = start[:, None] + torch.arange(t, device=x.device)[None]
    src = torch.where(p < pad, pad - 1 - p, torch.where(p < pad + t, p - pad, t - 1 - (p - pad - t)))
    return x.gather(2, src[:, None, :, None, None].expand(n, c, t, v, m))


def normal_view(x: Tensor, num_frames: Tensor, out_frames: int, draw, shear_amplitude: float = 0.5) -> Tensor:
    """The family's normal augmentation of the resized sequence: temporal crop, then shear."""
    view = temporal_crop(resize_valid(x, num_frames, out_frames), draw)
    return shear(view, draw, magnitude=shear_amplitude)


def _rotation(angles: Tensor) -> Tensor:
    """``(N, 3)`` angles (radians) about x, y, z -> row-vector matrices ``Rx Ry Rz`` ``(N, 3, 3)``."""
    rx, ry, rz = axis_rotations(angles)
    return rx @ ry @ rz


def _normal(shape: tuple[int, ...], draw) -> Tensor:
    """Standard normal numbers from two uniform draws (Box-Muller)."""
    u1, u2 = draw(shape), draw(shape)
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos(2 * math.pi * u2)


def extreme_augment(x: Tensor, draw, flip_index: Tensor | None, *, max_degrees: float = 30.0, noise_std: float = 0.01,
                    blur_kernel: int = 15, blur_sigma: tuple[float, float] = (0.1, 2.0)) -> Tensor:
    """AimCLR's extreme augmentations ``'12345'`` after the normal ones (module docstring), per sample.

    Args:
        x: ``(N, 3, T, V, M)`` normal views.
        draw: ``draw(shape) -> U[0, 1)`` (from :class:`usdrl_bench.SampleKeys`).
        flip_index: ``(V,)`` joint permutation of a left/right flip (None: no flip).
    Returns:
        ``(N, 3, T, V, M)``.
    """
    n, c, t, v, m = x.shape
    if flip_index is not None:  # 1. spatial flip, p 0.5
        flip = draw((n,)) < 0.5
        x = torch.where(flip[:, None, None, None, None], x[:, :, :, flip_index], x)
    main = (draw((n,)) * 3).long().clamp(max=2)  # 2. rotation: main axis U(0, 30) degrees, the others U(0, 1)
    spans = torch.where(torch.arange(3, device=x.device)[None] == main[:, None], max_degrees, 1.0)
    matrix = _rotation(torch.deg2rad(draw((n, 3)) * spans))
    x = torch.einsum("nctvm,ncd->ndtvm", x, matrix)
    noisy = draw((n,)) < 0.5  # 3. Gaussian noise
    x = x + noisy[:, None, None, None, None] * noise_std * _normal(tuple(x.shape), draw)
    blur = draw((n,)) < 0.5  # 4. Gaussian blur along time (zero padding, as conv2d with padding)
    sigma = blur_sigma[0] + (blur_sigma[1] - blur_sigma[0]) * draw((n,))
    r = blur_kernel // 2
    offsets = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (N, k)
    padded = F.pad(x, (0, 0, 0, 0, r, r))
    blurred = sum(kernel[:, i, None, None, None, None] * padded[:, :, i:i + t] for i in range(blur_kernel))
    x = torch.where(blur[:, None, None, None, None], blurred, x)
    masked = draw((n,)) < 0.5  # 5. one coordinate axis zeroed
    axis = (draw((n,)) * 3).long().clamp(max=2)
    zero = masked[:, None] & (torch.arange(c, device=x.device)[None] == axis[:, None])  # (N, C)
    return x * (~zero)[:, :, None, None, None]


def energy_drop(feature_map: Tensor, keep_prob: float = 0.7, e_lambda: float = 1e-4) -> Tensor:
    """AimCLR's EADM (``Simam_Drop``) on ``(N·M, C, T, V)``: SimAM energy
    ``y = (x - mu)^2 / (4 (sum (x - mu)^2 / (T V - 1) + lambda)) + 0.5`` per channel, attention
    ``sigmoid(y)``; joints whose mean attention is >= ``keep_prob`` are zeroed, then every (channel·joint,
    frame) position whose attention is >= ``keep_prob``; each mask rescales by ``numel / sum``."""
    nm, c, t, v = feature_map.shape
    centred = (feature_map - feature_map.mean(dim=(2, 3), keepdim=True)).pow(2)
    y = centred / (4 * (centred.sum(dim=(2, 3), keepdim=True) / (v * t - 1) + e_lambda)) + 0.5
    attention = torch.sigmoid(y)
    joint_mask = (attention.mean(dim=(1, 2)) < keep_prob).to(feature_map.dtype).view(nm, 1, 1, v)
    out = feature_map * joint_mask * (joint_mask.numel() / joint_mask.sum().clamp_min(1))
    frame_mask = (attention < keep_prob).to(feature_map.dtype)
    return out * frame_mask * (frame_mask.numel() / frame_mask.sum().clamp_min(1))


def d3m_loss(logits: Tensor, logits_extreme: Tensor) -> Tensor:
    """Per-sample ``-sum_j softmax(logits.detach())_j log softmax(logits_extreme)_j`` ``(N,)`` (AimCLR's D3M)."""
    target = torch.softmax(logits.detach(), dim=1)
    return -(target * torch.log_softmax(logits_extreme, dim=1)).sum(dim=1)


def mined_positives(logits: list[Tensor], topk: int) -> Tensor:
    """AimCLR's nearest-neighbour mining (``nearest_neighbors_mining``): ``(N, 1 + K)`` with 1 at the key (column
    0) and at the ``topk`` queue entries closest to each of the queries whose logits are given (a union).

    Args:
        logits: ``(N, 1 + K)`` MoCo logits of each query (the normal, extreme and dropped extreme views).
        topk: entries per query.
    """
    positives = torch.zeros_like(logits[0])
    positives[:, 0] = 1.0
    for lg in logits:
        positives[:, 1:].scatter_(1, lg[:, 1:].topk(topk, dim=1).indices, 1.0)
    return positives


def _check_encoder(encoder: nn.Module, name: str) -> int:
    dim = getattr(encoder, "embed_dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"{name} needs an encoder with a positive int embed_dim, got {type(encoder).__name__}")
    return dim


@register_objective("skeletonclr")
class SkeletonCLR(Objective):
    """SkeletonCLR (CVPR 2021): MoCo v2 with the family's views (module docstring)."""

    num_views = 2
    uneven_shards = True  # the InfoNCE is a batch_mean of per-sample losses; the queue takes gathered keys

    def __init__(self, encoder, *, queue_size: int = 32768, momentum: float = 0.999, temperature: float = 0.07,
                 proj_dim: int = 128, shear_amplitude: float = 0.5, key_init: str = "independent") -> None:
        super().__init__(encoder)
        dim = _check_encoder(encoder, type(self).__name__)
        if key_init not in ("independent", "copy"):
            raise ValueError(f"key_init must be 'independent' or 'copy', got {key_init!r}")
        self.head = family_init(nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim)))
        self.key_encoder = momentum_copy(encoder)
        self.key_head = momentum_copy(self.head)
        if key_init == "independent":  # the official processor's model.apply(weights_init) after MoCo's copy
            family_init(self.key_encoder)
            family_init(self.key_head)
        self.queue = KeyQueue(queue_size, proj_dim)
        self.momentum, self.temperature, self.shear_amplitude = float(momentum), float(temperature), float(shear_amplitude)

    def make_views(self, x, num_frames, *, out_frames, keys, layout, stream):
        if stream != "joint":
            raise ValueError(f"{type(self).__name__} trains on the joint stream; got stream {stream!r}")
        draw = keys.drawer(x.device)
        return [normal_view(x, num_frames, out_frames, draw, self.shear_amplitude) for _ in range(self.num_views)]

    def project(self, features: Tensor) -> Tensor:
        return F.normalize(self.head(features), dim=1)

    def keys(self, encoder: nn.Module, view: Tensor) -> Tensor:
        """Momentum update (in training), then the normalised keys of ``view``."""
        with torch.no_grad():
            if self.training:
                momentum_update(encoder, self.key_encoder, self.momentum)
                momentum_update(self.head, self.key_head, self.momentum)
            return F.normalize(self.key_head(self.key_encoder(view)), dim=1)

    def forward(self, encoder, views):
        query = self.project(encoder(views[0]))
        key = self.keys(encoder, views[1])
        logits = moco_logits(query.float(), key.float(), self.queue.snapshot().float(), self.temperature)
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        loss = batch_mean(F.cross_entropy(logits, target, reduction="none"))
        if self.training:
            self.queue.push(key)
        accuracy = (logits.argmax(dim=1) == 0).float().mean().detach()
        return loss, {"infonce": loss.detach(), "accuracy": accuracy}


@register_objective("aimclr")
class AimCLR(SkeletonCLR):
    """AimCLR (AAAI 2022): extreme views, EADM, D3M and nearest-neighbour mining (module docstring)."""

    num_views = 3

    def __init__(self, encoder, *, queue_size: int = 32768, momentum: float = 0.999, temperature: float = 0.07,
                 proj_dim: int = 128, shear_amplitude: float = 0.5, keep_prob: float = 0.7, mining_epoch: int = 150,
                 topk: int = 1, key_init: str = "independent") -> None:
        super().__init__(encoder, queue_size=queue_size, momentum=momentum, temperature=temperature,
                         proj_dim=proj_dim, shear_amplitude=shear_amplitude, key_init=key_init)
        if not hasattr(encoder, "forward_map") or not hasattr(encoder, "pool"):
            raise ValueError("aimclr's attention-guided drop needs the ST-GCN encoder's last map "
                             f"(forward_map, pool: baselines.stgcn); got {type(encoder).__name__}")
        self.keep_prob, self.mining_epoch, self.topk = float(keep_prob), int(mining_epoch), int(topk)
        self.mining = False

    def start_epoch(self, epoch: int, epochs: int) -> None:
        # the official ``epoch > mining_epoch`` with 1-based epochs: mining from the (mining_epoch + 1)-th epoch
        self.mining = epoch >= self.mining_epoch

    def make_views(self, x, num_frames, *, out_frames, keys, layout, stream):
        if stream != "joint":
            raise ValueError(f"aimclr trains on the joint stream; got stream {stream!r}")
        draw = keys.drawer(x.device)
        query, key = (normal_view(x, num_frames, out_frames, draw, self.shear_amplitude) for _ in range(2))
        flip = None
        if layout.flip_pairs:
            perm = list(range(layout.num_joints))
            for a, b in layout.flip_pairs:
                perm[a], perm[b] = b, a
            flip = torch.tensor(perm, device=x.device)
        extreme = extreme_augment(normal_view(x, num_frames, out_frames, draw, self.shear_amplitude), draw, flip)
        return [extreme, query, key]

    def forward(self, encoder, views):
        extreme, query_view, key_view = views
        query = self.project(encoder(query_view))
        feature_map = encoder.forward_map(extreme)
        bodies = extreme.shape[-1]
        q_e = self.project(encoder.pool(feature_map, bodies))
        q_ed = self.project(encoder.pool(energy_drop(feature_map, self.keep_prob), bodies))
        key = self.keys(encoder, key_view)
        queue = self.queue.snapshot().float()
        logits, logits_e, logits_ed = (moco_logits(q.float(), key.float(), queue, self.temperature)
                                       for q in (query, q_e, q_ed))
        if self.mining:  # the top-k queue entries of each query join the positives (a union)
            positives = mined_positives([logits, logits_e, logits_ed], self.topk)
            contrastive = -(torch.log_softmax(logits, dim=1) * positives).sum(1) / positives.sum(1)
        else:
            contrastive = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device),
                                          reduction="none")
        d3m = 0.5 * (d3m_loss(logits, logits_e) + d3m_loss(logits, logits_ed))
        loss = batch_mean(contrastive + d3m)
        if self.training:
            self.queue.push(key)
        return loss, {"contrastive": batch_mean(contrastive).detach(), "d3m": batch_mean(d3m).detach()}


# --- the family's official checkpoints (torchlight) ------------------------------------------------------------
def _objective_name(key: str) -> str:
    """Official name of a suite SkeletonCLR / AimCLR objective state key (MoCo's ``encoder_q.fc`` is the projector,
    ``encoder_k`` the key encoder with its projector, ``queue`` is (dim, K))."""
    head, _, rest = key.partition(".")
    if head == "head":
        return f"encoder_q.fc.{rest}"
    if head == "key_head":
        return f"encoder_k.fc.{rest}"
    if head == "key_encoder":
        return f"encoder_k.{official_stgcn_name(rest)}"
    return {"queue.queue": "queue", "queue.ptr": "queue_ptr"}.get(key, key)


_QUEUE_IN, _QUEUE_OUT = official_queue_transforms("queue")
_OBJECTIVE_ARGS = {"skeletonclr": ("feature_dim", "queue_size", "momentum", "Temperature"),
                   "aimclr": ("feature_dim", "queue_size", "momentum", "Temperature", "mining_epoch", "topk")}


def _load_family(method: str, obj: Any, official_args: Mapping[str, Any]) -> OfficialModel:
    """torchlight's flat state dict (``IO.save_model``: ``module.`` removed) of SkeletonCLR or AimCLR: the query
    encoder ``encoder_q.*`` without its projector ``encoder_q.fc.*``; a pretraining file also gives the objective
    (projector, ``encoder_k.*``, ``queue``, ``queue_ptr``)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected torchlight's flat state dict, got {type(obj).__name__}")
    state = strip_module_prefix(obj)
    args = shaping_args(official_args, (*STGCN_OFFICIAL_ARGS, *_OBJECTIVE_ARGS[method]), method)
    encoder_state = {k[len("encoder_q."):]: v for k, v in state.items()
                     if k.startswith("encoder_q.") and not k.startswith("encoder_q.fc.")}
    if not encoder_state:
        raise ValueError(f"no 'encoder_q.*' keys: not a {method} checkpoint (keys: {', '.join(sorted(state)[:6])}, ...)")
    encoder, notes = stgcn_from_official(encoder_state, args, dropout=float(official_args.get("dropout", 0.5)),
                                         what=f"{method} encoder_q")
    used = {f"encoder_q.{official_stgcn_name(k)}" for k in encoder.state_dict()}
    stray = sorted(k for k in state if k.startswith("encoder_q.") and not k.startswith("encoder_q.fc.") and k not in used)
    if stray:
        raise CheckpointMismatchError(f"{method} encoder_q", [], stray)
    objective = None
    if "queue" in state and "encoder_k.A" in state and "encoder_q.fc.2.weight" in state:
        proj_dim, k = (int(n) for n in state["queue"].shape)
        options = dict(queue_size=k, proj_dim=proj_dim, momentum=float(args.get("momentum", 0.999)),
                       temperature=float(args.get("Temperature", 0.07)))
        if method == "aimclr":
            options.update(mining_epoch=int(args.get("mining_epoch", 150)), topk=int(args.get("topk", 1)))
        objective = (AimCLR if method == "aimclr" else SkeletonCLR)(encoder, **options)
        load_renamed(objective, state, _objective_name, what=f"{method} projector, encoder_k, queue", transform=_QUEUE_IN)
        notes["objective"] = f"from the pretraining file: queue K {k}, projection {proj_dim}-d"
    elif any(k.startswith(("encoder_k.", "queue")) for k in state):
        notes["objective"] = "the file's encoder_k / queue are incomplete; encoder only"
    return OfficialModel(encoder, objective, notes)


def _export_family(encoder, objective_state: Mapping[str, Tensor] | None) -> OrderedDict:
    """The flat state dict ``IO.save_model`` writes for the pretraining model (the encoder only without an
    objective state: the official linear evaluation reads ``encoder_q.*`` and ignores the rest)."""
    out = renamed_state(encoder.state_dict(), official_stgcn_name, "encoder_q.")
    if objective_state is not None:
        out.update(renamed_state(objective_state, _objective_name, transform=_QUEUE_OUT))
    return OrderedDict(out)


SKELETONCLR_FORMAT = OfficialFormat(
    load=lambda obj, args: _load_family("skeletonclr", obj, args), export=_export_family,
    description="torchlight IO.save_model: flat state dict; encoder_q.* (ST-GCN; encoder_q.fc.* the projector), "
                "encoder_k.*, queue (dim, K), queue_ptr")
AIMCLR_FORMAT = OfficialFormat(
    load=lambda obj, args: _load_family("aimclr", obj, args), export=_export_family,
    description=SKELETONCLR_FORMAT.description)


_FAMILY_LINEAR = {"epochs": 100, "batch_size": 128, "lr": 3.0, "momentum": 0.9, "weight_decay": 0.0,
                  "milestones": [80], "gamma": 0.1, "eval_every": 5}
# the family's loader drops the last, smaller batch (processor/processor.py: drop_last=True)
_PAPER_PRETRAIN = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
                   "epochs": 300, "milestones": [250], "gamma": 0.1, "schedule": "step", "views": {}, "drop_last": True}
# CPU sizes: about 8 minutes of one core on NW-UCLA each (SkeletonCLR 10 s an epoch, AimCLR 17 s)
_CPU_PRETRAIN = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 128,
                 "epochs": 48, "milestones": [40], "gamma": 0.1, "schedule": "step", "views": {}, "drop_last": True}
_CPU_ENCODER = {"num_frames": 32, "hidden_channels": 8, "hidden_size": 128}

register_method(
    "skeletonclr", encoder="stgcn", objective="skeletonclr",
    paper="Li et al., 3D Human Action Representation Learning via Cross-View Consistency Pursuit (CrosSCLR), CVPR 2021",
    repository="github.com/LinguoLi/CrosSCLR", commit="792b70c7",
    description="SkeletonCLR: MoCo v2 on a 1/4-width ST-GCN, joint stream",
    presets={
        "paper": {"encoder_preset": "paper", "pretrain": _PAPER_PRETRAIN,
                  "evaluations": {"linear_own": _FAMILY_LINEAR}},
        # a CPU size for NW-UCLA's 1,020 samples: a queue of 512 (the paper's 32768 exceeds the data set)
        "cpu": {"encoder_preset": "paper", "encoder_options": _CPU_ENCODER, "pretrain": _CPU_PRETRAIN,
                "objective_options": {"queue_size": 512}, "evaluations": {"linear_own": _FAMILY_LINEAR}},
    },
    published={"ntu60_xsub/linear": 68.3, "ntu60_xview/linear": 76.4},
    official_format=SKELETONCLR_FORMAT,
)

register_method(
    "aimclr", encoder="stgcn", objective="aimclr",
    paper="Guo et al., Contrastive Learning from Extremely Augmented Skeleton Sequences for Self-supervised "
          "Action Recognition (AimCLR), AAAI 2022",
    repository="github.com/Levigty/AimCLR", commit="6cd73767",
    description="AimCLR: extreme views, attention-guided drop, D3M, nearest-neighbour mining on SkeletonCLR",
    presets={
        "paper": {"encoder_preset": "paper", "pretrain": _PAPER_PRETRAIN,
                  "evaluations": {"linear_own": _FAMILY_LINEAR}},
        "cpu": {"encoder_preset": "paper", "encoder_options": _CPU_ENCODER,
                "pretrain": {**_CPU_PRETRAIN, "epochs": 28, "milestones": [24]},
                "objective_options": {"queue_size": 512, "mining_epoch": 14}, "evaluations": {"linear_own": _FAMILY_LINEAR}},
    },
    published={"ntu60_xsub/linear": 74.3, "ntu60_xview/linear": 79.7, "ntu120_xsub/linear": 63.4,
               "ntu120_xset/linear": 63.4, "pku2_xsub/linear": 38.5},
    official_format=AIMCLR_FORMAT,
)
