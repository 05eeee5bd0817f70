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

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.augment import (SampleKeys, joint_corruption, make_views, random_crop_resize, random_rotation,
                                      resize_valid, shear)
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.root import resolve_data_root, using_data_root
from usdrl_bench.distributed import batch_mean, gather_with_grad
from usdrl_bench.encoders import create_encoder
from usdrl_bench.encoders._blocks import EncoderConfig, SkeletonEncoder, config_from_preset, register_presets
from usdrl_bench.encoders.checkpoint import CheckpointMismatchError
from usdrl_bench.encoders.official import load_renamed, renamed_state, shaping_args, strip_module_prefix
from usdrl_bench.methods import Method, MethodPreset, OfficialFormat, OfficialModel, register_method
from usdrl_bench.objectives.base import Objective, register_objective
from usdrl_bench.ranges import Fraction, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability
from usdrl_bench.registry import DATASETS, ENCODERS
from usdrl_bench.skeleton import Layout, get_layout, register_layout, to_stream

__all__ = ["EncoderConfig", "SkeletonEncoder", "Objective", "register_encoder", "register_objective",
           "SkeletonArrays", "Layout", "DataFormatError", "register_dataset", "register_layout", "Reader", "data_root",
           "Method", "MethodPreset", "register_method", "SampleKeys", "make_views", "random_crop_resize", "shear",
           "joint_corruption", "random_rotation", "resize_valid", "to_stream", "get_layout", "gather_with_grad",
           "batch_mean", "create_encoder", "OfficialFormat", "OfficialModel", "CheckpointMismatchError", "load_renamed",
           "renamed_state", "shaping_args", "strip_module_prefix",
           "PositiveInt", "NonNegativeInt", "PositiveFloat", "NonNegativeFloat", "Probability", "Fraction"]

#: A dataset reader: ``(path, split, **options) -> (train, test)``.
Reader = Callable[..., "tuple[SkeletonArrays, SkeletonArrays]"]
R = TypeVar("R", bound=Callable[..., Any])

E = TypeVar("E", bound=type)


def register_encoder(name: str, config_class: type[EncoderConfig],
                     presets: Mapping[str, Mapping[str, Any]] | None = None, *,
                     description: str = "") -> Callable[[E], E]:
    """Class decorator registering a :class:`SkeletonEncoder` subclass as encoder ``name``.

    Args:
        name: the name protocols use (``encoder: name``).
        config_class: a frozen dataclass derived from :class:`EncoderConfig`; the encoder is built as
            ``cls(config)``.
        presets: named config-field sets (``tiny`` is what the tests and quick checks use, ``small`` the
            demo size, ``paper`` the paper's); the one store ``usdrl-bench list`` and ``list_presets`` read.
        description: one line for ``usdrl-bench list`` (default: the class docstring's first line).
    Raises:
        TypeError: the class is not a :class:`SkeletonEncoder` subclass, or ``config_class`` is not a
            dataclass derived from :class:`EncoderConfig`.
        ValueError: ``name`` is taken by another component, or a preset names an unknown config field.
    """
    if not (isinstance(config_class, type) and issubclass(config_class, EncoderConfig)
            and dataclasses.is_dataclass(config_class)):
        raise TypeError(f"register_encoder({name!r}): config_class must be a dataclass derived from "
                        f"usdrl_bench.EncoderConfig, got {config_class!r}")
    presets = {k: dict(v) for k, v in (presets or {}).items()}
    fields = {f.name for f in dataclasses.fields(config_class)}
    for preset, values in presets.items():
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(f"register_encoder({name!r}): preset {preset!r} sets unknown field(s) {unknown}; "
                             f"fields of {config_class.__name__}: {', '.join(sorted(fields))}")

    def decorator(cls: E) -> E:
        if not (isinstance(cls, type) and issubclass(cls, SkeletonEncoder)):
            raise TypeError(f"register_encoder({name!r}) decorates a subclass of usdrl_bench.SkeletonEncoder, "
                            f"got {cls!r}")
        register_presets(name, presets)

        def build(preset: str | None = None, **overrides: Any) -> SkeletonEncoder:
            return cls(config_from_preset(config_class, name, preset, overrides))

        build.__doc__ = f"Build a {cls.__name__} from a preset ({', '.join(presets) or 'none'}) and config overrides."
        build.__module__ = cls.__module__  # a plug-in's code identity is its own module's
        doc = description or (cls.__doc__ or "").strip().split("\n")[0]
        ENCODERS.register(name, description=doc, presets=tuple(presets), config=config_class, cls=cls)(build)
        if not getattr(cls, "encoder_name", None) or cls.encoder_name == SkeletonEncoder.encoder_name:
            cls.encoder_name = name
        return cls

    return decorator


def register_dataset(name: str, *, splits: Sequence[str], default_split: str | None = None, description: str = "",
                     locate: Callable[[], str | Path] | None = None) -> Callable[[R], R]:
    """Function decorator registering a dataset reader as dataset ``name``.

    The reader is called as ``reader(path, split, **options)``: ``path`` is the protocol's ``path`` (or the
    ``PATH`` of ``--dataset name:PATH``; a ``str``, or ``None`` when the dataset is found by ``locate``),
    ``split`` one of ``splits``, ``options`` the protocol's ``options`` (checked against the reader's
    keyword parameters before any work). It returns ``(train, test)``, two :class:`SkeletonArrays` whose
    ``layout`` is a registered :class:`Layout` with the arrays' joint count. The suite then checks labels
    and coordinates (a label outside ``[0, num_classes)`` or a NaN is an error naming the sample).

    The reader's module is part of every cache key built on the data: editing it re-trains what used it.

    Args:
        name: the name protocols and ``--dataset`` use.
        splits: the named splits the reader knows (``("xview",)``); the first is the default unless
            ``default_split``.
        default_split: the split used when a protocol names none.
        description: one line for ``usdrl-bench list`` (default: the reader's docstring's first line).
        locate: makes ``name`` a named dataset found without a path: called with no argument when the path is
            None, it returns the folder under the data root (``usdrl_bench.data_root()`` is ``--data-root``,
            else ``$USDRL_DATA``, else ``./data``) or raises ``FileNotFoundError`` saying what to download.
    Raises:
        TypeError: the reader is not callable or does not take ``(path, split)`` positionally.
        ValueError: ``name`` is taken, ``splits`` is empty, or ``default_split`` is not one of ``splits``.
    """
    splits = tuple(splits)
    if not splits:
        raise ValueError(f"register_dataset({name!r}): splits must name at least one split")
    default = default_split if default_split is not None else splits[0]
    if default not in splits:
        raise ValueError(f"register_dataset({name!r}): default_split {default!r} is not one of {splits}")

    def decorator(reader: R) -> R:
        if not callable(reader):
            raise TypeError(f"register_dataset({name!r}) decorates a reader function, got {reader!r}")
        params = [p for p in inspect.signature(reader).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(params) < 2:
            raise TypeError(f"register_dataset({name!r}): the reader must take (path, split, **options); "
                            f"{getattr(reader, '__qualname__', reader)} takes {len(params)} positional parameter(s)")

        @functools.wraps(reader)
        def load(path: str | None = None, split: str = default, **options: Any):
            if path is None and locate is not None:
                path = str(locate())
            return reader(path, split, **options)

        load.__module__ = reader.__module__  # its code identity is the plug-in's module
        doc = description or (reader.__doc__ or "").strip().split("\n")[0]
        DATASETS.register(name, description=doc, splits=splits, default_split=default,
                          needs_path=locate is None, named=locate is not None,
                          locate=(lambda root=None: _locate_under(locate, root)) if locate is not None else None)(load)
        return reader

    return decorator


def _locate_under(locate: Callable[[], str | Path], root: str | Path | None) -> Path:
    """``locate()`` with the data root set to ``root`` (when given) for the call."""
    with using_data_root(root):
        return Path(locate())


def data_root() -> Path:
    """Where named datasets are found. While the suite loads a dataset (a plug-in's ``locate`` is called then):
    the run's ``--data-root`` (``data_root=`` of the API); otherwise ``$USDRL_DATA``, else ``./data``."""
    return resolve_data_root()
