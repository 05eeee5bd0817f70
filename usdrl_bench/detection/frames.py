"""Windows over untrimmed videos, dense frame features, and proposals from frame-wise probabilities.

* Windows of ``W`` frames tile each video in temporal order with a stride; the last window is aligned to
  the video's end (a video shorter than ``W`` gets one window, zero-padded, its padding labelled -1).
  Per-frame probabilities of overlapping windows are averaged (:func:`merge_windows`), so every frame
  of every video gets one probability vector.
* Dense frame features (the official detect path, FACTS §5): the ``(N, T, H)`` temporal tokens
  concatenated with the ``(N, M·V, H)`` spatial tokens average-pooled over the token axis to ``T``:
  ``(N, T, 2H)``.
* Proposals (FACTS §5), both ``(label, start, end exclusive, score)``:
  ``activity`` (SSD): probabilities smoothed by a centred moving mean of ``2k + 1`` frames; activity =
  1 - P(background); each run of frames with activity >= the threshold is one proposal, its class the
  argmax of the mean non-background probabilities over the run and its score the mean probability of
  that class over the run. ``per_class`` (the USDRL authors' FSM code): for each class, each run of
  frames whose probability exceeds the threshold (0.02) is a proposal scored by its mean probability;
  no NMS.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usdrl_bench.detection.metric import Segment
from usdrl_bench.detection.videos import Video

PAD_LABEL = -1


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Starts of the windows tiling ``[0, num_frames)``: ``0, stride, ...`` and a last one ending at the video's end.

    Raises:
        ValueError: non-positive window or stride.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be positive, got {window}, {stride}")
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


def make_windows(videos: list[Video], window: int, stride: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """All windows of ``videos``: ``(N, 3, W, 25, M)`` joints, ``(N, W)`` labels (-1 on padding) and
    ``(video index, start)`` per window, in video then temporal order."""
    xs, ys, where = [], [], []
    for v, video in enumerate(videos):
        for s in window_starts(video.num_frames, window, stride):
            x = np.zeros(video.joints.shape[:1] + (window,) + video.joints.shape[2:], dtype=np.float32)
            y = np.full(window, PAD_LABEL, dtype=np.int64)
            n = min(window, video.num_frames - s)
            x[:, :n] = video.joints[:, s:s + n]
            y[:n] = video.labels[s:s + n]
            xs.append(x)
            ys.append(y)
            where.append((v, s))
    return np.stack(xs), np.stack(ys), where


def merge_windows(num_frames: int, starts: list[int], probs: np.ndarray) -> np.ndarray:
    """``(num_frames, K)``: the mean of the ``(n, W, K)`` window probabilities over the windows covering each frame."""
    total = np.zeros((num_frames, probs.shape[2]), dtype=np.float64)
    count = np.zeros(num_frames, dtype=np.float64)
    for s, p in zip(starts, probs):
        n = min(len(p), num_frames - s)
        total[s:s + n] += p[:n]
        count[s:s + n] += 1
    if (count == 0).any():
        raise ValueError("some frames are covered by no window")
    return (total / count[:, None]).astype(np.float32)


def dense_frame_features(encoder: nn.Module, x: Tensor) -> Tensor:
    """``(N, C, T, V, M) -> (N, T, 2H)``: temporal tokens and the spatial tokens average-pooled to T (the
    official detect path; T = the encoder's frames)."""
    temporal, spatial = encoder.forward_dense(x)  # (N, T, H), (N, M·V, H)
    pooled = F.adaptive_avg_pool1d(spatial.transpose(1, 2), temporal.shape[1]).transpose(1, 2)
    return torch.cat([temporal, pooled], dim=2)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def moving_mean(probs: np.ndarray, k: int) -> np.ndarray:
    """Centred moving mean over ``2k + 1`` frames along axis 0, the window shrunk at the ends."""
    if k <= 0:
        return probs.copy()
    cs = np.concatenate([np.zeros((1,) + probs.shape[1:]), np.cumsum(probs, axis=0, dtype=np.float64)])
    t = np.arange(len(probs))
    lo, hi = np.maximum(t - k, 0), np.minimum(t + k + 1, len(probs))
    return ((cs[hi] - cs[lo]) / (hi - lo)[:, None]).astype(np.float32)


def activity_proposals(probs: np.ndarray, *, smooth: int = 10, threshold: float = 0.4) -> list[Segment]:
    """SSD's procedure (module docstring) on ``(T, K)`` probabilities, class 0 = background."""
    p = moving_mean(probs, smooth)
    out = []
    for start, end in _runs(1.0 - p[:, 0] >= threshold):
        mean = p[start:end, 1:].mean(axis=0)
        label = int(np.argmax(mean)) + 1
        out.append(Segment(label, start, end, float(p[start:end, label].mean())))
    return out


def per_class_proposals(probs: np.ndarray, *, threshold: float = 0.02) -> list[Segment]:
    """The FSM procedure (module docstring) on ``(T, K)`` probabilities, class 0 = background."""
    out = []
    for label in range(1, probs.shape[1]):
        for start, end in _runs(probs[:, label] > threshold):
            out.append(Segment(label, start, end, float(probs[start:end, label].mean())))
    return out


PROPOSALS = {"activity": activity_proposals, "per_class": per_class_proposals}


def segments_from_labels(labels: np.ndarray) -> list[Segment]:
    """Ground-truth instances of a ``(T,)`` frame-label array: each run of one non-zero label."""
    out = []
    change = np.flatnonzero(np.diff(labels)) + 1
    bounds = np.concatenate([[0], change, [len(labels)]])
    for s, e in zip(bounds[:-1], bounds[1:]):
        if labels[s] > 0:
            out.append(Segment(int(labels[s]), int(s), int(e), 1.0))
    return out
