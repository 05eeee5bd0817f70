"""The public decorator that makes a :class:`~usdrl_bench.encoders._blocks.SkeletonEncoder` subclass an encoder
(:func:`register_encoder`): DSTE and STTR register through it as a plug-in's encoder does
(``usdrl_bench.register_encoder``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, TypeVar

from usdrl_bench.encoders._blocks import EncoderConfig, SkeletonEncoder, config_from_preset, register_presets
from usdrl_bench.registry import ENCODERS

__all__ = ["register_encoder"]

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
