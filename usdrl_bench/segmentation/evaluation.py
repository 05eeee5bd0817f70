"""The ``segmentation`` evaluation (the journal extension's action segmentation): a frame-wise classifier on
the encoder's dense features over whole untrimmed videos, scored with DeST's Acc, Edit and F1@k.

The journal (FSM ``docs/segment.md``; its code is not released, FACTS-foundation §3) fine-tunes the whole
encoder on PKU-MMD II xsub from an NTU-60 pretrained model and "adopts the end-to-end pipeline of DeST" with
no post-processing. Here, as in the ``detection`` evaluation whose training this shares
(:mod:`usdrl_bench.detection.evaluation`): the encoder's token mixers fix its input length T (DSTE's
``Linear(T, T)``), so a whole video is covered by overlapping windows of T frames (train stride ``W/2``,
test stride ``W/4``) and each frame's class probabilities are the mean over the windows that contain it;
the prediction is the frame-wise argmax (52 classes on PKU-MMD: background and the 51 action ids), with
no smoothing or boundary refinement. ``head: finetune`` trains the encoder with the classifier (the
journal's setting), ``head: linear`` a linear classifier on the frozen encoder.

Beside each record: ``pred/<video>.txt`` and ``truth/<video>.txt`` (one label per frame, the format
``usdrl-bench score-segmentation`` scores), and ``frames.npz`` (frame labels, predictions and
probabilities of a few test videos) for the timeline figure.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

import numpy as np

from usdrl_bench.detection.evaluation import Head, check_frame_head_options, frame_head_probabilities
from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.io import save_npz_atomic
from usdrl_bench.ranges import Fraction, MinLen, NonNegativeFloat, PositiveFloat, PositiveInt
from usdrl_bench.registry import EVALUATIONS
from usdrl_bench.segmentation.files import write_label_file
from usdrl_bench.segmentation.metric import THRESHOLDS, score_segmentation

#: test videos whose frames are kept for the timeline figure
TIMELINE_VIDEOS = 3
#: what every segmentation record says about the pipeline
PIPELINE_NOTE = ("frame-wise argmax of window-averaged probabilities, no post-processing; DeST's metrics; "
                 "the journal's recipe is not released")


@EVALUATIONS.register("segmentation", description="action segmentation: frame-wise head on dense features, DeST's Acc/Edit/F1@k",
                      check=functools.partial(check_frame_head_options, example="pku2"))
def segmentation_evaluation(
    ctx: EvalContext,
    *,
    data: dict[str, Any],
    head: Head = "finetune",
    window: PositiveInt | None = None,
    train_stride: PositiveInt | None = None,
    test_stride: PositiveInt | None = None,
    epochs: PositiveInt = 30,
    lr: PositiveFloat = 0.005,
    batch_size: PositiveInt = 64,
    momentum: NonNegativeFloat = 0.9,
    weight_decay: NonNegativeFloat = 0.0,
    thresholds: Annotated[tuple[Fraction, ...], MinLen(1)] = THRESHOLDS,
) -> list[Metric]:
    """Segment the test videos of ``data`` with the pretrained encoder (module docstring).

    Args:
        data: the videos: ``{name: synthetic_untrimmed, options: {...}}`` or ``{name: pku2}`` (prepared by
            ``usdrl-bench data prepare pku2``; see :func:`~usdrl_bench.detection.videos.load_videos`).
        head: ``finetune`` (the encoder trained too; the journal's) or ``linear`` (frozen encoder).
        window: frames per window (default: the encoder's T); strides default to W/2 (train), W/4 (test).
        epochs, lr, batch_size (windows), momentum, weight_decay: SGD of the head (journal docs: lr 0.005,
            batch 512).
        thresholds: IoU thresholds of the F1 scores (DeST: 0.1, 0.25, 0.5).

    Returns:
        ``seg_acc``, ``seg_edit`` and ``seg_f1@<100k>`` for each threshold, in %.
    """
    videos, probs = frame_head_probabilities(ctx, data, head=head, window=window, train_stride=train_stride,
                                             test_stride=test_stride, epochs=epochs, lr=lr, batch_size=batch_size,
                                             momentum=momentum, weight_decay=weight_decay)
    preds = {v.name: p.argmax(axis=1) for v, p in zip(videos.test, probs)}
    truths = {v.name: v.labels for v in videos.test}
    scores = score_segmentation(preds, truths, thresholds=tuple(thresholds), background=0)
    if ctx.artifact_dir is not None:
        out = ctx.artifact_dir
        for v in videos.test:
            write_label_file(out / "pred", v.name, preds[v.name])
            write_label_file(out / "truth", v.name, v.labels)
        shown = videos.test[:TIMELINE_VIDEOS]
        arrays = {}
        for i, (v, p) in enumerate(zip(shown, probs)):
            arrays.update({f"probs_{i}": p.astype(np.float32), f"labels_{i}": v.labels, f"pred_{i}": preds[v.name]})
        save_npz_atomic(out / "frames.npz", names=np.array([v.name for v in shown]),
                        class_names=np.array(videos.class_names), **arrays)
        ctx.artifacts["segmentation"] = out
    note = f"{len(videos.test)} test videos, {scores.num_frames} frames, {head} head; {PIPELINE_NOTE}"
    return [
        Metric("seg_acc", scores.acc, note=f"frame accuracy, background included; {note}"),
        Metric("seg_edit", scores.edit, note=f"segmental Edit score (DeST), background segments left out; {note}"),
        *[Metric(f"seg_f1@{round(100 * k)}", v, note=f"segmental F1 at IoU {k:g} (DeST); {note}")
          for k, v in scores.f1.items()],
    ]
