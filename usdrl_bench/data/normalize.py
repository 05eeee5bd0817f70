"""Per-sequence normalisation of skeletons, for any layout with a centre joint and two shoulders.

The steps that make NW-UCLA work (:mod:`usdrl_bench.data.readers.nwucla`), as public building blocks a
reader (a plug-in's included) applies to its sequences, or exposes as its dataset's options:

1. :func:`centre_sequence`: ``"first_frame"`` subtracts the layout's centre joint of the first frame from every
   frame (the trajectory is kept; CTR-GCN ``feeders/feeder_ucla.py``); ``"per_frame"`` each frame's own
   centre (NTU's ``pre_normalization``); ``"none"`` keeps camera coordinates.
2. :func:`align_shoulders`: ``"shoulders"`` rotates the sequence about the vertical (y) axis so that its first
   frame's left -> right shoulder vector points along +x in the x-z plane (the body faces the same way in
   every view); ``"none"`` leaves it.
3. :func:`scale_sequence`: ``"minmax"`` maps each axis to ``[-1, 1]`` over all frames and joints (CTR-GCN);
   ``"torso"`` divides by the mean centre -> neck length (the neck is ``neck``, else the shoulders' midpoint);
   ``"none"`` keeps the units.

:func:`normalize_sequence` applies the three in that order on one ``(T, V, C)`` sequence;
:func:`normalize_arrays` on every sample and body of a :class:`~usdrl_bench.data.arrays.SkeletonArrays`; a
protocol applies them to any dataset with the dataset's ``normalize:`` key (:class:`Normalization`).
Computation is in float64, the result float32 (the NW-UCLA reader's arithmetic, step for step).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.ranges import NonNegativeInt, validate_fields
from usdrl_bench.skeleton import LAYOUTS, Layout

__all__ = ["Centre", "Align", "Scaling", "Normalization", "centre_sequence", "align_shoulders", "scale_sequence",
           "normalize_sequence", "normalize_arrays"]

Centre = Literal["first_frame", "per_frame", "none"]
Align = Literal["none", "shoulders"]
Scaling = Literal["minmax", "torso", "none"]


def _sequence(x: np.ndarray, layout: Layout) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] != layout.num_joints or len(x) < 1:
        raise ValueError(f"expected one sequence (T, V, C) with T >= 1 and V = {layout.num_joints} "
                         f"(layout {layout.name}), got shape {x.shape}")
    return x


def centre_sequence(x: np.ndarray, layout: Layout, mode: Centre = "first_frame") -> np.ndarray:
    """``x`` ``(T, V, C)`` with the layout's centre joint moved to the origin (``mode``: module docstring).

    Returns:
        a new float64 array of ``x``'s shape.
    Raises:
        ValueError: an unknown ``mode`` or a shape that is not ``(T, V, C)`` with the layout's V.
    """
    x = np.array(_sequence(x, layout), dtype=np.float64)
    c = layout.center
    if mode == "first_frame":
        x -= x[0, c]
    elif mode == "per_frame":
        x -= x[:, c:c + 1]
    elif mode != "none":
        raise ValueError(f"centre must be 'first_frame', 'per_frame' or 'none', got {mode!r}")
    return x


def align_shoulders(x: np.ndarray, layout: Layout, mode: Align = "shoulders") -> np.ndarray:
    """``x`` ``(T, V, 3)`` rotated about y so that the first frame's left -> right shoulder vector lies along
    +x in the x-z plane (``mode="shoulders"``), or unchanged (``"none"``).

    Returns:
        a new float64 array of ``x``'s shape.
    Raises:
        ValueError: an unknown ``mode``, fewer than 3 coordinates, or a wrong shape.
    """
    x = np.array(_sequence(x, layout), dtype=np.float64)
    if mode == "none":
        return x
    if mode != "shoulders":
        raise ValueError(f"align must be 'none' or 'shoulders', got {mode!r}")
    if x.shape[2] < 3:
        raise ValueError(f"align='shoulders' rotates in the x-z plane and needs 3-D joints, got C = {x.shape[2]}")
    v = x[0, layout.right_shoulder] - x[0, layout.left_shoulder]
    angle = np.arctan2(v[2], v[0])  # rotate (x, z) so that v lies along +x
    c, s = np.cos(angle), np.sin(angle)
    rx, rz = c * x[..., 0] + s * x[..., 2], -s * x[..., 0] + c * x[..., 2]
    x[..., 0], x[..., 2] = rx, rz
    return x


def scale_sequence(x: np.ndarray, layout: Layout, mode: Scaling = "minmax", *, neck: int | None = None) -> np.ndarray:
    """``x`` ``(T, V, C)`` scaled (``mode``: module docstring). ``neck``: the joint ending the torso for
    ``"torso"`` (NW-UCLA: 2, the shoulder centre); default the midpoint of the layout's shoulders. A sequence
    with no extent (one point, a zero torso) is left unscaled on that axis / as a whole.

    Returns:
        a new float64 array of ``x``'s shape.
    Raises:
        ValueError: an unknown ``mode``, ``neck`` outside ``[0, V)``, or a wrong shape.
    """
    x = np.array(_sequence(x, layout), dtype=np.float64)
    if mode == "minmax":
        flat = x.reshape(-1, x.shape[2])
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        span = np.where(hi - lo > 0, hi - lo, 1.0)
        return (x - lo) / span * 2 - 1
    if mode == "torso":
        if neck is not None and not 0 <= neck < layout.num_joints:
            raise ValueError(f"neck = {neck} is outside [0, {layout.num_joints}) (layout {layout.name})")
        top = x[:, neck] if neck is not None else (x[:, layout.left_shoulder] + x[:, layout.right_shoulder]) / 2
        torso = np.linalg.norm(top - x[:, layout.center], axis=-1).mean()
        return x / torso if torso > 0 else x
    if mode != "none":
        raise ValueError(f"scaling must be 'minmax', 'torso' or 'none', got {mode!r}")
    return x


def normalize_sequence(x: np.ndarray, layout: Layout, *, centre: Centre = "first_frame", align: Align = "none",
                       scaling: Scaling = "minmax", neck: int | None = None) -> np.ndarray:
    """:func:`centre_sequence`, :func:`align_shoulders`, then :func:`scale_sequence` on one ``(T, V, C)``
    sequence (its valid frames). Defaults: CTR-GCN's NW-UCLA preprocessing (first-frame centre, min-max).

    Returns:
        a new ``(T, V, C)`` float32 array.
    Raises:
        ValueError: an unknown option value or a wrong shape.
    """
    x = centre_sequence(x, layout, centre)
    x = align_shoulders(x, layout, align)
    return scale_sequence(x, layout, scaling, neck=neck).astype(np.float32)


def normalize_arrays(arrays: SkeletonArrays, *, centre: Centre = "first_frame", align: Align = "none",
                     scaling: Scaling = "minmax", neck: int | None = None) -> SkeletonArrays:
    """:func:`normalize_sequence` on each sample's valid frames (``num_frames``), body by body, of ``arrays``
    (``(N, C, T, V, M)``, layout ``arrays.layout``); padding frames and absent bodies (all zero) stay zero.
    The options are recorded in ``extra``.

    Returns:
        new :class:`SkeletonArrays` (float32 data, everything else shared).
    Raises:
        KeyError: the layout is not registered; ValueError: an unknown option value.
    """
    layout = LAYOUTS[arrays.layout]
    data = np.array(arrays.data, dtype=np.float32)
    for n in range(len(arrays)):
        t = max(1, min(int(arrays.num_frames[n]), data.shape[2]))
        for m in range(data.shape[4]):
            body = data[n, :, :t, :, m]
            if not body.any():
                continue
            seq = normalize_sequence(body.transpose(1, 2, 0), layout, centre=centre, align=align, scaling=scaling,
                                     neck=neck)
            data[n, :, :t, :, m] = seq.transpose(2, 0, 1)
    extra = {**arrays.extra, "centre": centre, "align": align, "scaling": scaling}
    return dataclasses.replace(arrays, data=data, extra=extra)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """The ``normalize:`` key of a protocol's dataset: :func:`normalize_arrays` applied to both parts of any
    dataset after its reader, e.g. ``{name: msr_action3d, normalize: {centre: first_frame, align: shoulders,
    scaling: torso}}``. Every step defaults to ``"none"`` (nothing changes unless asked); it enters the data's
    cache identity.

    Attributes:
        centre, align, scaling: the steps of the module docstring.
        neck: the joint ending the torso for ``scaling: torso`` (0-based; default the shoulders' midpoint).
    Raises:
        ValueError: a negative ``neck``.
    """

    centre: Centre = "none"
    align: Align = "none"
    scaling: Scaling = "none"
    neck: NonNegativeInt | None = None

    def __post_init__(self) -> None:
        validate_fields(self)

    def apply(self, arrays: SkeletonArrays) -> SkeletonArrays:
        """:func:`normalize_arrays` with these steps.

        Raises:
            ValueError: ``neck`` outside the layout's joints, 2-D joints with ``align: shoulders``.
        """
        return normalize_arrays(arrays, centre=self.centre, align=self.align, scaling=self.scaling, neck=self.neck)
