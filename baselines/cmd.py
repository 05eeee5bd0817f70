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

Official checkpoints (:data:`CMD_FORMAT`): ``pretrain_moco_cmd.py`` saves ``{'epoch', 'state_dict',
'optimizer'}``; the joint encoder is ``encoder_q.*`` (``input_norm``, ``encoder.gru``; ``encoder_q.fc.*`` is
the projector), not ``encoder_q_motion.*`` / ``encoder_q_bone.*``, which share the prefix and become the
objective's. Layer ``l`` of the official bidirectional GRU (``weight_ih_l{l}`` and ``..._reverse``) is this
encoder's pair ``layers.l.0`` / ``layers.l.1``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.moco import KeyQueue, moco_logits, momentum_copy, momentum_update, official_queue_transforms
from usdrl_bench import (CheckpointMismatchError, EncoderConfig, Objective, OfficialFormat, OfficialModel,
                         SkeletonEncoder, batch_mean, create_encoder, load_renamed, make_views, register_encoder,
                         register_method, register_objective, renamed_state, shaping_args, strip_module_prefix,
                         to_stream)

__all__ = ["BiGRUConfig", "BiGRU", "CMD", "distillation_loss", "MODALITIES", "CMD_FORMAT", "official_gru_name"]

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


# --- official checkpoints -----------------------------------------------------------------------------------------
_OFFICIAL_MODALITY = {"joint": "", "motion": "_motion", "bone": "_bone"}


def official_gru_name(key: str) -> str:
    """Official ``moco/GRU.py BIGRU`` name of a suite :class:`BiGRU` state key (``layers.1.0.weight_ih_l0`` ->
    ``encoder.gru.weight_ih_l1``; ``layers.1.1.*`` is the ``_reverse`` direction; ``input_bn`` -> ``input_norm``)."""
    if key.startswith("input_bn."):
        return "input_norm." + key[len("input_bn."):]
    m = re.match(r"^layers\.(\d+)\.([01])\.(weight|bias)_(ih|hh)_l0$", key)
    if m is None:
        raise KeyError(f"no official name for BiGRU key {key!r}")
    layer, direction, kind, gate = m.groups()
    return f"encoder.gru.{kind}_{gate}_l{layer}{'_reverse' if direction == '1' else ''}"


def _objective_name(key: str) -> str:
    """Official ``moco/builder_cmd.py MoCo`` name of a suite CMD objective state key."""
    group, modality, rest = (key.split(".", 2) + ["", ""])[:3]
    tail = _OFFICIAL_MODALITY[modality]
    if group == "query_encoders":
        return f"encoder_q{tail}.{official_gru_name(rest)}"
    if group == "key_encoders":
        return f"encoder_k{tail}.{official_gru_name(rest)}"
    if group == "heads":
        return f"encoder_q{tail}.fc.{rest}"
    if group == "key_heads":
        return f"encoder_k{tail}.fc.{rest}"
    if group == "queues":
        return f"queue{tail}" if rest == "queue" else f"queue_ptr{tail}"
    raise KeyError(f"no official name for CMD objective key {key!r}")


_QUEUE_IN, _QUEUE_OUT = official_queue_transforms(*(f"queues.{m}" for m in MODALITIES))
_CMD_ARGS = ("args_bi_gru", "num_joints", "num_bodies", "num_frames", "dim", "K", "m", "T", "teacher_T", "student_T",
             "cmd_weight", "topk")
_KNOWN_JOINTS = (25, 20, 17, 18, 15)


def _split_input(width: int, args: Mapping[str, Any]) -> tuple[int, int]:
    """(V, M) of the GRU's per-frame input V·C·M (C = 3): the arguments given, else a known joint count with
    two persons, else one."""
    if "num_joints" in args or "num_bodies" in args:
        v = int(args.get("num_joints", width // (3 * int(args.get("num_bodies", 1)))))
        m = int(args.get("num_bodies", width // (3 * v)))
    else:
        v, m = (width // 6, 2) if width % 6 == 0 and width // 6 in _KNOWN_JOINTS else (width // 3, 1)
    if v * 3 * m != width:
        raise ValueError(f"the GRU's input width {width} is not V {v} x C 3 x M {m}; pass num_joints / num_bodies")
    return v, m


def _load_cmd(obj: Any, official_args: Mapping[str, Any]) -> OfficialModel:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise ValueError("expected CMD's {'epoch', 'state_dict', 'optimizer'}; found "
                         f"{sorted(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__}")
    args = shaping_args(official_args, _CMD_ARGS, "cmd")
    state = strip_module_prefix(obj["state_dict"])
    encoder_state = {k[len("encoder_q."):]: v for k, v in state.items()
                     if k.startswith("encoder_q.") and not k.startswith("encoder_q.fc.")}
    if "input_norm.weight" not in encoder_state or "encoder.gru.weight_hh_l0" not in encoder_state:
        raise ValueError(f"no 'encoder_q.input_norm' / 'encoder_q.encoder.gru' keys: not a CMD checkpoint "
                         f"(keys: {', '.join(sorted(state)[:6])}, ...)")
    width = int(encoder_state["input_norm.weight"].shape[0])
    hidden = int(encoder_state["encoder.gru.weight_hh_l0"].shape[1])
    layers = len({m.group(1) for k in encoder_state if (m := re.match(r"^encoder\.gru\.weight_ih_l(\d+)$", k))})
    found = {"en_input_size": width, "en_hidden_size": hidden, "en_num_layers": layers}
    for key, value in found.items():
        given = (args.get("args_bi_gru") or {}).get(key)
        if given is not None and int(given) != value:
            raise ValueError(f"official argument args_bi_gru[{key!r}]={given} but the file's tensors give {value}")
    v, m = _split_input(width, args)
    encoder = create_encoder("bigru", None, hidden_size=hidden, num_layers=layers, num_joints=v, num_bodies=m,
                             in_channels=3, num_frames=int(args.get("num_frames", 64)))
    used = load_renamed(encoder, encoder_state, official_gru_name, what="cmd encoder_q")
    stray = sorted(f"encoder_q.{k}" for k in encoder_state if k not in used)
    if stray:
        raise CheckpointMismatchError("cmd encoder_q", [], stray)
    notes = {"sizes": f"from the tensors: {found}; V {v}, M {m}", "num_frames": str(encoder.config.num_frames)}
    objective = None
    if all(f"queue{t}" in state for t in _OFFICIAL_MODALITY.values()) and "encoder_k_bone.input_norm.weight" in state:
        proj_dim, k = (int(n) for n in state["queue"].shape)
        objective = CMD(encoder, queue_size=k, proj_dim=proj_dim, momentum=float(args.get("m", 0.999)),
                        temperature=float(args.get("T", 0.07)), topk=int(args.get("topk", 1024)),
                        cmd_weight=float(args.get("cmd_weight", 1.0)),
                        teacher_temperature=float(args.get("teacher_T", 0.05)),
                        student_temperature=float(args.get("student_T", 0.1)))
        load_renamed(objective, state, _objective_name, what="cmd motion/bone encoders, key encoders, projectors, queues",
                     transform=_QUEUE_IN)
        notes["objective"] = f"from the pretraining file: three queues of K {k}, projection {proj_dim}-d"
    return OfficialModel(encoder, objective, notes)


def _export_cmd(encoder: BiGRU, objective_state: Mapping[str, Tensor] | None) -> dict[str, Any]:
    """``pretrain_moco_cmd.py``'s ``{'epoch', 'state_dict', 'optimizer'}`` (one process: no ``module.``): all six
    encoders, projectors and queues, which the official ``load_pretrained`` needs (it asserts that only the
    classifiers are missing). The optimiser is None (the file is for evaluation, not to resume a run)."""
    if objective_state is None:
        raise ValueError("CMD's official linear evaluation loads the motion and bone encoders too: export needs the "
                         "objective's state (objective.pt beside the suite checkpoint)")
    state = {f"encoder_q.{k}": v for k, v in renamed_state(encoder.state_dict(), official_gru_name).items()}
    state.update(renamed_state(objective_state, _objective_name, transform=_QUEUE_OUT))
    return {"epoch": None, "state_dict": state, "optimizer": None}


CMD_FORMAT = OfficialFormat(load=_load_cmd, export=_export_cmd,
                            description="pretrain_moco_cmd.py: {'epoch', 'state_dict' (encoder_q[_motion|_bone].*, "
                                        "encoder_k*, queue*), 'optimizer'}")


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
                               "epochs": 451, "milestones": [351], "gamma": 0.1, "schedule": "step", "views": {},
                               "drop_last": True},
                  "evaluations": {"linear_own": _CMD_LINEAR}},
        # about 8 minutes of one core on NW-UCLA (13 s an epoch)
        "cpu": {"encoder_preset": "small", "encoder_options": {"hidden_size": 128},
                "objective_options": {"queue_size": 512, "topk": 256},
                "pretrain": {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "batch_size": 64,
                             "epochs": 36, "milestones": [30], "gamma": 0.1, "schedule": "step", "views": {},
                             "drop_last": True},
                "evaluations": {"linear_own": _CMD_LINEAR}},
    },
    published={"ntu60_xsub/linear": 79.8, "ntu60_xview/linear": 86.9, "ntu120_xsub/linear": 70.3,
               "ntu120_xset/linear": 71.5, "pku2_xsub/linear": 43.0},
    official_format=CMD_FORMAT,
)
