"""Batched skeleton augmentations: temporal crop-resize, joint corruption, shear, and USDRL's views.

Every function works on a batch ``x`` of shape ``(N, C, T, V, M)`` (samples, xyz, frames, joints,
bodies) on whatever device ``x`` lives on, with no Python loop over samples (ARCHITECTURE.md: "views
are made on the training device, in batches"). Randomness comes only from an explicit
``torch.Generator``, which must live on the same device type as ``x`` (``torch.Generator(device=x.device)``);
the same generator state gives the same views.

What the official code does (FACTS §6, §7; USDRL's feeder, inherited from UmURL):

* downstream input: the whole valid sequence ``[0, num_frames)`` resized to 64 frames with
  ``F.interpolate(mode="bilinear", align_corners=False)`` along time (:func:`resize_valid`);
* pretraining: 4 views, each an independent random crop (scale ~ U[0.1, 1], length
  ``clip(floor(n * scale), 64, n)``, random start) resized to 64 frames, then per view either joint
  corruption or shear with probability 1/2 each (:func:`make_views`).

The official feeder draws with ``random``/``np.random`` per sample in worker processes; here the
same distributions are drawn per batch, so the random streams (not the distributions) differ from the
official code. Two sources of randomness are accepted:

* a ``torch.Generator`` (one stream for the whole batch: the views of a sample depend on the batch);
* :class:`SampleKeys` (pretraining): every sample's numbers are a counter-based hash of
  (seed, epoch, sample index, draw number), so a sample gets the same views whichever batch, rank or
  world size it is processed in (data-parallel runs on 1, 2 or 8 processes see the same views), and no
  generator state needs saving to resume.
"""

from usdrl_bench.data.augment.keys import Randomness, SampleKeys
from usdrl_bench.data.augment.spatial import joint_corruption, random_rotation, shear
from usdrl_bench.data.augment.temporal import (centre_crop_resize, check_num_frames, observed_frames,
                                               random_crop_resize, resize_frames, resize_valid)
from usdrl_bench.data.augment.views import ViewConfig, ViewOptions, make_views

__all__ = ["SampleKeys", "Randomness", "ViewConfig", "ViewOptions", "make_views", "resize_frames", "resize_valid", "observed_frames",
           "centre_crop_resize", "random_crop_resize", "check_num_frames", "joint_corruption", "shear",
           "random_rotation"]
