"""Action segmentation metrics exactly as DeST computes them: frame accuracy, segmental Edit score and F1@k.

Source: DeST ``libs/metric.py`` (``get_segments``, ``levenshtein``, ``get_n_samples``, ``ScoreMeter``; itself
from the TCN metrics of Lea et al.), as used by DeST and LaSA on PKU-MMD II (FACTS-foundation §3). Per-frame
labels are integers, ``background`` (0 here) the background class.

- **Acc**: correct frames / all frames, pooled over the videos, background frames included; frames whose
  ground truth is ``ignore_index`` (255) are removed first, from both sequences.
- **Edit**: per video, the Levenshtein distance ``d`` between the predicted and the ground-truth sequences of
  segment labels (background segments left out), ``(1 - d / max(n_pred, n_gt)) · 100``; averaged over videos.
- **F1@k**: per video, every predicted segment in order is matched to the ground-truth segment of the same
  label with the largest IoU ``(min end - max start) / (max end - min start)``; a true positive when that IoU
  is at least ``k`` and that ground-truth segment is not yet matched, otherwise a false positive (the next
  best segment is not tried); unmatched ground-truth segments are false negatives. TP, FP and FN are summed
  over videos, then ``F1 = 2PR / (P + R + 1e-7) · 100``.

DeST's quirk is kept: a segment that runs to the end of a video ends at index ``T - 1`` (every other segment
ends at the first frame after it), which shortens it by one frame in the IoU.

Where DeST fails, this module defines the value: a video in which neither sequence has an action segment
has Edit 100 (DeST divides by zero); predicted segments of a video without ground-truth segments are all
false positives (DeST's ``argmax`` of an empty array raises); F1 is 0 when there is no true positive (DeST
gets NaN and then 0 with a warning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from usdrl_bench.segmentation.files import read_label_folder

__all__ = ["Segments", "SegmentationScores", "get_segments", "edit_score", "f1_counts", "score_segmentation",
           "THRESHOLDS", "IGNORE_INDEX"]

#: the IoU thresholds of the F1 scores DeST reports
THRESHOLDS = (0.1, 0.25, 0.5)
#: DeST's padding label, removed before scoring
IGNORE_INDEX = 255


@dataclass(frozen=True)
class Segments:
    """The action segments of a frame-label sequence (background left out): ``labels``, ``starts``,
    ``ends`` (DeST's end convention, see the module docstring), each ``(S,)`` int64."""

    labels: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def get_segments(frame_labels: Sequence[int] | np.ndarray, background: int = 0) -> Segments:
    """DeST's ``get_segments``: runs of equal labels that are not ``background``.

    Args:
        frame_labels: ``(T,)`` integer labels, ``T >= 1``.
        background: the background label.
    Returns:
        :class:`Segments`; a run starting at ``s`` ends at the first frame of the next run, and the run that
        reaches the last frame ends at ``T - 1`` (DeST's quirk).
    Raises:
        ValueError: an empty sequence.
    """
    y = np.asarray(frame_labels).reshape(-1)
    if y.size == 0:
        raise ValueError("get_segments: a video needs at least one frame")
    change = np.flatnonzero(y[1:] != y[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(y) - 1]])  # DeST: the last run ends at index T - 1
    labels = y[starts]
    keep = labels != background
    return Segments(labels[keep].astype(np.int64), starts[keep].astype(np.int64), ends[keep].astype(np.int64))


def edit_score(pred: Sequence[int] | np.ndarray, truth: Sequence[int] | np.ndarray) -> float:
    """DeST's normalised ``levenshtein``: ``(1 - d / max(n, m)) · 100`` for segment-label sequences of
    lengths n and m (insertions, deletions, substitutions of cost 1); 100 when both are empty."""
    p, g = list(pred), list(truth)
    n, m = len(p), len(g)
    if max(n, m) == 0:
        return 100.0
    row = list(range(m + 1))
    for i in range(1, n + 1):
        prev, row[0] = row[0], i
        for j in range(1, m + 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (p[i - 1] != g[j - 1]))
    return (1.0 - row[m] / max(n, m)) * 100.0


def f1_counts(pred: Segments, truth: Segments, threshold: float) -> tuple[int, int, int]:
    """DeST's ``get_n_samples``: ``(tp, fp, fn)`` of one video at IoU ``threshold`` (module docstring)."""
    tp = fp = 0
    hit = np.zeros(len(truth), dtype=bool)
    if len(truth) == 0:
        return 0, len(pred), 0
    for label, start, end in zip(pred.labels, pred.starts, pred.ends):
        inter = np.minimum(end, truth.ends) - np.maximum(start, truth.starts)
        union = np.maximum(end, truth.ends) - np.minimum(start, truth.starts)
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 for two one-frame segments at the end: NaN, as DeST
            iou = inter / union * (truth.labels == label)
        best = int(np.argmax(iou))  # the first of equal ones, as numpy's argmax in DeST
        if iou[best] >= threshold and not hit[best]:
            tp += 1
            hit[best] = True
        else:
            fp += 1
    return tp, fp, int(len(truth) - hit.sum())


@dataclass
class SegmentationScores:
    """Acc, Edit and F1@k in %, with the counts behind them.

    Attributes:
        acc: frame accuracy (pooled over videos).
        edit: mean segmental Edit score over videos.
        f1: ``{k: F1@k}``.
        num_videos, num_frames: what was scored.
        counts: ``{k: (tp, fp, fn)}`` summed over videos.
        per_video: ``{video: {"acc": ..., "edit": ...}}``.
    """

    acc: float
    edit: float
    f1: dict[float, float]
    num_videos: int
    num_frames: int
    counts: dict[float, tuple[int, int, int]] = field(default_factory=dict)
    per_video: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        """``{"acc": .., "edit": .., "f1@10": .., "f1@25": .., "f1@50": ..}``."""
        return {"acc": self.acc, "edit": self.edit, **{f"f1@{round(k * 100):d}": v for k, v in self.f1.items()}}


def score_segmentation(
    preds: Mapping[str, np.ndarray],
    truths: Mapping[str, np.ndarray],
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    background: int = 0,
    ignore_index: int | None = IGNORE_INDEX,
) -> SegmentationScores:
    """Score per-video frame labels against the ground truth, as DeST's ``ScoreMeter`` (module docstring).

    Args:
        preds: ``{video: (T,) int}`` predicted frame labels.
        truths: ``{video: (T,) int}`` ground-truth frame labels; every video must be in ``preds`` with the
            same length.
        thresholds: IoU thresholds of the F1 scores.
        background: the background label (left out of Edit and F1, counted in Acc).
        ignore_index: ground-truth label of frames to leave out (DeST's 255 padding); None keeps all.
    Returns:
        :class:`SegmentationScores`.
    Raises:
        ValueError: no videos, a video missing from ``preds`` or of another length, an empty video, a
            threshold outside (0, 1].
    """
    bad = [k for k in thresholds if not 0 < k <= 1]
    if bad:
        raise ValueError(f"thresholds must lie in (0, 1], got {bad}")
    if not truths:
        raise ValueError("no ground-truth videos to score")
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise ValueError(f"no prediction for {len(missing)} video(s): {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    tps = {k: [0, 0, 0] for k in thresholds}
    correct = frames = 0
    edits = []
    per_video = {}
    for video in sorted(truths):
        g = np.asarray(truths[video]).reshape(-1)
        p = np.asarray(preds[video]).reshape(-1)
        if len(p) != len(g):
            raise ValueError(f"video {video}: {len(p)} predicted frames for {len(g)} ground-truth frames")
        if ignore_index is not None:
            keep = g != ignore_index
            p, g = p[keep], g[keep]
        if len(g) == 0:
            raise ValueError(f"video {video}: no frame to score")
        ok = int((p == g).sum())
        correct += ok
        frames += len(g)
        ps, gs = get_segments(p, background), get_segments(g, background)
        e = edit_score(ps.labels, gs.labels)
        edits.append(e)
        per_video[video] = {"acc": 100.0 * ok / len(g), "edit": e}
        for k in thresholds:
            for i, c in enumerate(f1_counts(ps, gs, k)):
                tps[k][i] += c
    f1 = {}
    for k, (tp, fp, fn) in tps.items():
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1[k] = 200.0 * precision * recall / (precision + recall + 1e-7) if tp else 0.0  # DeST's epsilon
    return SegmentationScores(acc=100.0 * correct / frames, edit=float(np.mean(edits)), f1=f1, num_videos=len(truths),
                              num_frames=frames, counts={k: tuple(v) for k, v in tps.items()},  # type: ignore[misc]
                              per_video=per_video)


def score_folders(gt_dir: str | Path, pred_dir: str | Path, *, thresholds: Sequence[float] = THRESHOLDS,
                  background: int = 0) -> SegmentationScores:
    """``usdrl-bench score-segmentation``: :func:`score_segmentation` of a folder of predicted frame-label files
    (``<video>.txt``, one label per line) against a folder of ground-truth ones; every prediction needs its
    ground truth, every ground truth its prediction.

    Raises:
        FileNotFoundError: a folder is missing or holds no ``.txt`` file.
        DataFormatError: a malformed file (named).
        ValueError: a prediction without ground truth, and what :func:`score_segmentation` raises.
    """
    truths, preds = read_label_folder(gt_dir), read_label_folder(pred_dir)
    extra = sorted(set(preds) - set(truths))
    if extra:
        raise ValueError(f"{len(extra)} prediction file(s) in {pred_dir} have no ground truth in {gt_dir}: "
                         f"{', '.join(extra[:5])}" + (" ..." if len(extra) > 5 else ""))
    return score_segmentation(preds, truths, thresholds=thresholds, background=background)
