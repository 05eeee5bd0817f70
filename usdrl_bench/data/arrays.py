"""The dataset type every reader returns: skeleton arrays plus labels, frame counts and metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

META_COLUMNS: tuple[str, ...] = ("subject", "camera", "setup", "repetition")


@dataclass
class SkeletonArrays:
    """Skeleton sequences of one dataset (or one split of it).

    Attributes:
        data: ``(N, C, T, V, M)`` float32, zero-padded beyond each sample's valid frames; a
            ``np.memmap`` when read from ``.npy`` with ``mmap_mode="r"``. Units: metres for Kinect data.
        labels: ``(N,)`` int64, 0-based class ids.
        num_frames: ``(N,)`` int64, valid frames per sample (``1 <= num_frames <= T``).
        meta: N rows with integer columns ``subject``, ``camera``, ``setup``, ``repetition`` (-1 when
            unknown) from which named splits are derived.
        names: ``N`` sample names (e.g. NTU file stems ``S001C001P001R001A001``).
        num_classes: number of classes of the dataset (not only those present).
        layout: skeleton layout name (``ntu25``, ``kinect20``), see :mod:`usdrl_bench.skeleton`.
        class_names: optional, one per class.
        source: where the data came from (a path or ``synthetic(seed=...)``), for provenance.
    """

    data: np.ndarray
    labels: np.ndarray
    num_frames: np.ndarray
    meta: pd.DataFrame
    names: list[str]
    num_classes: int
    layout: str
    class_names: list[str] | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.data)
        if self.data.ndim != 5:
            raise ValueError(f"SkeletonArrays.data must be (N, C, T, V, M); got shape {tuple(self.data.shape)}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.num_frames = np.asarray(self.num_frames, dtype=np.int64)
        for what, arr in (("labels", self.labels), ("num_frames", self.num_frames)):
            if arr.shape != (n,):
                raise ValueError(f"SkeletonArrays.{what} must have shape ({n},); got {arr.shape}")
        if len(self.meta) != n or len(self.names) != n:
            raise ValueError(f"SkeletonArrays: meta has {len(self.meta)} rows and names {len(self.names)}; expected {n}")
        missing = [c for c in META_COLUMNS if c not in self.meta.columns]
        if missing:
            raise ValueError(f"SkeletonArrays.meta lacks columns {missing}")
        self.meta = self.meta.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.data)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(N, C, T, V, M)``."""
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    def subset(self, index: np.ndarray) -> "SkeletonArrays":
        """The samples at ``index`` (int indices or a boolean mask); data is copied into memory."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return SkeletonArrays(
            data=np.ascontiguousarray(self.data[index]),
            labels=self.labels[index],
            num_frames=self.num_frames[index],
            meta=self.meta.iloc[index].reset_index(drop=True),
            names=[self.names[i] for i in index],
            num_classes=self.num_classes,
            layout=self.layout,
            class_names=self.class_names,
            source=self.source,
            extra=dict(self.extra),
        )

    def save(self, directory: str | Path, prefix: str) -> None:
        """Write ``{prefix}_data_joint.npy``, ``_label.npy``, ``_num_frame.npy``, ``_meta.csv`` to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / f"{prefix}_data_joint.npy", np.asarray(self.data, dtype=np.float32))
        np.save(directory / f"{prefix}_label.npy", self.labels)
        np.save(directory / f"{prefix}_num_frame.npy", self.num_frames)
        meta = self.meta.copy()
        meta.insert(0, "name", self.names)
        meta.to_csv(directory / f"{prefix}_meta.csv", index=False)


# --- named splits -------------------------------------------------------------------------------

NTU60_XSUB_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_XSUB_TRAIN_SUBJECTS = NTU60_XSUB_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103,
)
XVIEW_TRAIN_CAMERAS = (2, 3)

SplitRule = Callable[[pd.DataFrame], np.ndarray]

#: Official NTU split rules (FACTS §2): each maps metadata to a boolean "is in the training set" mask.
NTU_SPLITS: dict[str, SplitRule] = {
    "xsub": lambda meta: meta["subject"].isin(NTU120_XSUB_TRAIN_SUBJECTS).to_numpy(),
    "xview": lambda meta: meta["camera"].isin(XVIEW_TRAIN_CAMERAS).to_numpy(),
    "xset": lambda meta: (meta["setup"] % 2 == 0).to_numpy(),
}


def split_by_rule(arrays: SkeletonArrays, split: str, rules: dict[str, SplitRule]) -> tuple[SkeletonArrays, SkeletonArrays]:
    """Split ``arrays`` into (train, test) with the named rule.

    Raises:
        KeyError: unknown split name, listing the known ones.
    """
    if split not in rules:
        raise KeyError(f"Unknown split {split!r} for {arrays.source or 'this dataset'}; available: {', '.join(rules)}")
    train_mask = np.asarray(rules[split](arrays.meta), dtype=bool)
    return arrays.subset(train_mask), arrays.subset(~train_mask)
