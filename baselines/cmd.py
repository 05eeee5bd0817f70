"""CMD: cross-modal mutual distillation over joint, motion and bone (encoder ``bigru``, objective and method
``cmd``).

Source: Mao et al., "CMD: Self-supervised 3D Action Representation Learning with Cross-modal Mutual
Distillation" (ECCV 2022), github.com/maoyunyao/CMD at 6e9a8ac4 (``moco/builder_cmd.py``,
``moco/GRU.py``, ``feeder/``, ``action_classification_cmd.py``):

* encoder: ``BatchNorm1d`` over the per-frame vector of V·C·M values (order V, C, M), a 3-layer GRU, hidden
  1024 per direction, the output of the last frame (2048-d). The official model steps the "bidirectional"
  GRU one frame at a time with the hidden state carried, so both directions run forward in time; that is
  what is built here: per layer two forward GRUs on the same input, outputs concatenated;
* three modalities (joint, motion, bone), each a query encoder, a momentum key encoder, a projector
  ``Linear(2048, 2048)-ReLU-Linear(2048, 128)`` and its own queue (K 16384, momentum 0.999, temperature
  0.07); the three queues take the same samples, so their slots align;
* loss: the three InfoNCE losses plus ``cmd_weight`` (1) x the six cross-modal KL terms: for teacher ``a``
  the top-``topk`` (8192) queue slots of ``k_a . queue_a``, teacher ``softmax(values / 0.05)``, for each
  student ``b != a`` ``softmax(gather(q_b . queue_b) / 0.1)``, ``KL(teacher || student)`` (batch mean);
* views: the suite's USDRL views are CMD's (``temporal_cropresize`` U[0.1, 1] to 64 frames, then 50/50
  joint corruption of 15 joints or shear U(-1, 1)), two per sample; motion and bone from each augmented
  view. SGD lr 0.01, momentum 0.9, weight decay 1e-4, batch 64, 451 epochs, lr x0.1 at 351.

The encoder evaluated downstream is the joint query encoder (``view='joint'``, as the official linear and
kNN scripts); the motion and bone encoders belong to the objective (saved with it).

Reproduced: the above. Simplified: the motion and bone query encoders are copies of the joint encoder
re-initialised from the global generator (the official code builds three independently initialised GRUs);
a batch need not divide the queue; ``topk`` is capped at the queue size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.moco import KeyQueue, moco_logits, momentum_copy, momentum_update
from usdrl_bench import (EncoderConfig, Objective, SkeletonEncoder, batch_mean, make_views, register_encoder,
                         register_method, register_objective, to_stream)

__all__ = ["BiGRUConfig", "BiGRU", "CMD", "distillation_loss", "MODALITIES"]

MODALITIES = ("joint", "motion", "bone")


@dataclass(frozen=True)
class BiGRUConfig(EncoderConfig):
    """``hidden_size`` per direction (1024; the feature is 2 x hidden_size), ``num_layers`` (3)."""

    hidden_size: int = 1024
    num_layers: int = 3


@register_encoder("bigru", BiGRUConfig, presets={
    "paper": dict(hidden_size=1024, num_layers=3, num_frames=64),
    "small": dict(hidden_size=128, num_layers=3, num_frames=32),
    "tiny": dict(hidden_size=16, num_layers=2, num_frames=16),
}, description="CMD's GRU: 3 layers, two forward directions, last-frame output (2 x hidden)")
class BiGRU(SkeletonEncoder):
    """``(N, C, T, V, M) -> (N, 2 * hidden_size)`` (module docstring)."""

    def __init__(self, config: BiGRUConfig) -> None:
        super().__init__(config)
        self.embed_dim = 2 * config.hidden_size
        width = config.num_joints * config.in_channels * config.num_bodies
        self.input_bn = nn.BatchNorm1d(width)
        self.layers = nn.ModuleList()
        for i in range(config.num_layers):
            pair = nn.ModuleList(nn.GRU(width if i == 0 else 2 * config.hidden_size, config.hidden_size, batch_first=True)
                                 for _ in range(2))
            self.layers.append(pair)
        for name, p in self.layers.named_parameters():  # CMD: Xavier on the 2-D GRU weights
            if p.ndim == 2:
                nn.init.xavier_uniform_(p)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M) -> (N, 2H)``: the last frame's output."""
        self.check_input(x)
        n, c, t, v, m = x.shape
        seq = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)  # per frame (V, C, M), as CMD
        seq = self.input_bn(seq.transpose(1, 2)).transpose(1, 2)
        for pair in self.layers:
            seq = torch.cat([gru(seq)[0] for gru in pair], dim=2)
        return seq[:, -1]

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """No token streams: the feature three times."""
        y = self.forward(x)
        return y, y, y


def distillation_loss(teacher_logits: Tensor, student_logits: Tensor, topk: int, t_teacher: float = 0.05,
                      t_student: float = 0.1) -> Tensor:
    """Per-sample ``KL(softmax(top-k teacher / t_t) || softmax(student at the same slots / t_s))`` ``(N,)``.

    Args:
        teacher_logits: ``(N, K)`` similarities of the teacher modality's keys to its queue (no gradient).
        student_logits: ``(N, K)`` similarities of the student modality's queries to its queue.
        topk: slots kept (capped at K).
    """
    values, index = teacher_logits.detach().topk(min(topk, teacher_logits.shape[1]), dim=1)
    teacher = torch.softmax(values / t_teacher, dim=1)
    student = torch.log_softmax(student_logits.gather(1, index) / t_student, dim=1)
    return (teacher * (torch.log(teacher.clamp_min(1e-30)) - student)).sum(dim=1)


def _reset(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if hasattr(m, "reset_parameters") and m is not module:
            m.reset_parameters()
    return module


@register_objective("cmd")
class CMD(Objective):
    """CMD (ECCV 2022): three MoCo modalities with cross-modal mutual distillation (module docstring)."""

    num_views = 6
    uneven_shards = True  # per-sample losses through batch_mean; the queues take gathered keys

    def __init__(self, encoder, *, queue_size: int = 16384, momentum: float = 0.999, temperature: float = 0.07,
                 proj_dim: int = 128, topk: int = 8192, cmd_weight: float = 1.0, teacher_temperature: float = 0.05,
                 student_temperature: float = 0.1, min_scale: float = 0.1) -> None:
        super().__init__(encoder)
        dim = getattr(encoder, "embed_dim", None)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"cmd needs an encoder with a positive int embed_dim, got {type(encoder).__name__}")
        # the joint query encoder is the one trained and evaluated; motion and bone are the objective's
        self.query_encoders = nn.ModuleDict({m: _reset(copy.deepcopy(encoder)) for m in MODALITIES[1:]})
        self.heads = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, proj_dim))
                                    for m in MODALITIES})
        self.key_encoders = nn.ModuleDict({m: momentum_copy(encoder if m == "joint" else self.query_encoders[m])
                                           for m in MODALITIES})
        self.key_heads = nn.ModuleDict({m: momentum_copy(self.heads[m]) for m in MODALITIES})
        self.queues = nn.ModuleDict({m: KeyQueue(queue_size, proj_dim) for m in MODALITIES})
        self.momentum, self.temperature, self.topk = float(momentum), float(temperature), int(topk)
        self.cmd_weight, self.t_teacher, self.t_student = float(cmd_weight), float(teacher_temperature), float(student_temperature)
        self.min_scale = float(min_scale)

    def make_views(self, x, num_frames, *, out_frames, keys, layout, stream):
        """Two CMD views of each sample, each as joint, motion and bone: ``[j, m, b]`` of the query view, then
        of the key view."""
        if stream != "joint":
            raise ValueError(f"cmd trains on joint, motion and bone at once; the row's stream must be joint, got {stream!r}")
        views = make_views(x, num_frames, num_views=2, out_frames=out_frames, generator=keys, min_scale=self.min_scale,
                           check=False)
        return [to_stream(v, m, layout) for v in views for m in MODALITIES]

    def forward(self, encoder, views):
        queries, keys = {}, {}
        for i, m in enumerate(MODALITIES):
            query_encoder = encoder if m == "joint" else self.query_encoders[m]
            queries[m] = F.normalize(self.heads[m](query_encoder(views[i])), dim=1).float()
        with torch.no_grad():
            for i, m in enumerate(MODALITIES):
                if self.training:
                    momentum_update(encoder if m == "joint" else self.query_encoders[m], self.key_encoders[m], self.momentum)
                    momentum_update(self.heads[m], self.key_heads[m], self.momentum)
                keys[m] = F.normalize(self.key_heads[m](self.key_encoders[m](views[3 + i])), dim=1).float()
        queues = {m: self.queues[m].snapshot().float() for m in MODALITIES}
        per_sample = 0.0
        logs = {}
        for m in MODALITIES:
            logits = moco_logits(queries[m], keys[m], queues[m], self.temperature)
            ce = F.cross_entropy(logits, torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device),
                                 reduction="none")
            logs[f"infonce_{m}"] = batch_mean(ce).detach()
            per_sample = per_sample + ce
        kl = 0.0
        for a in MODALITIES:
            teacher = keys[a] @ queues[a].T
            for b in MODALITIES:
                if b != a:
                    kl = kl + distillation_loss(teacher, queries[b] @ queues[b].T, self.topk, self.t_teacher, self.t_student)
        logs["cmd"] = batch_mean(kl).detach()
        loss = batch_mean(per_sample + self.cmd_weight * kl)
        if self.training:
            for m in MODALITIES:
                self.queues[m].push(keys[m])
        return loss, logs


_CMD_LINEAR = {"epochs": 80, "batch_size": 64, "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
               "milestones": [50, 70], "gamma": 0.1, "eval_every": 5}

register_method(
    "cmd", encoder="bigru", objective="cmd",
    paper="Mao et al., CMD: Self-supervised 3D Action Representation Learning with Cross-modal Mutual Distillation, ECCV 2022",
    repository="github.com/maoyunyao/CMD", commit="6e9a8ac4",
    description="CMD: GRU encoders on joint, motion and bone, MoCo + cross-modal mutual distillation",
    presets={
        "paper": {"encoder_preset": "paper", "objective_options": {},
                  "pretrain": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64,
                               "epochs": 451, "milestones": [351], "gamma": 0.1, "schedule": "step", "views": {}},
                  "evaluations": {"linear_own": _CMD_LINEAR}},
        # about 8 minutes of one core on NW-UCLA (13 s an epoch)
        "cpu": {"encoder_preset": "small", "encoder_options": {"hidden_size": 128},
                "objective_options": {"queue_size": 512, "topk": 256},
                "pretrain": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64,
                             "epochs": 36, "milestones": [30], "gamma": 0.1, "schedule": "step", "views": {}},
                "evaluations": {"linear_own": _CMD_LINEAR}},
    },
    published={"ntu60_xsub/linear": 79.8, "ntu60_xview/linear": 86.9, "ntu120_xsub/linear": 70.3,
               "ntu120_xset/linear": 71.5, "pku2_xsub/linear": 43.0},
)
