"""The ``detection`` evaluation (paper Table 4): frame-wise classification of untrimmed videos with a
background class, proposals, and the official PKU-MMD metrics.

Training windows tile the training videos (stride ``W/2``); a head predicts every frame's class from
the dense frame features (:func:`~usdrl_bench.detection.frames.dense_frame_features`):

* ``head: linear``: a linear layer on the frozen encoder (features of every window computed once);
* ``head: finetune``: the encoder and the linear layer trained together (the USDRL authors' FSM code:
  SGD, momentum 0.9, the encoder in eval mode so DropPath is off).

Test videos are covered by windows with stride ``W/4``; the softmax probabilities of overlapping windows
are averaged per frame; proposals come from the ``activity`` or ``per_class`` procedure and are scored
with the official mAP over actions and over videos at ``theta`` (and the VOC-style variant, labelled as
such). The proposals of every test video are written in the official format beside the record
(``proposals/<video>.txt``, with the ground truth in ``truth/``), so ``usdrl-bench score-detection`` can
score them again, and ``frames.npz`` keeps the frame probabilities of a few videos for the timeline plot.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from usdrl_bench.detection.frames import (PAD_LABEL, PROPOSALS, dense_frame_features, make_windows, merge_windows,
                                          segments_from_labels)
from usdrl_bench.detection.metric import evaluate_detection, voc_map, write_segments
from usdrl_bench.detection.videos import VideoSet, load_videos
from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.io import save_npz_atomic
from usdrl_bench.ranges import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability
from usdrl_bench.registry import EVALUATIONS

log = logging.getLogger(__name__)
HEADS = ("linear", "finetune")
#: a frame-wise head: a linear layer on the frozen encoder, or the encoder fine-tuned with it
Head = Literal["linear", "finetune"]
TIMELINE_VIDEOS = 3


@functools.lru_cache(maxsize=4)
def _videos(key: str, data_root: str | None) -> VideoSet:
    spec = json.loads(key)
    return load_videos(spec.pop("name"), spec.pop("path", None), data_root=data_root, **(spec.pop("options", None) or {}))


def _features(encoder: nn.Module, x: torch.Tensor, window: int) -> torch.Tensor:
    """``(N, C, W, V, M) -> (N, W, 2H)``: resized to the encoder's T and back when W differs from it."""
    t = encoder.num_frames
    if x.shape[2] != t:
        x = F.interpolate(x.permute(0, 1, 3, 4, 2).reshape(-1, 1, x.shape[2]), size=t, mode="linear",
                          align_corners=False).reshape(*x.shape[:2], *x.shape[3:], t).permute(0, 1, 4, 2, 3)
    f = dense_frame_features(encoder, x)
    if f.shape[1] != window:
        f = F.interpolate(f.transpose(1, 2), size=window, mode="linear", align_corners=False).transpose(1, 2)
    return f


def _batches(n: int, size: int, generator: torch.Generator, shuffle: bool = True):
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, size):
        yield order[i:i + size]


def train_head(encoder: nn.Module, x: np.ndarray, y: np.ndarray, num_classes: int, *, head: str, epochs: int, lr: float,
               batch_size: int, momentum: float, weight_decay: float, device: torch.device, seed: int) -> tuple[nn.Module, nn.Module]:
    """Train the frame classifier on windows ``x (N, C, W, V, M)`` with labels ``y (N, W)`` (-1 ignored).

    Returns:
        ``(encoder, head)``: the encoder is the given one (``linear``) or a trained copy (``finetune``).
    """
    if head not in HEADS:
        raise ValueError(f"detection head must be one of {', '.join(HEADS)}, got {head!r}")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    window = x.shape[2]
    encoder = encoder.to(device).eval()
    if head == "finetune":
        encoder = copy.deepcopy(encoder)  # the runner's encoder serves other evaluations
    dim = 2 * encoder.hidden_size
    classifier = nn.Linear(dim, num_classes).to(device)
    nn.init.normal_(classifier.weight, std=0.01)
    nn.init.zeros_(classifier.bias)
    yt = torch.from_numpy(y).to(device)
    if head == "linear":  # frozen: the features of every window once, then frames as samples
        with torch.no_grad():
            feats = torch.cat([_features(encoder, torch.from_numpy(x[i:i + 256]).to(device), window)
                               for i in range(0, len(x), 256)])
        frames, labels = feats.reshape(-1, dim), yt.reshape(-1)
        keep = labels != PAD_LABEL
        frames, labels = frames[keep], labels[keep]
        opt = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        for _ in range(epochs):
            for idx in _batches(len(frames), batch_size * window, gen):
                loss = F.cross_entropy(classifier(frames[idx]), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return encoder, classifier
    params = list(encoder.parameters()) + list(classifier.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    xt = torch.from_numpy(x)
    for _ in range(epochs):
        for idx in _batches(len(x), batch_size, gen):
            logits = classifier(_features(encoder, xt[idx].to(device), window))
            loss = F.cross_entropy(logits.reshape(-1, num_classes), yt[idx].reshape(-1), ignore_index=PAD_LABEL)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return encoder.eval(), classifier


@torch.no_grad()
def frame_probabilities(encoder: nn.Module, classifier: nn.Module, videos, window: int, stride: int,
                        device: torch.device, batch_size: int = 128) -> list[np.ndarray]:
    """Per video ``(T, K)`` softmax probabilities, overlapping windows averaged."""
    out = []
    for video in videos:
        x, _, where = make_windows([video], window, stride)
        probs = []
        for i in range(0, len(x), batch_size):
            logits = classifier(_features(encoder, torch.from_numpy(x[i:i + batch_size]).to(device), window))
            probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
        out.append(merge_windows(video.num_frames, [s for _, s in where], np.concatenate(probs)))
    return out


def check_frame_head_options(*, data: dict[str, Any] | None = None, example: str = "pku1", **_: Any) -> None:
    """The registered ``check`` of the detection and segmentation evaluations: what the declared ranges of
    their signatures cannot say, that ``data`` names the videos' reader (checked when a protocol is loaded;
    ``example`` is the reader the message suggests). Raises ValueError."""
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError(f"data must be a mapping with the videos' reader name ({{name: {example}, path: DIR}}), got {data!r}")


def frame_head_probabilities(ctx: EvalContext, data: dict[str, Any], *, head: str, window: int | None,
                             train_stride: int | None, test_stride: int | None, epochs: int, lr: float, batch_size: int,
                             momentum: float, weight_decay: float) -> tuple[VideoSet, list[np.ndarray]]:
    """Train a frame classifier on the training videos of ``data`` (windows of ``window`` frames, default the
    encoder's T, stride ``train_stride`` default W/2) and return the videos and, per test video, its
    ``(T, K)`` frame probabilities (overlapping windows of stride ``test_stride``, default W/4, averaged)."""
    videos = _videos(json.dumps(data, sort_keys=True), None if ctx.data_root is None else str(ctx.data_root))
    window = int(window or ctx.encoder.num_frames)
    x, y, _ = make_windows(videos.train, window, int(train_stride or max(1, window // 2)))
    encoder, classifier = train_head(ctx.encoder, x, y, videos.num_classes, head=head, epochs=epochs, lr=lr,
                                     batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                                     device=ctx.device, seed=ctx.seed)
    probs = frame_probabilities(encoder, classifier, videos.test, window, int(test_stride or max(1, window // 4)), ctx.device)
    return videos, probs


@EVALUATIONS.register("detection", description="temporal action detection: frame-wise head, proposals, official PKU-MMD mAP",
                      check=check_frame_head_options)
def detection_evaluation(
    ctx: EvalContext,
    *,
    data: dict[str, Any],
    head: Head = "linear",
    window: PositiveInt | None = None,
    train_stride: PositiveInt | None = None,
    test_stride: PositiveInt | None = None,
    epochs: PositiveInt = 30,
    lr: PositiveFloat = 0.1,
    batch_size: PositiveInt = 64,
    momentum: NonNegativeFloat = 0.9,
    weight_decay: NonNegativeFloat = 0.0,
    proposals: Literal["activity", "per_class"] = "activity",
    smooth: NonNegativeInt = 10,
    threshold: Probability = 0.4,
    theta: Fraction = 0.5,
) -> list[Metric]:
    """Detection on untrimmed videos with the pretrained encoder (module docstring).

    Args:
        data: the videos: ``{name: synthetic_untrimmed, options: {...}}`` or ``{name: pku1, path: DIR}``
            (see :func:`~usdrl_bench.detection.videos.load_videos`).
        head: ``linear`` (frozen encoder) or ``finetune`` (everything trained).
        window: frames per window (default: the encoder's T); train / test strides default to W/2, W/4.
        epochs, lr, batch_size (windows), momentum, weight_decay: SGD of the head (``linear``: batches of
            ``batch_size * W`` frames).
        proposals: ``activity`` (``smooth`` = k of the moving mean, ``threshold`` on 1 - P(background)) or
            ``per_class`` (``threshold`` on each class's probability, 0.02 in FSM).
        theta: overlap threshold of the official metric.

    Returns:
        ``map_action@θ`` and ``map_video@θ`` (official, %), ``voc_map_action@θ`` (VOC-style, %), ``ap_2d``
        (%), ``frame_top1`` (% of frames whose argmax is the label).

    Raises:
        ValueError: unknown head or proposal procedure.
    """
    if proposals not in PROPOSALS:
        raise ValueError(f"proposals must be one of {', '.join(PROPOSALS)}, got {proposals!r}")
    videos, probs = frame_head_probabilities(ctx, data, head=head, window=window, train_stride=train_stride,
                                             test_stride=test_stride, epochs=epochs, lr=lr, batch_size=batch_size,
                                             momentum=momentum, weight_decay=weight_decay)
    make = PROPOSALS[proposals]
    options = {"smooth": smooth, "threshold": threshold} if proposals == "activity" else {"threshold": threshold}
    preds = {v.name: make(p, **options) for v, p in zip(videos.test, probs)}
    truths = {v.name: v.truth if v.truth is not None else segments_from_labels(v.labels) for v in videos.test}
    scores = evaluate_detection(preds, truths, theta=theta, num_actions=videos.num_classes - 1)
    voc = voc_map(preds, truths, theta)
    correct = sum(int((p.argmax(1) == v.labels).sum()) for v, p in zip(videos.test, probs))
    total = sum(v.num_frames for v in videos.test)
    if ctx.artifact_dir is not None:
        _write_artifacts(ctx, videos, probs, preds, truths)
    t = f"{theta:g}"
    note = f"{len(videos.test)} test videos, {head} head, {proposals} proposals"
    return [
        Metric(f"map_action@{t}", 100 * scores.map_action, note=f"official PKU-MMD mAP over {videos.num_classes - 1} actions; {note}"),
        Metric(f"map_video@{t}", 100 * scores.map_video, note=f"official PKU-MMD mAP over videos; {note}"),
        Metric(f"voc_map_action@{t}", 100 * voc, note="VOC-style (greedy matching, inclusive IoU, classes present), not the official metric"),
        Metric("ap_2d", 100 * scores.ap_2d, note="official AP averaged over theta = 0.05 ... 1.00"),
        Metric("frame_top1", 100 * correct / total, note="frame-wise accuracy, background included"),
    ]


def _write_artifacts(ctx: EvalContext, videos: VideoSet, probs, preds, truths) -> None:
    out = ctx.artifact_dir
    assert out is not None
    for name, segments in preds.items():
        write_segments(out / "proposals" / f"{name}.txt", segments)
        write_segments(out / "truth" / f"{name}.txt", truths[name])
    shown = videos.test[:TIMELINE_VIDEOS]
    arrays = {}
    for i, (v, p) in enumerate(zip(shown, probs)):
        arrays[f"probs_{i}"] = p
        arrays[f"labels_{i}"] = v.labels
    save_npz_atomic(out / "frames.npz", names=np.array([v.name for v in shown]),
                    class_names=np.array(videos.class_names), **arrays)
    ctx.artifacts["detection"] = out
