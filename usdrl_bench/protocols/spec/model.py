"""The protocol model: what a protocol file says, as frozen dataclasses (a :class:`Protocol` of rows and presets,
each preset's datasets, schedule and evaluations), and the unit of work a run expands them to (:class:`Cell`: a
row under one preset, dataset and seed, with its merged settings).

A protocol is data. Every preset (``demo``, ``paper``) lives in the YAML; an unknown key, a wrong type,
an unknown registry name or a missing data path is a :class:`~usdrl_bench.protocols.schema.ProtocolError`
naming the file and the key, raised before any work starts (:mod:`.loading`, :mod:`.checking`).

Example (abridged ``protocols/table5_ablation.yaml``)::

    name: table5_ablation
    version: 1
    paper_table: table5_ablation
    presets:
      demo:
        dataset: {name: synthetic, split: xsub}
        encoder_preset: small
        pretrain: {epochs: 12, batch_size: 128, lr: 5.0e-4, weight_decay: 1.0e-5}
        evaluations:
          linear: {epochs: 60, lr: 0.05, milestones: [40, 50]}
          knn: {k: 1}
    rows:
      - {id: "7", label: "DSTE, MG-FD with XC", encoder: dste, objective: mgfd, paper_row: 7}
      - {id: R-DSTE, label: "DSTE, random init", encoder: dste, objective: null}
"""

from __future__ import annotations

import dataclasses
import functools
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from usdrl_bench import registry
from usdrl_bench.data.normalize import Normalization
from usdrl_bench.data.synthetic.releases import REHEARSAL_DATASET
from usdrl_bench.methods import get_method
from usdrl_bench.protocols.rehearsal import REHEARSAL_SUFFIX, Rehearsal
from usdrl_bench.protocols.schema import from_data
from usdrl_bench.train.spec import PretrainSpec

if typing.TYPE_CHECKING:
    from usdrl_bench.methods import MethodPreset

__all__ = ["DatasetSpec", "PresetSpec", "EnsembleSpec", "RowSpec", "Protocol", "Cell", "method_objective"]


@dataclass(frozen=True)
class DatasetSpec:
    """Which data a cell uses.

    Attributes:
        name: a registered dataset (``usdrl-bench list``).
        path: its location (relative paths are relative to the working directory; ``~`` and
            ``$VARS`` are expanded); ``None`` for datasets that need none (``synthetic``).
        split: a named split of the dataset (``xsub``, ``xview``, ``xset``); ``None`` = its default.
        stream: input stream derived from the joints after augmentation (FACTS §1, §6).
        options: keyword options of the reader (e.g. ``seed`` for ``synthetic``).
        id: the column this dataset fills in the protocol's tables (default ``<name>_<split>``).
        paper_setting: the paper's column it stands for (``ntu60_xsub``, ``ntu120_xset``, ``pku2_xsub``
            ...; ``paper_tables.csv``), so the report can put the paper's number beside ours. A demo
            stand-in names the setting it stands in for; the report says it is a stand-in.
        evaluations: per-evaluation option overrides for this dataset (e.g. the linear learning rate
            per dataset of FACTS §6), merged over the preset's ``evaluations``.
        pretrain: pretraining schedule overrides for this dataset (:class:`PretrainSpec` keys), merged
            over the preset's ``pretrain`` (the official PKU-MMD II schedule: batch 512, 1201 epochs, lr
            x0.1 at 801; FACTS §7).
        pretrain_on: transfer: the encoder is pretrained on this dataset (its training split; the row's
            stream) and evaluated on this column's (NTU-60 pretrained, PKU-MMD II evaluated). The two must
            agree in channels, joints and bodies. Default: the column's own dataset.
        normalize: per-sequence normalisation applied to both parts after the reader, for any dataset whose
            layout has a centre and shoulders (:class:`~usdrl_bench.data.normalize.Normalization`: ``centre``,
            ``align``, ``scaling``, ``neck``); part of the data's identity.
    """

    name: str
    path: str | None = None
    split: str | None = None
    stream: Literal["joint", "bone", "motion", "jmb"] = "joint"
    options: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    paper_setting: str | None = None
    evaluations: dict[str, dict[str, Any]] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    pretrain_on: "DatasetSpec | None" = None
    normalize: Normalization | None = None

    def resolved_path(self) -> Path | None:
        if self.path is None:
            return None
        return Path(os.path.expandvars(os.path.expanduser(self.path))).resolve()

    def resolved_split(self) -> str:
        if self.split is not None:
            return self.split
        return registry.DATASETS.entry(self.name).meta.get("default_split", "xsub")

    def describe(self) -> str:
        name = f"{self.name}/{self.resolved_split()}"
        if self.name == REHEARSAL_DATASET:
            name = f"rehearsal data shaped as {self.options.get('like')}"
        return name + (f" ({self.stream})" if self.stream != "joint" else "")

    @property
    def column(self) -> str:
        """The table column this dataset fills: its id, else ``<name>_<split>`` (a named dataset such as
        ``ntu60_xsub`` already carries its split)."""
        split = self.resolved_split()
        return self.id or (self.name if self.name.endswith(f"_{split}") else f"{self.name}_{split}")


@dataclass(frozen=True)
class PresetSpec:
    """One preset of a protocol: the data, model size, schedules and evaluations.

    ``dataset`` (one) or ``datasets`` (several: the columns of a table such as Table 1, each pretrained
    and evaluated on its own) say which data the rows run on; exactly one of the two is given.
    """

    encoder_preset: str
    pretrain: PretrainSpec
    evaluations: dict[str, dict[str, Any]]
    dataset: DatasetSpec | None = None
    datasets: tuple[DatasetSpec, ...] = ()
    description: str = ""
    encoder_options: dict[str, Any] = field(default_factory=dict)
    objective_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    rows: tuple[str, ...] = ()  # the row ids this preset runs (default: every row)
    # evaluation option overrides per encoder name, e.g. {sttr: {linear: {lr: 0.03}}} (the official STTR
    # linear lr differs from DSTE's): applied after the preset's and the dataset's
    encoder_evaluations: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # row id -> the dataset columns it runs on (default every column), e.g. an expensive row on the first
    # demo column only
    row_columns: dict[str, list[str]] = field(default_factory=dict)
    # the preset of each method row's method (usdrl_bench.methods) this preset takes; default: its own name
    method_preset: str | None = None

    @property
    def all_datasets(self) -> tuple[DatasetSpec, ...]:
        return self.datasets or ((self.dataset,) if self.dataset is not None else ())


@dataclass(frozen=True)
class EnsembleSpec:
    """A score-level ensemble of other rows (Table 1's 3s-USDRL): their linear classifiers' test softmax
    scores, summed with ``weights`` (default equal), then argmax (:mod:`usdrl_bench.evaluate.ensemble`)."""

    rows: tuple[str, ...]
    weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class RowSpec:
    """One row of the protocol's table: an encoder pretrained with an objective (``null`` = random
    initialisation, no pretraining), or released weights (``checkpoint: PATH``, read in the ``method``'s official
    format; :mod:`usdrl_bench.protocols.released`).

    ``paper_row`` (Table 5) or ``paper`` (Tables 1-4: values selecting rows of ``paper_tables.csv``, e.g.
    ``{method: USDRL, encoder: DSTE, modality: J}``) say which published numbers the row is compared with.
    ``x`` places the row on the x axis of a sweep (the report then draws the metric against ``x``).
    ``stream`` overrides the dataset's input stream for this row (joint, bone or motion, FACTS §1), so a
    table can hold one model per stream; ``ensemble`` makes the row a fusion of other rows instead of a
    model of its own.
    """

    id: str
    label: str
    encoder: str | None = None
    objective: str | None = None
    objective_options: dict[str, Any] = field(default_factory=dict)
    encoder_options: dict[str, Any] = field(default_factory=dict)
    paper_row: int | None = None
    paper: dict[str, str] = field(default_factory=dict)
    x: float | None = None  # the row's position on the x axis of a sweep figure (Figure 4: alpha)
    stream: Literal["joint", "bone", "motion", "jmb"] | None = None  # pretrain and evaluate on this stream (Table 1)
    ensemble: EnsembleSpec | None = None  # instead of an encoder: fuse other rows' linear scores
    # a registered method (usdrl_bench.methods): its encoder and objective (unless the row names them;
    # ``objective: null`` = its encoder at random initialisation), and per preset its settings
    method: str | None = None
    # released weights: evaluate this file instead of pretraining (the method's official format, or a suite /
    # official USDRL checkpoint without a method); its official arguments where the file does not hold them
    checkpoint: str | None = None
    checkpoint_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Protocol:
    name: str
    version: int
    rows: tuple[RowSpec, ...]
    presets: dict[str, PresetSpec]
    description: str = ""
    paper_table: str | None = None
    plugins: tuple[str, ...] = ()
    file: str = ""
    overrides: tuple[str, ...] = ()  # --set KEY.PATH=VALUE applied to the file (provenance; not a YAML key)


@dataclass(frozen=True)
class Cell:
    """One unit of work: a row of the protocol under one preset, dataset and seed."""

    protocol: Protocol
    preset_name: str
    preset: PresetSpec
    row: RowSpec
    dataset: DatasetSpec
    seed: int
    # a rehearsal (usdrl_bench.protocols.rehearsal): the schedules below are cut to its length
    rehearsal: "Rehearsal | None" = None

    @property
    def preset_label(self) -> str:
        """The preset as records and reports name it: ``paper``, or ``paper-rehearsal`` in a rehearsal."""
        return self.preset_name + (REHEARSAL_SUFFIX if self.rehearsal is not None else "")

    @property
    def method_preset(self) -> "MethodPreset | None":
        """The row's method's preset for this cell's preset (None for a row without a method)."""
        if self.row.method is None:
            return None

        return get_method(self.row.method).preset(self.preset.method_preset or self.preset_name)

    @property
    def encoder_preset(self) -> str:
        mp = self.method_preset
        return mp.encoder_preset if mp is not None and mp.encoder_preset else self.preset.encoder_preset

    @property
    def encoder_options(self) -> dict[str, Any]:
        mp = self.method_preset
        return {**self.preset.encoder_options, **(mp.encoder_options if mp else {}), **self.row.encoder_options}

    @property
    def objective_options(self) -> dict[str, Any]:
        if self.row.objective is None:
            return {}
        mp = self.method_preset
        return {**self.preset.objective_options.get(self.row.objective, {}),
                **(mp.objective_options if mp is not None and self.row.objective == method_objective(self.row) else {}),
                **self.row.objective_options}

    @property
    def pretrain_dataset(self) -> DatasetSpec:
        """The data the encoder is pretrained on: the column's ``pretrain_on`` (with the row's stream), else
        the column's own dataset."""
        source = self.dataset.pretrain_on
        if source is None:
            return self.dataset
        return dataclasses.replace(source, stream=self.dataset.stream, pretrain_on=None)

    @functools.cached_property
    def schedule(self) -> PretrainSpec:
        """The preset's pretraining schedule, then the row's method's (its preset's ``pretrain``), then this
        dataset's overrides (``datasets[i].pretrain``: the protocol's word on this column, e.g. a demo
        column's few epochs)."""
        mp = self.method_preset
        method = mp.pretrain if mp is not None else {}
        if not self.dataset.pretrain and not method and self.rehearsal is None:
            return self.preset.pretrain
        merged = {**dataclasses.asdict(self.preset.pretrain), **method, **self.dataset.pretrain}
        if self.rehearsal is not None:
            merged = self.rehearsal.cut_schedule(merged)
        return from_data(PretrainSpec, merged, self.protocol.file, ("dataset", "pretrain"))

    @functools.cached_property
    def evaluations(self) -> dict[str, dict[str, Any]]:
        """The preset's evaluations with this dataset's, then this encoder's, then the row's method's
        overrides merged in."""
        per_encoder = self.preset.encoder_evaluations.get(self.row.encoder or "", {})
        mp = self.method_preset
        per_method = mp.evaluations if mp is not None else {}
        merged = {name: {**(options or {}), **self.dataset.evaluations.get(name, {}), **per_encoder.get(name, {}),
                         **per_method.get(name, {})}
                  for name, options in self.preset.evaluations.items()}
        if self.rehearsal is not None:
            merged = {name: self.rehearsal.cut_evaluation(name, options) for name, options in merged.items()}
        return merged


def method_objective(row: RowSpec) -> str | None:
    return get_method(row.method).objective if row.method is not None else None
