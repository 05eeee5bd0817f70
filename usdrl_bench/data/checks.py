"""Data too small or too odd to mean anything: refused, or warned about in the run, the records and the report.

A benchmark number from a test set of one sample, or from a training set of one class, looks like any other
number. :func:`check_split` refuses what cannot give a meaningful number and returns warnings for what gives
one that is hard to defend; :func:`check_pretraining` does the same for a pretraining schedule on its data.
The thresholds (docs/safety.md):

- refused: a training part with fewer than :data:`MIN_CLASSES` classes (every label the same: there is nothing
  to classify), a test part with fewer than :data:`MIN_TEST_SAMPLES_REFUSED` samples;
- warned: a test part under :data:`MIN_TEST_SAMPLES` samples (each sample moves top-1 by over 3.3 points),
  fewer training samples than classes, a class of one part missing from the other (a test class never seen in
  training cannot be predicted; a training class never tested is not measured), a median sequence shorter
  than :data:`SHORT_SEQUENCE_FRACTION` of the view length (views stretch each frame over several), a
  pretraining batch larger than the training part (each epoch is a single batch of all of it).
"""

from __future__ import annotations

import numpy as np

from usdrl_bench.data.arrays import SkeletonArrays

__all__ = ["MIN_CLASSES", "MIN_TEST_SAMPLES", "MIN_TEST_SAMPLES_REFUSED", "SHORT_SEQUENCE_FRACTION", "check_split",
           "check_pretraining"]

#: a training part needs at least this many classes
MIN_CLASSES = 2
#: a test part below this many samples is refused (a top-1 of 0 or 100 %)
MIN_TEST_SAMPLES_REFUSED = 2
#: a test part below this many samples is warned about (each sample moves top-1 by more than 3.3 points)
MIN_TEST_SAMPLES = 30
#: a median valid length below this fraction of the view length is warned about
SHORT_SEQUENCE_FRACTION = 0.25


def _classes(arrays: SkeletonArrays) -> set[int]:
    return set(np.unique(arrays.labels).tolist())


def check_split(train: SkeletonArrays, test: SkeletonArrays, name: str) -> list[str]:
    """Refuse a split that cannot give a meaningful number, and say what makes its numbers hard to defend.

    Args:
        train, test: the two parts of one split.
        name: how the messages name the split (``nwucla_xview (joint)``).

    Returns:
        the warnings, each one sentence (empty: nothing to say).

    Raises:
        ValueError: fewer than :data:`MIN_CLASSES` classes in the training part, or fewer than
            :data:`MIN_TEST_SAMPLES_REFUSED` test samples; the message names the split and the counts.
    """
    train_classes, test_classes = _classes(train), _classes(test)
    if len(train_classes) < MIN_CLASSES:
        raise ValueError(f"{name}: every training label is the same ({len(train)} sample{'s' if len(train) != 1 else ''}, "
                         f"class{'es' if len(train_classes) != 1 else ''} {sorted(train_classes)}): there is nothing to "
                         "classify; is this the right folder or split?")
    if len(test) < MIN_TEST_SAMPLES_REFUSED:
        raise ValueError(f"{name}: {len(test)} test sample(s): a top-1 would be 0 or 100 %; is this the right folder "
                         "or split?")
    warnings = []
    if len(test) < MIN_TEST_SAMPLES:
        warnings.append(f"only {len(test)} test samples (each moves top-1 by {100 / len(test):.1f} points)")
    num_classes = max(train.num_classes, test.num_classes, len(train_classes | test_classes))
    if len(train) < num_classes:
        warnings.append(f"fewer training samples ({len(train)}) than classes ({num_classes})")
    unseen = sorted(test_classes - train_classes)
    if unseen:
        warnings.append(f"{len(unseen)} test class(es) never seen in training ({_listed(unseen)}): they cannot be "
                        "predicted")
    untested = sorted(train_classes - test_classes)
    if untested:
        warnings.append(f"{len(untested)} class(es) missing from the test part ({_listed(untested)})")
    return warnings


def check_pretraining(train: SkeletonArrays, name: str, *, batch_size: int, view_frames: int | None) -> list[str]:
    """Say what makes a pretraining schedule odd on its data.

    Args:
        train: the pretraining data.
        name: how the messages name it.
        batch_size: the schedule's global batch (the loop takes at most the whole set: one step an epoch, with
            or without ``drop_last``).
        view_frames: the encoder's view length ``T`` (None: not checked).

    Returns:
        the warnings.
    """
    warnings = []
    if batch_size > len(train):
        warnings.append(f"the pretraining batch ({batch_size}) is larger than the training part ({len(train)} "
                        "samples): each epoch is one batch of all of it")
    if view_frames:
        median = float(np.median(train.num_frames)) if len(train) else 0.0
        if median < SHORT_SEQUENCE_FRACTION * view_frames:
            warnings.append(f"the median sequence ({median:.0f} frames) is under {SHORT_SEQUENCE_FRACTION:.0%} of "
                            f"the {view_frames}-frame views: each frame is stretched over several")
    return warnings


def _listed(labels: list[int], most: int = 8) -> str:
    shown = ", ".join(map(str, labels[:most]))
    return shown + (f", ... {len(labels) - most} more" if len(labels) > most else "")
