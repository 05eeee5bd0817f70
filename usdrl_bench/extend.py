"""The public extension contract: what a method author needs to add an encoder or an objective in one module.

Everything here is importable from ``usdrl_bench`` directly::

    from usdrl_bench import EncoderConfig, Objective, SkeletonEncoder, register_encoder, register_objective

* an **encoder** is a :class:`SkeletonEncoder` subclass implementing ``forward_tokens(x_t, x_s) -> (z_t, z_s)``
  (temporal tokens ``(N, T, M·V·C) -> (N, T, H)``, spatial tokens ``(N, M·V, T·C) -> (N, M·V, H)``), with a
  frozen dataclass config derived from :class:`EncoderConfig`; ``@register_encoder(name, config_class,
  presets)`` registers it (presets: ``{"tiny": {...}, "small": {...}, "paper": {...}}``);
* an **objective** is an :class:`Objective` subclass: constructor ``(encoder, **options)`` (the options are a
  protocol's ``objective_options``, checked against the signature), class attribute ``num_views``,
  ``forward(encoder, views) -> (loss, logs)``; ``@register_objective(name)`` registers it.

* a **dataset** is a reader ``reader(path, split, **options) -> (train, test)`` returning two
  :class:`SkeletonArrays` (joints ``(N, C, T, V, M)``, 0-based labels, valid-frame counts, metadata, names,
  the class count and a layout name); ``@register_dataset(name, splits=...)`` registers it
  (``--dataset name:PATH`` or ``dataset: {name: ..., path: ...}`` in a protocol);
* a **layout** is a :class:`Layout` (joint names, bones, centre joint, shoulders, left/right pairs);
  :func:`register_layout` makes its name usable in ``SkeletonArrays.layout``.

* a **method** (a published method: encoder + objective + its presets and evaluation recipes) is
  registered with :func:`register_method`; protocol rows name it (``method: name``); its
  :class:`OfficialFormat` (how the official code saves checkpoints, both ways, built with
  :func:`load_renamed`, :func:`renamed_state`, :func:`strip_module_prefix`, :func:`shaping_args` and
  :func:`create_encoder`) lets the suite load published weights and export its own;
* what a method's objective needs beyond the default views: :meth:`Objective.make_views` with
  :class:`SampleKeys` and the augmentation building blocks (:func:`make_views`, :func:`random_crop_resize`,
  :func:`shear`, :func:`joint_corruption`, :func:`random_rotation`, :func:`resize_valid`), the streams
  (:func:`to_stream`), and the data-parallel helpers (:func:`gather_with_grad`, :func:`batch_mean`).

An encoder that has no two token streams (a GCN, a GRU, a patch transformer) subclasses
:class:`SkeletonEncoder` all the same, overrides ``forward(x) -> (N, embed_dim)`` and sets ``embed_dim``;
the evaluations on pooled features (linear, kNN, semi-supervised, fine-tuning) then run on it; the dense
ones (detection, segmentation) need ``forward_dense``.

A module doing this is a plug-in: name it in a protocol's ``plugins:`` (found relative to the protocol
file, on ``sys.path``, or installed) or publish it under the entry-point group ``usdrl_bench.plugins`` of a
pip-installable package (every such entry point is imported with the built-ins). Registered components get
every protocol, evaluation, cache and report of the suite.
"""

from __future__ import annotations

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.augment import (SampleKeys, joint_corruption, make_views, random_crop_resize, random_rotation,
                                      resize_valid, shear)
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.registration import Reader, register_dataset
from usdrl_bench.data.normalize import (Normalization, align_shoulders, centre_sequence, normalize_arrays,
                                        normalize_sequence, scale_sequence)
from usdrl_bench.distributed import batch_mean, gather_with_grad
from usdrl_bench.encoders import create_encoder
from usdrl_bench.encoders._blocks import EncoderConfig, SkeletonEncoder
from usdrl_bench.encoders.registration import register_encoder
from usdrl_bench.encoders.checkpoint import CheckpointMismatchError
from usdrl_bench.methods.official import load_renamed, renamed_state, shaping_args, strip_module_prefix
from usdrl_bench.methods import Method, MethodPreset, OfficialFormat, OfficialModel, register_method
from usdrl_bench.objectives.base import Objective, register_objective
from usdrl_bench.ranges import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability
from usdrl_bench.skeleton import Layout, get_layout, register_layout, to_stream

__all__ = ["EncoderConfig", "SkeletonEncoder", "Objective", "register_encoder", "register_objective",
           "SkeletonArrays", "Layout", "DataFormatError", "register_dataset", "register_layout", "Reader",
           "normalize_arrays", "normalize_sequence", "centre_sequence", "align_shoulders", "scale_sequence",
           "Normalization",
           "Method", "MethodPreset", "register_method", "SampleKeys", "make_views", "random_crop_resize", "shear",
           "joint_corruption", "random_rotation", "resize_valid", "to_stream", "get_layout", "gather_with_grad",
           "batch_mean", "create_encoder", "OfficialFormat", "OfficialModel", "CheckpointMismatchError", "load_renamed",
           "renamed_state", "shaping_args", "strip_module_prefix",
           "PositiveInt", "NonNegativeInt", "PositiveFloat", "NonNegativeFloat", "Probability", "Fraction"]

