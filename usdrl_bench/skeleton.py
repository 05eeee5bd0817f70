"""Skeleton layouts (joint names, bone pairs) and the joint / bone / motion input streams.

Arrays are ``(N, C, T, V, M)``: samples, coordinates (x, y, z in metres), frames, joints, bodies.

Sources: NTU RGB+D / Kinect v2 joints and bones as in the official USDRL ``DSTE.py``/``STTR.py`` and
the NTU paper; Kinect v1 (MSR Action3D) joints and bones from the dataset's skeleton diagram and a
public visualisation script (left/right unverified); COCO-17 (2-D HRNet keypoints of pyskl, UAV-Human)
in the COCO keypoint order with pyskl's tree of bones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Stream = Literal["joint", "bone", "motion", "jmb"]
STREAMS: tuple[str, ...] = ("joint", "bone", "motion", "jmb")
#: channel multiplier of each stream: ``jmb`` is joint, motion and bone concatenated along C (early fusion)
STREAM_CHANNELS: dict[str, int] = {"joint": 1, "bone": 1, "motion": 1, "jmb": 3}


@dataclass(frozen=True)
class Layout:
    """A skeleton layout.

    Attributes:
        name: registry name ("ntu25", "kinect20").
        joint_names: one name per joint, in storage order.
        bones: 0-based ``(child, parent)`` pairs; the bone at ``child`` is ``joint[child] - joint[parent]``.
            A joint that is not the child of any pair gets a zero bone.
        center: 0-based index of the joint used as the origin in normalisation.
        left_shoulder, right_shoulder: 0-based indices used to align the shoulders with +x.
        flip_pairs: 0-based ``(left, right)`` joint pairs swapped by a left-right flip (empty: the layout
            does not say).

    Raises:
        ValueError: (on construction) no joints, a repeated joint name, or an index (bone, centre,
            shoulder, flip pair) outside ``[0, V)``.
    """

    name: str
    joint_names: tuple[str, ...]
    bones: tuple[tuple[int, int], ...]
    center: int
    left_shoulder: int
    right_shoulder: int
    flip_pairs: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        v = len(self.joint_names)
        if v == 0:
            raise ValueError(f"Layout {self.name!r}: no joints")
        if len(set(self.joint_names)) != v:
            raise ValueError(f"Layout {self.name!r}: repeated joint names")
        indices = [("center", self.center), ("left_shoulder", self.left_shoulder), ("right_shoulder", self.right_shoulder)]
        indices += [(f"bones[{i}]", j) for i, pair in enumerate(self.bones) for j in pair]
        indices += [(f"flip_pairs[{i}]", j) for i, pair in enumerate(self.flip_pairs) for j in pair]
        for what, j in indices:
            if not 0 <= int(j) < v:
                raise ValueError(f"Layout {self.name!r}: {what} = {j} is outside [0, {v}) (indices are 0-based)")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)


def _zero_based(pairs: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


#: joints 5-20 of the Kinect SDK order, shared by Kinect v1 (NW-UCLA) and v2 (NTU): arms, then legs
KINECT_LIMBS: tuple[str, ...] = (
    "left shoulder", "left elbow", "left wrist", "left hand",
    "right shoulder", "right elbow", "right wrist", "right hand",
    "left hip", "left knee", "left ankle", "left foot",
    "right hip", "right knee", "right ankle", "right foot",
)
#: their left/right pairs (0-based): left arm 5-8 / right arm 9-12, left leg 13-16 / right leg 17-20
KINECT_LIMB_FLIPS: tuple[tuple[int, int], ...] = _zero_based([(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18),
                                                              (15, 19), (16, 20)])

NTU25 = Layout(
    name="ntu25",
    joint_names=(
        "base of spine", "middle of spine", "neck", "head", *KINECT_LIMBS,
        "spine (shoulder)", "tip of left hand", "left thumb", "tip of right hand", "right thumb",
    ),
    # FACTS §1: identical in USDRL DSTE.py, STTR.py and the feeders (1-based, child -> parent).
    bones=_zero_based([
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
        (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12),
    ]),
    center=1,
    left_shoulder=4,
    right_shoulder=8,
    flip_pairs=KINECT_LIMB_FLIPS + _zero_based([(22, 24), (23, 25)]),  # and the hand tips and thumbs
)

KINECT20 = Layout(
    name="kinect20",
    joint_names=(
        "left shoulder", "right shoulder", "neck", "spine", "left hip", "right hip", "hip centre",
        "left elbow", "right elbow", "left wrist", "right wrist", "left hand", "right hand",
        "left knee", "right knee", "left ankle", "right ankle", "left foot", "right foot", "head",
    ),
    # the MSR Action3D release notes, 1-based (child, parent) read as an edge list.
    bones=_zero_based([
        (12, 10), (10, 8), (8, 1), (1, 3), (20, 3), (2, 3), (9, 2), (11, 9), (13, 11), (4, 3),
        (7, 4), (5, 7), (14, 5), (16, 14), (18, 16), (6, 7), (15, 6), (17, 15), (19, 17),
    ]),
    center=3,
    left_shoulder=0,
    right_shoulder=1,
)

COCO17 = Layout(
    name="coco17",
    joint_names=(
        "nose", "left eye", "right eye", "left ear", "right ear", "left shoulder", "right shoulder",
        "left elbow", "right elbow", "left wrist", "right wrist", "left hip", "right hip",
        "left knee", "right knee", "left ankle", "right ankle",
    ),
    # a tree rooted at the nose (pyskl's ``coco`` graph, 0-based child -> parent), so every joint but the
    # nose has one bone; FSM's 17-joint "bones" are not a tree (FACTS-foundation §2: the left shoulder gets
    # none, elbow/wrist and knee/ankle pairs appear in both directions) and are not used
    bones=((1, 0), (2, 0), (3, 1), (4, 2), (5, 0), (6, 0), (7, 5), (8, 6), (9, 7), (10, 8), (11, 5), (12, 6),
           (13, 11), (14, 12), (15, 13), (16, 14)),
    # COCO has no pelvis or spine joint: the left hip is the origin (FSM centres UAV-Human on joint 1, the
    # left eye); the shoulders align with +x as for NTU
    center=11,
    left_shoulder=5,
    right_shoulder=6,
)

NWUCLA20 = Layout(
    name="nwucla20",
    # Kinect v1 SDK order, as NW-UCLA's ``all_sqe`` JSON files store it (the dataset's documentation)
    joint_names=(
        "hip centre", "spine", "shoulder centre", "head", *KINECT_LIMBS,
    ),
    # CTR-GCN's feeders/feeder_ucla.py ``self.bone`` (1-based child -> parent; (3, 3) is the zero bone)
    bones=_zero_based([
        (1, 2), (2, 3), (3, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
        (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19),
    ]),
    center=1,  # spine (CTR-GCN centres on joint 2 of the first frame)
    left_shoulder=4,
    right_shoulder=8,
    flip_pairs=KINECT_LIMB_FLIPS,
)

LAYOUTS: dict[str, Layout] = {NTU25.name: NTU25, KINECT20.name: KINECT20, COCO17.name: COCO17, NWUCLA20.name: NWUCLA20}


def register_layout(layout: Layout) -> Layout:
    """Register a skeleton layout under ``layout.name`` so that readers (``SkeletonArrays.layout``), the
    bone stream and the encoders find it. Re-registering an equal layout is a no-op.

    Returns:
        ``layout``.
    Raises:
        TypeError: ``layout`` is not a :class:`Layout`.
        ValueError: another, different layout already has the name.
    """
    if not isinstance(layout, Layout):
        raise TypeError(f"register_layout expects a usdrl_bench.Layout, got {type(layout).__name__}")
    existing = LAYOUTS.get(layout.name)
    if existing is not None and existing != layout:
        raise ValueError(f"skeleton layout {layout.name!r} is already registered with other joints or bones")
    LAYOUTS[layout.name] = layout
    return layout


def get_layout(name: str) -> Layout:
    """Return the layout called ``name``.

    Raises:
        KeyError: unknown layout, listing the known ones.
    """
    try:
        return LAYOUTS[name]
    except KeyError:
        raise KeyError(f"Unknown skeleton layout {name!r}. Available: {', '.join(sorted(LAYOUTS))}") from None


def bone_stream(x: torch.Tensor | np.ndarray, layout: Layout) -> torch.Tensor | np.ndarray:
    """Bones from joints: ``out[:, :, :, child] = x[:, :, :, child] - x[:, :, :, parent]``.

    Args:
        x: joints ``(N, C, T, V, M)``.
        layout: the skeleton layout giving the (child, parent) pairs.
    Returns:
        ``(N, C, T, V, M)``, same type as ``x``; joints that are no pair's child (and NTU joint 21,
        whose pair is (21, 21)) are zero.
    """
    if x.shape[3] != layout.num_joints:
        raise ValueError(f"bone_stream: x has V={x.shape[3]} joints but layout {layout.name!r} has {layout.num_joints}")
    out = torch.zeros_like(x) if isinstance(x, torch.Tensor) else np.zeros_like(x)
    for child, parent in layout.bones:
        out[:, :, :, child] = x[:, :, :, child] - x[:, :, :, parent]
    return out


def motion_stream(x: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Motion from joints: ``out[:, :, t] = x[:, :, t + 1] - x[:, :, t]``; the last frame is zero.

    Args:
        x: ``(N, C, T, V, M)``.
    """
    out = torch.zeros_like(x) if isinstance(x, torch.Tensor) else np.zeros_like(x)
    out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def to_stream(x: torch.Tensor | np.ndarray, stream: str, layout: Layout) -> torch.Tensor | np.ndarray:
    """Convert joints ``(N, C, T, V, M)`` to the ``joint``, ``bone`` or ``motion`` stream (FACTS §1), or
    ``jmb``: the three concatenated along C, joint first (``(N, 3C, T, V, M)``; the early fusion of
    multi-modal pretraining, :class:`~usdrl_bench.objectives.mgfd.MGFD`'s ``modal_consistency``).

    Raises:
        ValueError: unknown stream.
    """
    if stream == "joint":
        return x
    if stream == "jmb":
        parts = (x, motion_stream(x), bone_stream(x, layout))
        return torch.cat(parts, dim=1) if isinstance(x, torch.Tensor) else np.concatenate(parts, axis=1)
    if stream == "bone":
        return bone_stream(x, layout)
    if stream == "motion":
        return motion_stream(x)
    raise ValueError(f"Unknown stream {stream!r}; expected one of {', '.join(STREAMS)}")
