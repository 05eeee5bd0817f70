"""Synthetic data shaped as a named dataset's release: the stand-in a rehearsal runs on
(:mod:`usdrl_bench.protocols.rehearsal`). :data:`RELEASES` records each release's array shape, class count,
layout and split sizes (the sizes also price a real epoch in ``usdrl-bench plan``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.registration import register_dataset

__all__ = ["RELEASES", "REHEARSAL_DATASET", "Release", "VIDEO_CLASSES", "rehearsal_arrays", "rehearsal_dataset"]

#: the registered dataset that stands in for a named one in a rehearsal
REHEARSAL_DATASET = "rehearsal"


@dataclass(frozen=True)
class Release:
    """What a named dataset's release looks like, as the suite reads it.

    Attributes:
        channels, frames, joints, bodies: ``(C, T, V, M)`` of the arrays (``T``: the padded length).
        num_classes: classes of the release; layout: the skeleton layout.
        train, test: samples of the split's training and test parts (what a real epoch costs).
        min_frames: the shortest valid sequence to draw.
        source: where the counts come from.
    """

    channels: int
    frames: int
    joints: int
    bodies: int
    num_classes: int
    layout: str
    train: int
    test: int
    min_frames: int = 32
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.channels, self.frames, self.joints, self.bodies)


_NTU = "FACTS §2 (after removing the samples with missing skeletons)"
_PYSKL = "pyskl's ntu*_hrnet.pkl splits (the same samples as the 3-D release)"
#: the named datasets' releases (the shapes of the arrays the suite's readers produce)
RELEASES: dict[str, Release] = {
    "ntu60_xsub": Release(3, 300, 25, 2, 60, "ntu25", 40091, 16487, source=_NTU),
    "ntu60_xview": Release(3, 300, 25, 2, 60, "ntu25", 37646, 18932, source=_NTU),
    "ntu120_xsub": Release(3, 300, 25, 2, 120, "ntu25", 63026, 50919, source=_NTU),
    "ntu120_xset": Release(3, 300, 25, 2, 120, "ntu25", 54468, 59477, source=_NTU),
    "pku1_xsub": Release(3, 300, 25, 2, 51, "ntu25", 18841, 2704, source="FACTS §4 (PKU-MMD I instances)"),
    "pku2_xsub": Release(3, 300, 25, 2, 51, "ntu25", 5332, 1613, source="PKU-MMD II xsub as the skeleton literature splits it (unverified here)"),
    "uav_csv1": Release(3, 300, 17, 2, 155, "coco17", 16724, 6307, source="UAV-Human CSv1 as commonly cited (unverified here)"),
    "uav_csv2": Release(3, 300, 17, 2, 155, "coco17", 16431, 6600, source="UAV-Human CSv2 as commonly cited (unverified here)"),
    "ntu60_2d_xsub": Release(3, 300, 17, 2, 60, "coco17", 40091, 16487, source=_PYSKL),
    "ntu60_2d_xview": Release(3, 300, 17, 2, 60, "coco17", 37646, 18932, source=_PYSKL),
    "ntu120_2d_xsub": Release(3, 300, 17, 2, 120, "coco17", 63026, 50919, source=_PYSKL),
    "ntu120_2d_xset": Release(3, 300, 17, 2, 120, "coco17", 54468, 59477, source=_PYSKL),
    "nwucla_xview": Release(3, 201, 20, 1, 10, "nwucla20", 1020, 464, min_frames=8,
                            source="the NW-UCLA release as read here (1,020 / 464, T 201)"),
}

#: the untrimmed video sets of detection / segmentation and their class counts (without the background)
VIDEO_CLASSES = {"pku1": 51, "pku2": 51}


def rehearsal_arrays(like: str, samples: int, part: str, seed: int = 0) -> SkeletonArrays:
    """``samples`` synthetic sequences shaped as ``like``'s release (:data:`RELEASES`): smooth motion of a
    random rest pose, class-dependent frequencies, a second person in every other sample where the release
    has two, zero padding beyond each sample's valid frames, two samples per class in turn (classes drawn
    from all the release's).

    Raises:
        KeyError: ``like`` has no known release (the known ones are named).
    """
    if like not in RELEASES:
        raise KeyError(f"no release shape known for dataset {like!r}; a rehearsal knows: {', '.join(sorted(RELEASES))}")
    r = RELEASES[like]
    rng = np.random.default_rng([seed, 0 if part == "train" else 1, len(like)])
    c, t, v, m = r.shape
    # two samples of each class in turn (a class has neighbours; silhouettes and kNN are defined), spread
    # over all the release's classes
    labels = (rng.permutation(r.num_classes)[(np.arange(samples) // 2) % r.num_classes]).astype(np.int64)
    num_frames = rng.integers(min(r.min_frames, t), t + 1, size=samples)
    rest = rng.normal(0.0, 0.3, size=(1, c, 1, v, 1)).astype(np.float32)
    time = np.arange(t, dtype=np.float32)[None, None, :, None, None]
    freq = (1 + labels % 7).astype(np.float32)[:, None, None, None, None] / t
    amp = rng.uniform(0.02, 0.2, size=(samples, c, 1, v, 1)).astype(np.float32)
    data = np.repeat(rest + amp * np.sin(2 * np.pi * freq * time), m, axis=4).astype(np.float32)
    data += rng.normal(0.0, 0.01, size=data.shape).astype(np.float32)
    if m > 1:
        data[:, 0, :, :, 1:] += 0.8  # the second person stands beside the first
        data[1::2, :, :, :, 1:] = 0.0  # ... in every other sample
    for i, n in enumerate(num_frames):
        data[i, :, n:] = 0.0
    meta = pd.DataFrame({"subject": np.full(samples, 1 if part == "train" else 2), "camera": -1, "setup": -1,
                         "repetition": -1})
    return SkeletonArrays(data=data, labels=labels, num_frames=num_frames.astype(np.int64), meta=meta,
                          names=[f"{like}-{part}-{i}" for i in range(samples)], num_classes=r.num_classes,
                          layout=r.layout, source=f"rehearsal({like}, seed={seed})")


@register_dataset(REHEARSAL_DATASET, description="synthetic data shaped as a named dataset's release (run --rehearse)",
                  splits=("rehearsal",), files=False, default_split="rehearsal")
def rehearsal_dataset(path: str | None = None, split: str = "rehearsal", *, like: str = "ntu60_xsub", samples: int = 8,
                      seed: int = 0) -> tuple[SkeletonArrays, SkeletonArrays]:
    """(train, test) of :func:`rehearsal_arrays` shaped as ``like``'s release, ``samples`` each."""
    return rehearsal_arrays(like, samples, "train", seed), rehearsal_arrays(like, samples, "test", seed)
