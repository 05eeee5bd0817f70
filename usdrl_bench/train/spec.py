"""The pretraining schedule as the training loop takes it (:class:`PretrainSpec`, with its views:
:class:`~usdrl_bench.data.augment.ViewOptions`), and what a checkpoint records of how it was trained
(:class:`Provenance`).

It lives with the loop that consumes it (:mod:`usdrl_bench.train.pretrain`); protocol files
(:mod:`usdrl_bench.protocols.spec`) parse their ``pretrain:`` blocks into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from usdrl_bench.data.augment import ViewOptions
from usdrl_bench.ranges import Ge, NonNegativeFloat, PositiveFloat, PositiveInt, UnitInterval, validate_fields

__all__ = ["PretrainSpec", "Provenance", "ViewOptions"]


@dataclass(frozen=True)
class PretrainSpec:
    """Self-supervised pretraining schedule. Official values (FACTS §7): Adam, lr 5e-4, weight decay
    1e-5, batch 356, 451 epochs, lr x0.1 from epoch 351, fp16 autocast with GradScaler.

    Attributes:
        epochs, batch_size, lr, weight_decay, milestones, gamma: the schedule (epochs and batch >= 1, lr > 0,
            weight decay >= 0, milestones increasing (one at or past the last epoch never takes effect), gamma > 0); ``batch_size`` is the
            global batch, split across the processes of a data-parallel run (unevenly where the process
            count does not divide it: :func:`usdrl_bench.distributed.shard_sizes`).
        precision: ``auto`` (bf16 on CUDA, fp32 on CPU), ``bf16``, ``fp16`` (GradScaler, the official
            code's; CUDA only) or ``fp32`` (TF32 matmuls on CUDA). The resolved value is part of the
            checkpoint's key.
        compile: wrap encoder and objective in ``torch.compile``.
        sync_batchnorm: BatchNorm statistics over the global batch in data-parallel runs (True); False
            keeps them per process, as the official DataParallel training did per GPU.
        views: the pretraining views (:class:`ViewOptions`; a mapping of its fields is accepted).
        drop_last: leave out the last, smaller batch of each epoch (False: kept, as the official loader
            does; see :func:`usdrl_bench.train.pretrain.epoch_batch_sizes`).
        optimizer: ``adam`` (USDRL's, default), ``adamw`` (MAMP's: decoupled weight decay) or ``sgd`` (the
            MoCo family's and CMD's), with ``betas`` (Adam/AdamW), ``momentum`` and ``nesterov`` (SGD).
        no_decay_1d: no weight decay on 1-D parameters (biases, normalisation weights), as timm's
            ``add_weight_decay`` in MAE-style code (MAMP).
        schedule: ``step`` (lr x ``gamma`` at each of ``milestones``, stepped per epoch: the official USDRL
            schedule) or ``cosine`` (per iteration: linear warm-up from 0 over ``warmup_epochs``, then a
            half cosine from ``lr`` to ``min_lr`` at the last step; MAE's ``adjust_learning_rate``, MAMP's).
    """

    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat = 5e-4
    weight_decay: NonNegativeFloat = 1e-5
    milestones: tuple[PositiveInt, ...] = ()
    gamma: PositiveFloat = 0.1
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = False
    sync_batchnorm: bool = True
    views: ViewOptions = field(default_factory=ViewOptions)
    drop_last: bool = False
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    betas: tuple[UnitInterval, UnitInterval] = (0.9, 0.999)
    momentum: UnitInterval = 0.9
    nesterov: bool = False
    no_decay_1d: bool = False
    schedule: Literal["step", "cosine"] = "step"
    warmup_epochs: Annotated[float, Ge(0)] = 0.0
    min_lr: NonNegativeFloat = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.views, dict):
            object.__setattr__(self, "views", ViewOptions(**self.views))
        validate_fields(self)
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must increase, each once, got {list(self.milestones)}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs {self.warmup_epochs} exceeds epochs {self.epochs}")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} exceeds lr {self.lr}")


@dataclass(frozen=True)
class Provenance:
    """How a checkpoint was trained, stored in the finished checkpoint beside the encoder's configuration
    (plain values: ``weights_only`` loading accepts them).

    Attributes:
        objective: the registered objective; objective_options: its options.
        precision: the resolved precision (``fp32``, ``bf16``, ``fp16``); compile: ``torch.compile`` on.
        world_size: the processes it trained on; device: the device of rank 0 (``cpu``, ``cuda:0``).
    """

    objective: str
    objective_options: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    compile: bool = False
    world_size: int = 1
    device: str = "cpu"
