"""Untrimmed skeleton videos with per-frame labels: the embedded synthetic ones and PKU-MMD I and II.

A video is ``(3, T, 25, 2)`` float32 joints with ``(T,)`` int64 frame labels, 0 = background and
1..K = the action classes (PKU-MMD I: K = 51, 52 classes with the background).

* :func:`generate_untrimmed`: actions of the embedded synthetic dataset (:mod:`usdrl_bench.data.synthetic.generator`)
  strung together, separated and framed by background stretches in which the person stands nearly
  still (a small sway), seeded; train and test videos come from disjoint subjects (the odd and even
  ids, as ``xsub``).
* :func:`load_pku_videos`: PKU-MMD I (detection) or II (segmentation), either prepared by ``usdrl-bench
  data prepare pku1|pku2`` (its ``untrimmed/{train,val}`` folders: the cross-subject parts) or read
  straight from the release (``skeleton/``, ``label/``, ``split/``). Both use the phase-1 class ids
  (52 classes with the background; phase II uses 41 of them, FACTS §4).

Every video is normalised once as a whole the way the recognition data are (``pre_normalization``
without padding: per-frame centring on the spine joint, the first frame's shoulders along +x), so the
encoders see what they were pretrained on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from usdrl_bench.data.readers.named import PREPARE_FOLDERS
from usdrl_bench.data.root import resolve_data_root
from usdrl_bench.data.preparation.pku import (SPLIT_FILES, find_split_file, find_subdir, frame_labels, read_pku_labels,
                                  read_pku_skeleton, read_split_file)
from usdrl_bench.data.preprocess import pre_normalization
from usdrl_bench.data.synthetic.generator import CLASS_NAMES, generate_synthetic
from usdrl_bench.detection.metric import Segment


@dataclass
class Video:
    """One untrimmed video: ``joints (3, T, 25, 2)`` float32 and ``labels (T,)`` int64 (0 = background)."""

    name: str
    joints: np.ndarray
    labels: np.ndarray
    truth: list | None = None  # the annotated instances (Segment), when they come from a label file

    def __post_init__(self) -> None:
        if self.joints.ndim != 4 or self.joints.shape[0] != 3 or self.joints.shape[1] != len(self.labels):
            raise ValueError(f"video {self.name}: joints {self.joints.shape} and {len(self.labels)} labels disagree")

    @property
    def num_frames(self) -> int:
        return len(self.labels)


@dataclass
class VideoSet:
    """Train and test videos of one detection dataset; ``num_classes`` counts the background (PKU-MMD I: 52)."""

    train: list[Video]
    test: list[Video]
    num_classes: int
    class_names: list[str]
    source: str


def normalise_video(joints: np.ndarray, align_z: bool = False) -> np.ndarray:
    """A whole video through ``pre_normalization`` (no padding): ``(3, T, 25, M)`` -> the same shape."""
    return pre_normalization(joints[None], "ntu25", pad=False, align_z=align_z)[0]


def generate_untrimmed(
    *,
    seed: int = 0,
    num_classes: int = 10,
    num_videos: int = 24,
    actions_per_video: int = 6,
    background: tuple[int, int] = (15, 45),
    action_frames: tuple[int, int] = (30, 60),
    num_subjects: int = 6,
) -> VideoSet:
    """Synthetic untrimmed videos (module docstring); half the videos train (odd subjects), half test.

    Args:
        seed: the only source of randomness.
        num_classes: action classes 1..num_classes (the first of :data:`CLASS_NAMES`); labels 0 = background.
        num_videos: videos in all (alternately train and test).
        actions_per_video: action instances per video, classes drawn at random.
        background: length range of each background stretch, frames.
        action_frames: length range of each action, frames.
        num_subjects: subjects of the underlying clips.

    Raises:
        ValueError: fewer than 2 videos or classes outside 1..133.
    """
    if num_videos < 2 or not 1 <= num_classes <= len(CLASS_NAMES) - 1:
        raise ValueError(f"generate_untrimmed: need >= 2 videos and 1 <= num_classes <= {len(CLASS_NAMES) - 1}")
    rng = np.random.default_rng(seed)
    pool = generate_synthetic(seed=seed, num_classes=max(num_classes, 2), num_subjects=num_subjects, num_cameras=3,
                              samples_per_class_subject_camera=2, min_frames=action_frames[0],
                              max_frames=action_frames[1], normalize=False, missing_prob=0.0)
    subjects = pool.meta["subject"].to_numpy()
    train, test = [], []
    for v in range(num_videos):
        is_train = v % 2 == 0
        allowed = np.flatnonzero((subjects % 2 == 1) == is_train)
        pieces, labels = [], []
        first = pool.data[rng.choice(allowed)]

        def still(n: int, anchor: np.ndarray) -> None:
            # the last pose, held with a slow sway of the whole body
            t = np.arange(n, dtype=np.float32)
            sway = 0.01 * np.sin(2 * np.pi * t / max(n, 2))[None, :, None, None]
            pieces.append(np.repeat(anchor[:, -1:], n, axis=1) + sway * (anchor[:, -1:] != 0))
            labels.append(np.zeros(n, dtype=np.int64))

        still(int(rng.integers(*background)), first[:, :1])
        for _ in range(actions_per_video):
            k = int(rng.choice([i for i in allowed if pool.labels[i] < num_classes]))
            n = int(pool.num_frames[k])
            clip = pool.data[k][:, :n]
            pieces.append(clip)
            labels.append(np.full(n, int(pool.labels[k]) + 1, dtype=np.int64))
            still(int(rng.integers(*background)), clip)
        joints = normalise_video(np.concatenate(pieces, axis=1).astype(np.float32))
        video = Video(f"synthetic-{v:03d}", joints, np.concatenate(labels))
        (train if is_train else test).append(video)
    return VideoSet(train, test, num_classes + 1, ["background", *CLASS_NAMES[:num_classes]], f"synthetic_untrimmed(seed={seed})")


def load_pku_videos(path: str | Path, *, dataset: str = "pku1", split: str = "xsub") -> VideoSet:
    """PKU-MMD I (``pku1``) or II (``pku2``) untrimmed videos (52 classes with the background) from a prepared
    folder or the release.

    Args:
        path: a folder holding ``untrimmed/{train,val}/<video>.npy`` (``data prepare pku1|pku2`` output), or
            the release (``skeleton/``, ``label/``, ``split/``).
        dataset: ``pku1`` or ``pku2`` (the split-list names and the name in messages).
        split: ``xsub`` (the prepared folders hold its parts; the release may also give ``xview``).

    Raises:
        FileNotFoundError: neither layout is found, or no video of a part is there.
    """
    phase = {"pku1": "I", "pku2": "II"}[dataset]
    path = Path(path)
    names = ["background"] + [f"action {i}" for i in range(1, 52)]
    prepared = path / "untrimmed"
    parts: dict[str, list[Video]] = {"train": [], "val": []}
    if prepared.is_dir():
        for part in parts:
            for f in sorted((prepared / part).glob("*.npy")):
                if f.stem.endswith("_label"):
                    continue
                joints = np.load(f)
                labels = np.load(f.with_name(f.stem + "_label.npy"))
                parts[part].append(Video(f.stem, normalise_video(joints, align_z=True), labels))
    elif (path / "skeleton").is_dir() or (path / "Skeleton").is_dir():
        skel, lab, split_dir = (find_subdir(path, n) for n in ("skeleton", "label", "split"))
        split_file = find_split_file(split_dir, SPLIT_FILES[dataset][split])
        if split_file is None:
            raise FileNotFoundError(f"no {split} split list in {split_dir}")
        for part, videos in zip(parts, read_split_file(split_file)):
            for v in videos:
                if not (skel / f"{v}.txt").is_file():
                    continue

                joints = read_pku_skeleton(skel / f"{v}.txt")
                instances = read_pku_labels(lab / f"{v}.txt")
                labels = frame_labels(joints.shape[1], instances)
                truth = [Segment(label, start, end, conf, v) for label, start, end, conf in instances]
                parts[part].append(Video(v, normalise_video(joints, align_z=True), labels, truth))
    else:
        raise FileNotFoundError(
            f"no PKU-MMD {phase} videos in {path}: expected untrimmed/{{train,val}}/ (usdrl-bench data prepare "
            f"{dataset}) or the release's skeleton/, label/, split/ folders")
    for part, videos in parts.items():
        if not videos:
            raise FileNotFoundError(f"no {part} video of PKU-MMD {phase} in {path}")
    return VideoSet(parts["train"], parts["val"], 52, names, str(path))


def load_pku1_videos(path: str | Path, *, split: str = "xsub") -> VideoSet:
    """:func:`load_pku_videos` of PKU-MMD I."""
    return load_pku_videos(path, dataset="pku1", split=split)


def load_videos(name: str, path: str | None = None, *, data_root: str | Path | None = None, **options) -> VideoSet:
    """Untrimmed videos by name: ``synthetic_untrimmed`` (options of :func:`generate_untrimmed`), ``pku1`` or
    ``pku2`` (``path``: see :func:`load_pku_videos`; default the prepared folder under ``data_root``: the run's
    data root, which the evaluation receives, else ``$USDRL_DATA``, else ``./data``).

    Raises:
        KeyError: unknown name.
    """
    if name == "synthetic_untrimmed":
        return generate_untrimmed(**options)
    if name in ("pku1", "pku2"):
        if path is None:
            path = str(resolve_data_root(data_root) / PREPARE_FOLDERS[name])
        return load_pku_videos(os.path.expandvars(os.path.expanduser(path)), dataset=name, **options)
    raise KeyError(f"unknown untrimmed-video dataset {name!r}; available: synthetic_untrimmed, pku1, pku2")

