"""Methods: a published self-supervised method as one named unit (encoder + objective + its schedules).

A method bundles what its paper and official code fix together: which encoder, which objective, and per
preset the encoder size, objective options, pretraining schedule and views, and its own evaluation
recipes (MAMP's BatchNorm linear probe, the ST-GCN family's lr 3.0 probe). A protocol row names it
(``{id: MAMP, method: mamp}``); each of the protocol's presets takes the method's preset of the same name
(or the one the protocol preset's ``method_preset`` names), merged over the protocol preset's values.
Cache keys see the merged values, so a method preset edit retrains the rows it changes.

Registered with :func:`register_method` (public: ``usdrl_bench.register_method``); ``usdrl-bench list``
shows every method with its paper and presets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from usdrl_bench.registry import METHODS

__all__ = ["Method", "MethodPreset", "register_method", "get_method"]

_PRESET_KEYS = ("encoder_preset", "encoder_options", "objective_options", "pretrain", "evaluations")


@dataclass(frozen=True)
class MethodPreset:
    """One configuration of a method.

    Attributes:
        encoder_preset: the encoder preset (default: the protocol preset's ``encoder_preset``).
        encoder_options: encoder config overrides, over the protocol preset's.
        objective_options: the objective's options, over the protocol preset's.
        pretrain: :class:`~usdrl_bench.protocols.spec.PretrainSpec` keys over the protocol preset's (a
            ``views`` mapping replaces the preset's views as a whole).
        evaluations: per-evaluation option overrides (the method's own recipes, e.g. ``linear_own``); they
            apply to the evaluations the protocol preset runs, after its dataset and encoder overrides.
    """

    encoder_preset: str | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    objective_options: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Method:
    """A registered method (see the module docstring).

    Attributes:
        name: the name rows use (``method: name``).
        encoder, objective: registered component names.
        paper: the paper, e.g. ``"Mao et al., Masked Motion Predictors, ICCV 2023"``.
        repository, commit: the official code the plug-in follows.
        presets: preset name -> :class:`MethodPreset` (``paper`` is the published configuration).
        description: one line for ``usdrl-bench list``.
        published: published numbers, ``{"<column>/<metric>": value}`` (e.g. ``"ntu60_xsub/linear": 84.9``),
            shown beside the method's rows on the paper's data.
    """

    name: str
    encoder: str
    objective: str
    paper: str
    presets: dict[str, MethodPreset]
    repository: str = ""
    commit: str = ""
    description: str = ""
    published: dict[str, float] = field(default_factory=dict)

    def preset(self, name: str) -> MethodPreset:
        """The preset ``name``.

        Raises:
            KeyError: no such preset (naming the method's presets).
        """
        try:
            return self.presets[name]
        except KeyError:
            raise KeyError(f"method {self.name!r} has no preset {name!r}; its presets: {', '.join(self.presets)}") from None


def register_method(name: str, *, encoder: str, objective: str, paper: str,
                    presets: Mapping[str, Mapping[str, Any] | MethodPreset], repository: str = "", commit: str = "",
                    description: str = "", published: Mapping[str, float] | None = None) -> Method:
    """Register a method (see the module docstring) and return it.

    Args:
        name: the name protocol rows use (``method: name``).
        encoder, objective: the registered encoder and objective it trains (checked when a protocol uses it).
        paper: the paper (authors, title, venue and year).
        presets: ``{"paper": {...}, "cpu": {...}}``: each a :class:`MethodPreset` or a mapping of its fields.
        repository, commit: the official code followed (``"github.com/maoyunyao/MAMP"``, ``"09e6252a"``).
        description: one line for ``usdrl-bench list``.
        published: published numbers, ``{"<column>/<metric>": value}``.
    Raises:
        TypeError: a preset mapping with a key that is not a :class:`MethodPreset` field.
        ValueError: ``name`` taken by another method, or no presets.
    """
    if not presets:
        raise ValueError(f"register_method({name!r}): a method needs at least one preset (its paper configuration)")
    built: dict[str, MethodPreset] = {}
    for preset_name, values in presets.items():
        if isinstance(values, MethodPreset):
            built[preset_name] = values
            continue
        unknown = sorted(set(values) - set(_PRESET_KEYS))
        if unknown:
            raise TypeError(f"register_method({name!r}): preset {preset_name!r} has unknown key(s) {unknown}; "
                            f"keys: {', '.join(_PRESET_KEYS)}")
        built[preset_name] = MethodPreset(**{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in values.items()})
    method = Method(name=name, encoder=encoder, objective=objective, paper=paper, presets=built,
                    repository=repository, commit=commit, description=description or paper,
                    published=dict(published or {}))
    existing = METHODS._entries.get(name) if name in METHODS else None  # noqa: SLF001 - same package
    if existing is not None and existing.obj != method:
        raise ValueError(f"method {name!r} is already registered (to {existing.obj.paper})")
    if existing is None:
        METHODS.register(name, description=method.description, presets=tuple(built), paper=paper,
                         code=f"{repository}@{commit}" if commit else repository,
                         components=f"{encoder} + {objective}")(method)
    return method


def get_method(name: str) -> Method:
    """The method registered as ``name``.

    Raises:
        KeyError: unknown method (with close matches and the list of methods).
    """
    return METHODS.get(name)


def preset_as_dict(preset: MethodPreset) -> dict[str, Any]:
    """The preset's fields as plain data (provenance)."""
    return dataclasses.asdict(preset)
