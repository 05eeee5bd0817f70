"""The PKU-MMD action-detection metrics: the official mAP over actions and over videos, and the VOC-style
variant some papers report.

Official metric (FACTS §5; ``PKU:evaluate.py`` of 2017-05-31 as ported in ``FSM:scripts/cal_mAP.py``),
reproduced step for step:

* a *proposal* and a *ground truth* (GT) are ``(label, start, end, confidence)`` in one video;
* overlap = ``(min(ends) - max(starts)) / (max(ends) - min(starts))``, frames as given (no +1), 0 unless
  the label and the video are the same;
* matching: each proposal goes to the same-label GT of its video with the highest overlap, if that is
  ≥ θ (on equal overlaps the later GT in file order wins); a GT is *detected* when at least one
  proposal goes to it; ``positive`` = detected GTs;
* AP: proposals sorted by confidence, ascending (a stable sort: ties keep their input order); starting
  from the full set with precision = positive / proposals and recall = positive / GTs, the proposals are
  removed one at a time; removing a matched proposal whose GT has no other proposal left lowers
  ``positive``; after each matched removal precision and recall are recomputed (both 0 once no proposal
  is left), the precision is kept as a running maximum, and AP += max precision × the drop in recall;
  a set with no proposal or no GT has AP 0;
* ``mAP_a`` (over actions) = the mean of the per-class AP over classes 1..51, proposals and GTs pooled
  over videos; the divisor is always 51, so a class absent from the GT counts as 0;
* ``mAP_v`` (over videos) = the mean of the per-video AP over the videos scored;
* ``AP`` (all classes pooled), ``F1`` (at the full set) and ``2D-AP`` (AP averaged over θ = 0.05, 0.10,
  ..., 1.00) as the script prints them.

VOC-style variant (``SSD:evaluate_metrics.py``, FACTS §5), labelled as such wherever it is reported:
per class, proposals sorted by score (descending) are greedily matched to the unmatched GT of the same
video with the highest IoU, where IoU counts frames inclusively (``+1``); AP is the area under the
interpolated precision-recall curve; the mean runs over the classes present in the GT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.io import write_text_atomic

#: PKU-MMD I: labels 1..51 (0 = background).
NUM_ACTIONS = 51
#: θ of the official metric.
THETA = 0.5
#: the thresholds of 2D-AP.
THETAS_2D = tuple(round(0.05 * k, 2) for k in range(1, 21))


@dataclass(frozen=True)
class Segment:
    """An action instance or a proposal: label (1..51), ``[start, end)`` in frames, confidence, video."""

    label: int
    start: float
    end: float
    confidence: float = 1.0
    video: str = ""


def overlap(a: Segment, b: Segment) -> float:
    """The official overlap: ``(min end - max start) / (max end - min start)``, 0 for another label or video."""
    if a.label != b.label or a.video != b.video:
        return 0.0
    union = max(a.end, b.end) - min(a.start, b.start)
    return (min(a.end, b.end) - max(a.start, b.start)) / union if union > 0 else 0.0


def _match(proposals: Sequence[Segment], truths: Sequence[Segment], theta: float) -> tuple[list[int], list[int]]:
    """Per proposal the index of its GT (-1: none), and per GT how many proposals went to it."""
    by_label: dict[tuple[int, str], list[int]] = {}
    for j, g in enumerate(truths):
        by_label.setdefault((g.label, g.video), []).append(j)
    assigned = [-1] * len(proposals)
    counts = [0] * len(truths)
    for i, p in enumerate(proposals):
        best = -1.0
        for j in by_label.get((p.label, p.video), ()):
            o = overlap(p, truths[j])
            if o >= theta and o >= best:  # on ties the later GT wins, as the official loop
                best, assigned[i] = o, j
        if assigned[i] >= 0:
            counts[assigned[i]] += 1
    return assigned, counts


def _pr(positive: int, proposals: int, truths: int) -> tuple[float, float]:
    if proposals == 0 or truths == 0:
        return 0.0, 0.0
    return positive / proposals, positive / truths


def official_ap(proposals: Sequence[Segment], truths: Sequence[Segment], theta: float = THETA) -> float:
    """The official interpolated AP of ``proposals`` against ``truths`` (module docstring)."""
    ordered = sorted(proposals, key=lambda p: p.confidence)  # stable: ties keep their order
    assigned, counts = _match(ordered, truths, theta)
    positive = sum(c > 0 for c in counts)
    remaining = len(ordered)
    best_precision, old_recall = _pr(positive, remaining, len(truths))
    score = 0.0
    for i in range(len(ordered)):
        remaining -= 1
        if assigned[i] < 0:
            continue
        counts[assigned[i]] -= 1
        if counts[assigned[i]] == 0:
            positive -= 1
        precision, recall = _pr(positive, remaining, len(truths))
        best_precision = max(best_precision, precision)
        score += best_precision * (old_recall - recall)
        old_recall = recall
    return score


def official_f1(proposals: Sequence[Segment], truths: Sequence[Segment], theta: float = THETA) -> float:
    """F1 of the full proposal set (the official script's F1); 0 when precision and recall are both 0."""
    _, counts = _match(proposals, truths, theta)
    precision, recall = _pr(sum(c > 0 for c in counts), len(proposals), len(truths))
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _by(items: Iterable[Segment], key) -> dict:
    out: dict = {}
    for s in items:
        out.setdefault(key(s), []).append(s)
    return out


@dataclass
class DetectionScores:
    """What :func:`evaluate_detection` returns (fractions in [0, 1])."""

    map_action: float
    map_video: float
    ap: float
    f1: float
    ap_2d: float
    per_class: dict[int, float]
    per_video: dict[str, float]
    theta: float
    num_proposals: int = 0  # proposals scored (all videos)
    num_truths: int = 0  # ground-truth instances of the videos given

    def as_dict(self) -> dict[str, float]:
        return {"mAP_a": self.map_action, "mAP_v": self.map_video, "AP": self.ap, "F1": self.f1, "2D-AP": self.ap_2d}


def evaluate_detection(proposals: Mapping[str, Sequence[Segment]], truths: Mapping[str, Sequence[Segment]], *,
                       theta: float = THETA, num_actions: int = NUM_ACTIONS) -> DetectionScores:
    """The official PKU-MMD metrics over videos.

    Args:
        proposals: per video name, its proposals (the ``video`` field is set from the key).
        truths: per video name, its GT instances; every video of ``proposals`` must have one (an empty list
            is allowed).
        theta: overlap threshold (0.5).
        num_actions: classes 1..num_actions enter mAP_a (51 for PKU-MMD I).

    Returns:
        :class:`DetectionScores`. mAP_v averages over the videos of ``proposals`` (as the official script,
        which lists the proposal folder); videos present only in ``truths`` count in mAP_a and AP as
        missed instances.

    Raises:
        KeyError: a video with proposals but no GT entry.
    """
    missing = sorted(set(proposals) - set(truths))
    if missing:
        raise KeyError(f"no ground truth for video(s) {', '.join(missing[:5])}")
    videos = sorted(proposals)
    props = {v: [Segment(p.label, p.start, p.end, p.confidence, v) for p in proposals[v]] for v in videos}
    gts = {v: [Segment(g.label, g.start, g.end, g.confidence, v) for g in truths[v]] for v in sorted(truths)}
    # pooled lists in the official order: videos in turn, then by class (a_props = classes, videos in order)
    all_props = [p for v in videos for p in props[v]]
    all_gts = [g for v in gts for g in gts[v]]
    p_by_class, g_by_class = _by(all_props, lambda s: s.label), _by(all_gts, lambda s: s.label)
    pooled_p = [p for c in sorted(p_by_class) for p in p_by_class[c]]
    pooled_g = [g for c in sorted(g_by_class) for g in g_by_class[c]]
    per_class = {c: official_ap(p_by_class.get(c, []), g_by_class.get(c, []), theta) for c in range(1, num_actions + 1)}
    per_video = {v: official_ap(props[v], gts.get(v, []), theta) for v in videos}
    return DetectionScores(
        map_action=sum(per_class.values()) / num_actions,
        map_video=sum(per_video.values()) / len(videos) if videos else 0.0,
        ap=official_ap(pooled_p, pooled_g, theta),
        f1=official_f1(pooled_p, pooled_g, theta),
        ap_2d=float(np.mean([official_ap(pooled_p, pooled_g, t) for t in THETAS_2D])),
        per_class=per_class, per_video=per_video, theta=theta, num_proposals=len(all_props), num_truths=len(all_gts),
    )


# --- VOC-style variant ---------------------------------------------------------------------------------


def iou_inclusive(a: Segment, b: Segment) -> float:
    """IoU counting frames inclusively (``end - start + 1``), as ``SSD:evaluate_metrics.py``."""
    inter = min(a.end, b.end) - max(a.start, b.start) + 1
    if inter <= 0:
        return 0.0
    union = (a.end - a.start + 1) + (b.end - b.start + 1) - inter
    return inter / union


def voc_ap(proposals: Sequence[Segment], truths: Sequence[Segment], iou: float = THETA) -> float:
    """VOC-style AP of one class: greedy matching by descending score, each GT at most once, all-point
    interpolated area under the precision-recall curve. 0 when there is no GT."""
    if not truths:
        return 0.0
    order = sorted(range(len(proposals)), key=lambda i: -proposals[i].confidence)  # stable on ties
    used: set[int] = set()
    tp = np.zeros(len(order))
    for rank, i in enumerate(order):
        p = proposals[i]
        best, best_j = iou, -1
        for j, g in enumerate(truths):
            if j in used or g.video != p.video or g.label != p.label:
                continue
            o = iou_inclusive(p, g)
            if o >= best:
                best, best_j = o, j
        if best_j >= 0:
            used.add(best_j)
            tp[rank] = 1
    if not len(order):
        return 0.0
    cum_tp = np.cumsum(tp)
    recall = cum_tp / len(truths)
    precision = cum_tp / np.arange(1, len(order) + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for k in range(len(mpre) - 2, -1, -1):
        mpre[k] = max(mpre[k], mpre[k + 1])
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def voc_map(proposals: Mapping[str, Sequence[Segment]], truths: Mapping[str, Sequence[Segment]], iou: float = THETA) -> float:
    """VOC-style mAP: the mean of :func:`voc_ap` over the classes present in the GT (FACTS §5, SSD)."""
    props = [Segment(p.label, p.start, p.end, p.confidence, v) for v, ps in proposals.items() for p in ps]
    gts = [Segment(g.label, g.start, g.end, g.confidence, v) for v, gs in truths.items() for g in gs]
    p_by, g_by = _by(props, lambda s: s.label), _by(gts, lambda s: s.label)
    if not g_by:
        return 0.0
    return float(np.mean([voc_ap(p_by.get(c, []), g_by[c], iou) for c in sorted(g_by)]))


# --- files in the official format --------------------------------------------------------------------------


def read_segments(path: str | Path, num_actions: int | None = None) -> list[Segment]:
    """One video's file: lines ``label,start,end,confidence`` (commas or spaces); ground truth and proposals
    alike.

    Args:
        num_actions: when given, labels must lie in ``1..num_actions``.
    Raises:
        DataFormatError: a line that is not 4 finite numbers, a label that is not a whole number >= 1 (or above
            ``num_actions``), a negative frame, a start after its end (file and line named).
    """
    path = Path(path)
    out = []
    for i, raw in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        line = raw.replace(",", " ").split()
        if not line:
            continue
        text = raw.strip()[:80]
        if len(line) != 4:
            raise DataFormatError(path, f"expected label,start,end,confidence, got {text!r}", line=i)
        try:
            label, start, end, conf = (float(x) for x in line)
        except ValueError:
            raise DataFormatError(path, f"expected 4 numbers, got {text!r}", line=i) from None
        if not all(math.isfinite(v) for v in (label, start, end, conf)):
            raise DataFormatError(path, f"NaN or infinity in {text!r}", line=i)
        if label != int(label) or label < 1 or (num_actions is not None and label > num_actions):
            limit = f"1..{num_actions}" if num_actions is not None else "a whole number >= 1"
            raise DataFormatError(path, f"label {line[0]} is not in {limit} (0 is the background, not an action)", line=i)
        if start < 0 or end < start:
            raise DataFormatError(path, f"frames must satisfy 0 <= start <= end, got start {line[1]}, end {line[2]}",
                                  line=i)
        out.append(Segment(int(label), start, end, conf, path.stem))
    return out


def write_segments(path: str | Path, segments: Iterable[Segment]) -> Path:
    """Write proposals in the official format (``label,start,end,confidence`` per line)."""
    lines = [f"{s.label},{int(round(s.start))},{int(round(s.end))},{s.confidence:.6f}" for s in segments]
    return write_text_atomic(path, "\n".join(lines) + ("\n" if lines else ""))


def score_folders(gt_dir: str | Path, pred_dir: str | Path, *, theta: float = THETA,
                  num_actions: int = NUM_ACTIONS) -> tuple[DetectionScores, float, list[str]]:
    """Score a folder of proposal files (``<video>.txt``) against a folder of GT files, as the official script
    does (every proposal file needs its GT file).

    Returns:
        ``(official scores, VOC-style mAP at IoU theta, videos with GT but no proposal file)``.

    Raises:
        FileNotFoundError: a folder is missing, or holds no ``.txt`` file; a proposal file has no GT file.
        DataFormatError: a malformed line (file and line named).
    """
    if isinstance(num_actions, bool) or not isinstance(num_actions, int) or num_actions < 1:
        raise ValueError(f"num_actions must be a positive number of classes (PKU-MMD: 51), got {num_actions!r}")
    if not 0.0 < theta <= 1.0:
        raise ValueError(f"theta must lie in (0, 1], got {theta}")
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for d in (gt_dir, pred_dir):
        if not d.is_dir():
            raise FileNotFoundError(f"not a directory: {d}")
    preds = {p.stem: read_segments(p, num_actions) for p in sorted(pred_dir.glob("*.txt"))}
    if not preds:
        raise FileNotFoundError(f"no proposal files (<video>.txt) in {pred_dir}")
    lacking = [v for v in preds if not (gt_dir / f"{v}.txt").is_file()]
    if lacking:
        raise FileNotFoundError(f"no ground-truth file in {gt_dir} for {', '.join(lacking[:5])}")
    gts = {v: read_segments(gt_dir / f"{v}.txt", num_actions) for v in preds}
    without = sorted(p.stem for p in gt_dir.glob("*.txt") if p.stem not in preds)
    return evaluate_detection(preds, gts, theta=theta, num_actions=num_actions), voc_map(preds, gts, theta), without
