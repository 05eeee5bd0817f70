"""USDRL's pretraining views (:func:`make_views`): per view a random crop resized, then joint corruption or
shear (and optionally a rotation), as the official feeder draws them (FACTS §6, §7)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Annotated

import torch
from torch import Tensor

from usdrl_bench.data.augment.keys import Randomness, check_xyz, drawer
from usdrl_bench.data.augment.spatial import corruption_params, rotation_params, shear_params, transform_joints
from usdrl_bench.data.augment.temporal import random_crops, resize_unchecked
from usdrl_bench.ranges import Fraction, Ge, Le, NonNegativeFloat, NonNegativeInt, PositiveInt, Probability, validate_fields


@dataclass(frozen=True)
class ViewOptions:
    """The options of USDRL's pretraining views but the view length (the encoder's ``num_frames``): what a
    protocol's ``pretrain.views`` sets; defaults are the official ones (FACTS §7).

    Attributes:
        num_views: views per sample (the code uses 4; the paper's Fig. 2 draws 2); None: as many as the
            objective consumes (its ``num_views``: MG-FD 4, InfoNCE 2).
        min_scale, max_scale: temporal crop-scale range (``l_ratio = [0.1, 1]``).
        min_length: shortest crop in frames; ``None`` = the view length.
        p_shear: probability that a view gets shear rather than joint corruption (0.5).
        shear_magnitude: off-diagonal shear range U(-m, m) (1.0).
        num_corrupt_joints: joints hit by joint corruption (15 of 25).
        p_zero: probability that joint corruption zeroes rather than mixes (0.5).
        rotation: half-width in degrees of a random rotation of each view about the x and y axes, before
            shear or corruption (0: none, as USDRL's code; CTR-GCN's NW-UCLA feeder draws 60): see
            :func:`random_rotation`.

    Raises:
        ValueError: a value out of range (the message names it).
    """

    num_views: PositiveInt | None = None
    min_scale: Fraction = 0.1
    max_scale: Fraction = 1.0
    min_length: PositiveInt | None = None
    p_shear: Probability = 0.5
    shear_magnitude: NonNegativeFloat = 1.0
    num_corrupt_joints: NonNegativeInt = 15
    p_zero: Probability = 0.5
    rotation: Annotated[float, Ge(0), Le(180)] = 0.0

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.min_scale > self.max_scale:
            raise ValueError(f"{type(self).__name__} needs min_scale <= max_scale, got {self.min_scale}, {self.max_scale}")

    def options(self) -> dict[str, object]:
        """The keyword options of :func:`make_views` (``num_views`` aside)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("num_views", "out_frames")}


@dataclass(frozen=True)
class ViewConfig(ViewOptions):
    """:class:`ViewOptions` with the view length: everything :func:`make_views` takes.

    Attributes:
        num_views: views per sample (4).
        out_frames: frames per view (64).
    """

    num_views: PositiveInt = 4
    out_frames: PositiveInt = 64

    def make_views(self, x: Tensor, num_frames: Tensor, generator: Randomness) -> list[Tensor]:
        """:func:`make_views` with these settings."""
        return make_views(x, num_frames, generator=generator, **asdict(self))


def make_views(
    x: Tensor,
    num_frames: Tensor,
    num_views: int = 4,
    out_frames: int = 64,
    *,
    generator: Randomness,
    min_scale: float = 0.1,
    max_scale: float = 1.0,
    min_length: int | None = None,
    p_shear: float = 0.5,
    shear_magnitude: float = 1.0,
    num_corrupt_joints: int = 15,
    p_zero: float = 0.5,
    rotation: float = 0.0,
    check: bool = True,
) -> list[Tensor]:
    """USDRL's pretraining views (FACTS §7, the official pretraining feeder).

    Each of the ``num_views`` views is an independent :func:`random_crop_resize` of the valid frames,
    followed, per sample and per view, by :func:`shear` with probability ``p_shear`` and otherwise by
    :func:`joint_corruption` (the official coin is 50/50). Both are applied in one batched matrix
    product: a shear is a corruption of all ``V`` joints by ``S^T``, and zeroing is a product with 0.

    Args:
        x: ``(N, 3, T, V, M)`` joints, zero-padded beyond ``num_frames``.
        num_frames: ``(N,)`` valid frames per sample.
        num_views: views per sample (4).
        out_frames: frames per view ``T'`` (64).
        generator: randomness: a ``torch.Generator`` on x's device type, or :class:`SampleKeys` (the
            pretraining loop's: each sample's views then depend on (seed, epoch, index) only).
        min_scale, max_scale, min_length: crop settings, see :func:`random_crop_resize`.
        p_shear: probability of shear (else joint corruption), per sample and view.
        shear_magnitude: see :func:`shear`.
        num_corrupt_joints, p_zero: see :func:`joint_corruption`.
        rotation: if > 0, each view is first rotated by :func:`random_rotation` with this half-width
            (degrees); its numbers are drawn after the others, so views with ``rotation=0`` are unchanged.
        check: validate ``num_frames`` (a host synchronisation on a GPU); the pretraining loop checks the
            whole dataset once and passes False.
    Returns:
        ``num_views`` tensors of shape ``(N, 3, T', V, M)``.
    """
    cfg = ViewConfig(num_views=num_views, out_frames=out_frames, min_scale=min_scale, max_scale=max_scale,
                     min_length=min_length, p_shear=p_shear, shear_magnitude=shear_magnitude,
                     num_corrupt_joints=num_corrupt_joints, p_zero=p_zero, rotation=rotation)
    where = "make_views"
    check_xyz(x, where)
    draw = drawer(generator, x, where)
    N, _, _, V, _ = x.shape
    views = []
    for _ in range(cfg.num_views):
        start, length = random_crops(x, num_frames, cfg.out_frames, draw, cfg.min_scale, cfg.max_scale, cfg.min_length,
                                      where, check=check)
        view = resize_unchecked(x, start, length, cfg.out_frames)
        use_shear = draw((N,)) < cfg.p_shear
        corrupt, joints = corruption_params(view, draw, cfg.num_corrupt_joints, cfg.p_zero, where)
        sheared = shear_params(view, draw, cfg.shear_magnitude).transpose(1, 2)
        matrix = torch.where(use_shear[:, None, None], sheared, corrupt)
        mask = joints | use_shear[:, None]
        if cfg.rotation > 0:
            view = transform_joints(view, rotation_params(view, draw, cfg.rotation))
        views.append(transform_joints(view, matrix, mask))
    return views
