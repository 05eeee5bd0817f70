"""What a method is: a published self-supervised method as one named unit (encoder + objective + its schedules).

A method bundles what its paper and official code fix together: which encoder, which objective, and per
preset the encoder size, objective options, pretraining schedule and views, and its own evaluation
recipes (MAMP's BatchNorm linear probe, the ST-GCN family's lr 3.0 probe). A protocol row names it
(``{id: MAMP, method: mamp}``); each of the protocol's presets takes the method's preset of the same name
(or the one the protocol preset's ``method_preset`` names), merged over the protocol preset's values.
Cache keys see the merged values, so a method preset edit retrains the rows it changes.

Registered with :func:`register_method` (public: ``usdrl_bench.register_method``); ``usdrl-bench list``
shows every method with its paper and presets.

A method may also say how its official code saves checkpoints (:class:`OfficialFormat`): the suite then loads
the published weights (``usdrl_bench.load_encoder(path, method=name, **official_args)``), evaluates them as a
protocol row (``{id: ..., method: name, checkpoint: PATH}``), and writes suite-trained weights in the official
format for the official code to evaluate (``usdrl_bench.export_official``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

from usdrl_bench.registry import METHODS

__all__ = ["Method", "MethodPreset", "OfficialFormat", "OfficialModel", "register_method", "get_method"]

#: official constructor arguments that do not shape an encoder (accepted and ignored by every official loader)
NON_SHAPING_ARGS = frozenset({"num_class", "num_classes", "dropout", "pretrain", "protocol", "base_encoder", "mlp",
                              "drop_rate", "attn_drop_rate", "drop_path_rate", "qk_scale", "skeleton_representation"})


class OfficialModel(NamedTuple):
    """What an :class:`OfficialFormat` reads from an official checkpoint.

    Attributes:
        encoder: the suite encoder holding the official encoder's weights (the one the official linear
            evaluation uses), in ``eval()`` mode.
        objective: the suite objective holding the rest of an official *pretraining* checkpoint (projectors, key
            encoders, queues, decoder), or None when the file holds the encoder only.
        notes: what was inferred and from where (``{"hidden_size": "from encoder_q.fc.0.weight", ...}``).
    """

    encoder: Any
    objective: Any
    notes: dict[str, str]


@dataclass(frozen=True)
class OfficialFormat:
    """How a method's official code saves its checkpoints, both ways.

    Attributes:
        load: ``load(checkpoint, official_args) -> OfficialModel``: ``checkpoint`` is the object the official
            code saved (loaded with ``weights_only``), ``official_args`` the keyword arguments of the official
            linear-evaluation (or pretraining) constructor, by their official names; sizes the file holds are
            read from it, and arguments that do not shape the encoder (:data:`NON_SHAPING_ARGS`) are ignored.
            Raises ``ValueError`` (naming the keys) when the file is not this method's.
        export: ``export(encoder, objective_state) -> object``: the object the official code would save for
            these weights (``objective_state`` is the suite objective's state dict, or None for the encoder
            only); ``torch.save`` writes it.
        safe_globals: classes besides tensors and plain containers that official files hold (MAMP saves an
            ``argparse.Namespace``); allow-listed for ``weights_only`` loading, nothing else is.
        description: the official file's layout, one line.
    """

    load: Callable[[Any, Mapping[str, Any]], OfficialModel]
    export: Callable[[Any, "Mapping[str, Any] | None"], Any]
    safe_globals: tuple[type, ...] = ()
    description: str = ""

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
        official_format: how the official code saves checkpoints (None: the suite cannot read them).
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
    official_format: OfficialFormat | None = field(default=None, compare=False)

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
                    description: str = "", published: Mapping[str, float] | None = None,
                    official_format: OfficialFormat | None = None) -> Method:
    """Register a method (see the module docstring) and return it.

    Args:
        name: the name protocol rows use (``method: name``).
        encoder, objective: the registered encoder and objective it trains (checked when a protocol uses it).
        paper: the paper (authors, title, venue and year).
        presets: ``{"paper": {...}, "cpu": {...}}``: each a :class:`MethodPreset` or a mapping of its fields.
        repository, commit: the official code followed (``"github.com/maoyunyao/MAMP"``, ``"09e6252a"``).
        description: one line for ``usdrl-bench list``.
        published: published numbers, ``{"<column>/<metric>": value}``.
        official_format: how the official code saves checkpoints (:class:`OfficialFormat`).
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
                    published=dict(published or {}), official_format=official_format)
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
