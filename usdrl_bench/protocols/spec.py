"""Protocol files: YAML -> validated frozen dataclasses -> cells (encoder x objective x dataset x seed).

A protocol is data. Every preset (``demo``, ``paper``) lives in the YAML; an unknown key, a wrong type,
an unknown registry name or a missing data path is a :class:`ProtocolError` naming the file and the key,
raised before any work starts.

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
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from usdrl_bench import registry
from usdrl_bench.components import load_builtins, unknown_name_message

if typing.TYPE_CHECKING:
    from usdrl_bench.methods import MethodPreset

import copy

from usdrl_bench.data.root import locate_dataset
from usdrl_bench.encoders._blocks import ENCODER_PRESETS, config_from_preset
from usdrl_bench.data.synthetic.releases import REHEARSAL_DATASET
from usdrl_bench.io import is_safe_name
from usdrl_bench.methods import get_method
from usdrl_bench.protocols.rehearsal import REHEARSAL_SUFFIX, Rehearsal
from usdrl_bench.protocols.released import load_released, resolve_checkpoint
from usdrl_bench.protocols.schema import ProtocolError, check_options, from_data, merge, type_adapter
from usdrl_bench.train.spec import PretrainSpec


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
                **(mp.objective_options if mp is not None and self.row.objective == _method_objective(self.row) else {}),
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
    def pretrain(self) -> PretrainSpec:
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


def load_protocol(path: str | Path, overrides: "tuple[str, ...] | list[str]" = ()) -> Protocol:
    """Read and structurally validate a protocol YAML (types, keys, registry names, options).

    Args:
        path: the YAML file.
        overrides: ``KEY.PATH=VALUE`` strings (``--set``) applied to the file's content after includes and
            ``extends`` are resolved and before validation, so they are checked like the file's own keys.
            ``KEY.PATH`` is dot-separated (a list element by its index: ``rows.0.label``); ``VALUE`` is read as
            YAML (``3``, ``true``, ``[120, 140]``, ``{k: 1}``, text). They are kept in ``Protocol.overrides``
            and reach every record.

    Raises:
        FileNotFoundError: the file does not exist.
        ProtocolError: invalid content or override; names the file and the key.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file not found: {path}")
    data = _resolve_extends(_read_with_includes(path, ()), file)
    data = apply_overrides(data, overrides, file)
    data.pop("overrides", None)
    protocol: Protocol = from_data(Protocol, data, file)
    protocol = dataclasses.replace(protocol, file=file, overrides=tuple(overrides))
    load_builtins()
    registry.load_plugins(protocol.plugins, relative_to=Path(protocol.file).resolve().parent)
    protocol = _resolve_methods(protocol, data)
    _check_names(protocol)
    return protocol


def _method_objective(row: RowSpec) -> str | None:
    return get_method(row.method).objective if row.method is not None else None


def _check_method_preset(method: Any, preset_name: str, file: str) -> None:
    """A method preset's names and option types, checked as a protocol's own (the key names the method)."""
    mp = method.preset(preset_name)
    where = f"method {method.name}.presets.{preset_name}"
    for kind, name in ((registry.ENCODERS, method.encoder), (registry.OBJECTIVES, method.objective)):
        _check_registry(kind, name, file, where)
    check_options(registry.OBJECTIVES.get(method.objective), mp.objective_options, file,
                        f"{where}.objective_options", skip=1)
    for ename, options in mp.evaluations.items():
        _check_registry(registry.EVALUATIONS, ename, file, f"{where}.evaluations.{ename}")
        check_options(registry.EVALUATIONS.get(ename), options or {}, file, f"{where}.evaluations.{ename}", skip=1)
    unknown = sorted(set(mp.pretrain) - {f.name for f in dataclasses.fields(PretrainSpec)})
    if unknown:
        raise ProtocolError(file, f"{where}.pretrain", f"unknown key(s) {unknown}")


def _resolve_methods(protocol: Protocol, data: dict[str, Any]) -> Protocol:
    """Rows with ``method:`` get the method's encoder, and its objective unless the row's mapping names an
    ``objective`` (``null``: random initialisation); every preset must find the method's preset.

    Raises:
        ProtocolError: an unknown method, or a preset the method lacks (naming the file and key).
    """
    raw_rows = data.get("rows") if isinstance(data.get("rows"), list) else []
    rows = list(protocol.rows)
    for i, row in enumerate(rows):
        if row.method is None:
            continue
        where = f"rows[{i}].method"
        if row.method not in registry.METHODS:
            raise ProtocolError(protocol.file, where, unknown_name_message(registry.METHODS, row.method))
        method = registry.METHODS.get(row.method)
        raw = raw_rows[i] if i < len(raw_rows) and isinstance(raw_rows[i], dict) else {}
        rows[i] = dataclasses.replace(row, encoder=row.encoder or method.encoder,
                                      objective=row.objective if "objective" in raw else method.objective)
        for pname, preset in protocol.presets.items():
            wanted = preset.method_preset or pname
            if wanted not in method.presets:
                raise ProtocolError(protocol.file, f"presets.{pname}.method_preset",
                                    f"method {method.name!r} (rows[{i}]) has no preset {wanted!r}; its presets: "
                                    f"{', '.join(method.presets)}")
            _check_method_preset(method, wanted, protocol.file)
    for i, row in enumerate(rows):  # released weights, with or without a method (its format, or the suite's)
        if row.checkpoint is not None:
            rows[i] = _resolve_released(protocol, row, i, raw_rows)
    return dataclasses.replace(protocol, rows=tuple(rows))


def _resolve_released(protocol: Protocol, row: RowSpec, i: int, raw_rows: list[Any]) -> RowSpec:
    """A released-weights row: its file found and read (the encoder named from it), no objective.

    Raises:
        ProtocolError: an objective or ensemble beside ``checkpoint``, a missing or unreadable file (naming the
            file and key).
    """
    where = f"rows[{i}].checkpoint"
    raw = raw_rows[i] if i < len(raw_rows) and isinstance(raw_rows[i], dict) else {}
    if row.ensemble is not None or raw.get("objective") is not None:
        raise ProtocolError(protocol.file, where, "a released-weights row evaluates its file: give no objective or ensemble")
    path = resolve_checkpoint(row.checkpoint, protocol.file)
    if not path.is_file():
        raise ProtocolError(protocol.file, where, f"no such file: {path}")
    try:
        encoder = load_released(path, row.method, row.checkpoint_args)
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(protocol.file, where, f"{path} does not load"
                            f"{' as ' + row.method + ' (its official format)' if row.method else ''}: {exc}") from exc
    return dataclasses.replace(row, checkpoint=str(path), encoder=encoder.encoder_name, objective=None)


def apply_overrides(data: dict[str, Any], overrides: "tuple[str, ...] | list[str]", file: str) -> dict[str, Any]:
    """``data`` with each ``KEY.PATH=VALUE`` of ``overrides`` set (see :func:`load_protocol`); a copy.

    Raises:
        ProtocolError: an override without ``=``, an empty key, a list index that is not a number or out of
            range, or a path through a value that is not a mapping or list (naming the file and the key).
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ProtocolError(file, "--set", f"expected KEY.PATH=VALUE, got {item!r}")
        parts = key.strip().split(".")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ProtocolError(file, key, f"--set value {raw!r} is not valid YAML: {yaml_problem(exc)}") from None
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            where = ".".join(parts[:depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ProtocolError(file, where, f"--set: {part!r} is not an index of this list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ProtocolError(file, where, f"--set: {'.'.join(parts[:depth])} holds {node!r}, not a mapping or list")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error as one line a user can act on: ``line 3, column 1: while parsing a flow node, expected the
    node content, but found '<stream end>'`` (PyYAML's own text names an anonymous stream)."""
    mark = getattr(exc, "problem_mark", None)
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    text = ", ".join(p for p in parts if p) or str(exc).splitlines()[0]
    return (f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else "") + text


def _resolve_extends(data: dict[str, Any], file: str) -> dict[str, Any]:
    """Presets with ``extends: <other preset>`` get that preset's keys merged underneath their own
    (recursively), so that a variant of ``demo`` names only what differs.

    Raises:
        ProtocolError: an unknown or circular ``extends``.
    """
    presets = data.get("presets")
    if not isinstance(presets, dict):
        return data

    def resolved(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        preset = presets[name]
        if not isinstance(preset, dict) or "extends" not in preset:
            return preset
        base = preset["extends"]
        if base not in presets:
            raise ProtocolError(file, f"presets.{name}.extends", f"no preset {base!r}; presets: {', '.join(presets)}")
        if base in chain:
            raise ProtocolError(file, f"presets.{name}.extends", f"circular extends: {' -> '.join(chain + (base,))}")
        own = {k: v for k, v in preset.items() if k != "extends"}
        return merge(resolved(base, chain + (base,)), own)

    return {**data, "presets": {name: resolved(name, (name,)) for name in presets}}


def _read_with_includes(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """A protocol file's mapping with its ``include:`` (a file or list of files, relative to it) merged
    underneath: included mappings are merged key by key (later includes over earlier ones), then the file's
    own keys over them, recursively for nested mappings (``presets.demo.pretrain.epochs`` in a file
    overrides only that key of an included preset).

    Raises:
        ProtocolError: a binary (not UTF-8) file, invalid YAML, a missing or circular include (naming the
            including file and key).
    """
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # a binary file: the codec's message names neither the file nor the fix
        raise ProtocolError(file, "", f"not a text file (byte {exc.start} is not UTF-8): a protocol is YAML text; "
                                      "is this the right file?") from exc
    except yaml.YAMLError as exc:
        raise ProtocolError(file, "", f"not valid YAML: {yaml_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProtocolError(file, "", f"expected a mapping at the top level, got {type(data).__name__}")
    includes = data.pop("include", [])
    includes = [includes] if isinstance(includes, str) else includes
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ProtocolError(file, "include", f"expected a file name or a list of file names, got {includes!r}")
    merged: dict[str, Any] = {}
    for name in includes:
        target = (path.parent / name).resolve()
        if not target.is_file():
            raise ProtocolError(file, "include", f"included file not found: {name} (resolved to {target})")
        if target in chain or target == path.resolve():
            raise ProtocolError(file, "include", f"circular include of {name}")
        merged = merge(merged, _read_with_includes(target, chain + (path.resolve(),)))
    return merge(merged, data)


def _check_registry(reg: registry.Registry, name: str, file: str, key: str) -> None:
    if name not in reg:
        raise ProtocolError(file, key, unknown_name_message(reg, name))


#: what a name that becomes part of a file name must look like
UNSAFE_NAME = ("must be a name that can be a file name: a letter or digit first, then letters, digits, '.', '_', "
               "'+', '-' (no '/' or '..')")


def _check_names(protocol: Protocol) -> None:
    """Every name of ``protocol`` against the registries, and its rows and presets against each other.

    Raises:
        ProtocolError: naming the file and the key.
    """
    file = protocol.file
    if not protocol.rows:
        raise ProtocolError(file, "rows", "a protocol needs at least one row")
    if not protocol.presets:
        raise ProtocolError(file, "presets", "a protocol needs at least one preset")
    if not is_safe_name(protocol.name):
        raise ProtocolError(file, "name", f"{protocol.name!r} {UNSAFE_NAME}")
    row_ids = _check_rows(protocol)
    for pname, preset in protocol.presets.items():
        _check_preset(protocol, pname, preset, row_ids)


def _check_rows(protocol: Protocol) -> set[str]:
    """Row ids (safe, unique), ensembles, encoders, objectives and their options; returns the row ids."""
    file = protocol.file
    seen: set[str] = set()
    for i, row in enumerate(protocol.rows):
        where = f"rows[{i}]"
        if not is_safe_name(row.id):
            raise ProtocolError(file, f"{where}.id", f"{row.id!r} {UNSAFE_NAME}")
        if row.id in seen:
            raise ProtocolError(file, f"{where}.id", f"duplicate row id {row.id!r}")
        seen.add(row.id)
        if row.ensemble is not None:
            _check_ensemble(protocol, row, where)
            continue
        if row.encoder is None:
            raise ProtocolError(file, f"{where}.encoder", "required key is missing (or give 'ensemble')")
        _check_registry(registry.ENCODERS, row.encoder, file, f"{where}.encoder")
        _check_encoder_options(row.encoder, row.encoder_options, file, f"{where}.encoder_options")
        if row.objective is not None:
            _check_registry(registry.OBJECTIVES, row.objective, file, f"{where}.objective")
            check_options(registry.OBJECTIVES.get(row.objective), row.objective_options, file,
                                f"{where}.objective_options", skip=1)
    return seen


def _check_encoder_options(encoder: str, options: dict[str, Any], file: str, key: str, *, own_only: bool = False) -> None:
    """An encoder's options against its configuration dataclass (the registry's ``config``: names, types and
    declared ranges); an encoder registered without one has them checked when it is built. ``own_only``: check
    only the options that are fields of its configuration (a preset's options reach every row's encoder)."""
    config = registry.ENCODERS.entry(encoder).meta.get("config")
    if config is None or not dataclasses.is_dataclass(config):
        return
    if own_only:
        names = {f.name for f in dataclasses.fields(config)}
        options = {k: v for k, v in options.items() if k in names}
    check_options(config, options, file, key)


def _check_ensemble(protocol: Protocol, row: RowSpec, where: str) -> None:
    file, spec = protocol.file, row.ensemble
    assert spec is not None
    if row.encoder is not None or row.objective is not None:
        raise ProtocolError(file, f"{where}.ensemble", "an ensemble row fuses other rows: give no encoder or objective")
    ids = [r.id for r in protocol.rows]
    members = spec.rows
    bad = [m for m in members if m not in ids or m == row.id]
    if bad or not members:
        raise ProtocolError(file, f"{where}.ensemble.rows", f"unknown or invalid member row(s) {bad or members}; rows: {', '.join(ids)}")
    if any(next(r for r in protocol.rows if r.id == m).ensemble is not None for m in members):
        raise ProtocolError(file, f"{where}.ensemble.rows", "an ensemble cannot contain another ensemble")
    if spec.weights and len(spec.weights) != len(members):
        raise ProtocolError(file, f"{where}.ensemble.weights", f"{len(members)} rows but {len(spec.weights)} weights")


def _check_preset(protocol: Protocol, pname: str, preset: PresetSpec, row_ids: set[str]) -> None:
    """A preset's datasets, objective options, views, evaluations, seeds, rows and row columns."""
    file, where = protocol.file, f"presets.{pname}"
    if not is_safe_name(pname):
        raise ProtocolError(file, where, f"preset name {pname!r} {UNSAFE_NAME}")
    if (preset.dataset is None) == (not preset.datasets):
        raise ProtocolError(file, f"{where}.dataset", "give either 'dataset' (one) or 'datasets' (a list), not both or neither")
    columns: set[str] = set()
    for i, ds in enumerate(preset.all_datasets):
        key = f"{where}.datasets[{i}]" if preset.datasets else f"{where}.dataset"
        check_dataset(ds, file, key, check_path=False)
        if ds.id is not None and not is_safe_name(ds.id):
            raise ProtocolError(file, f"{key}.id", f"{ds.id!r} {UNSAFE_NAME}")
        if ds.column in columns:
            raise ProtocolError(file, f"{key}.id", f"duplicate dataset column {ds.column!r}; give each an 'id'")
        columns.add(ds.column)
        _check_evaluation_overrides(preset, ds.evaluations, file, f"{key}.evaluations")
        if ds.pretrain:  # the merged schedule is checked like the preset's own
            from_data(PretrainSpec, {**dataclasses.asdict(preset.pretrain), **ds.pretrain}, file, (key, "pretrain"))
    for encoder in sorted({r.encoder for r in protocol.rows if r.encoder is not None}):
        _check_encoder_options(encoder, preset.encoder_options, file, f"{where}.encoder_options", own_only=True)
    for oname, options in preset.objective_options.items():
        _check_registry(registry.OBJECTIVES, oname, file, f"{where}.objective_options.{oname}")
        check_options(registry.OBJECTIVES.get(oname), options, file, f"{where}.objective_options.{oname}", skip=1)
    _check_preset_evaluations(file, where, preset)
    if not preset.seeds:
        raise ProtocolError(file, f"{where}.seeds", "at least one seed is needed")
    for encoder, overrides in preset.encoder_evaluations.items():
        _check_registry(registry.ENCODERS, encoder, file, f"{where}.encoder_evaluations.{encoder}")
        _check_evaluation_overrides(preset, overrides, file, f"{where}.encoder_evaluations.{encoder}")
    unknown_rows = [r for r in preset.rows if r not in row_ids]
    if unknown_rows:
        raise ProtocolError(file, f"{where}.rows", f"unknown row id(s) {unknown_rows}; rows: {', '.join(row_ids)}")
    for row_id, row_columns in preset.row_columns.items():
        if row_id not in row_ids:
            raise ProtocolError(file, f"{where}.row_columns.{row_id}", f"unknown row id; rows: {', '.join(row_ids)}")
        bad = [c for c in row_columns if c not in {d.column for d in preset.all_datasets}]
        if bad:
            raise ProtocolError(file, f"{where}.row_columns.{row_id}", f"unknown dataset column(s) {bad}; columns: "
                                f"{', '.join(d.column for d in preset.all_datasets)}")


def _check_preset_evaluations(file: str, where: str, preset: PresetSpec) -> None:
    """Each evaluation's name and option names, and its value ranges with each dataset's and each encoder's
    overrides merged in (the registered ``check``, e.g. the options dataclass)."""
    if not preset.evaluations:
        raise ProtocolError(file, f"{where}.evaluations", "at least one evaluation is needed")
    for ename, options in preset.evaluations.items():
        _check_registry(registry.EVALUATIONS, ename, file, f"{where}.evaluations.{ename}")
        check_options(registry.EVALUATIONS.get(ename), options or {}, file, f"{where}.evaluations.{ename}", skip=1)
        check = registry.EVALUATIONS.entry(ename).meta.get("check")
        if check is None:
            continue
        for ds in preset.all_datasets or (None,):
            for per_encoder in ({}, *preset.encoder_evaluations.values()):
                merged = {**(options or {}), **(ds.evaluations.get(ename, {}) if ds is not None else {}),
                          **per_encoder.get(ename, {})}
                run_check(check, merged, file, f"{where}.evaluations.{ename}")


def run_check(check: Any, options: dict[str, Any], file: str, key: str, context: str = "") -> None:
    """An evaluation's registered ``check`` on its merged ``options``: an options dataclass through the
    validation of :mod:`~usdrl_bench.protocols.schema` (its declared types and ranges, then its own
    ``__post_init__``), a function by calling it.

    Raises:
        ProtocolError: naming ``file`` and ``key`` (and ``context``: the row and column).
    """
    if dataclasses.is_dataclass(check):
        try:
            from_data(check, options, file, tuple(key.split(".")))
        except ProtocolError as exc:
            raise ProtocolError(file, exc.key, str(exc).split(f"{exc.key}: ", 1)[-1] + context) from None
        return
    try:
        check(**options)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(file, key, f"{exc}{context}") from None


def _check_evaluation_overrides(preset: PresetSpec, overrides: dict[str, dict[str, Any]], file: str, key: str) -> None:
    """Overrides of evaluation options (a dataset's, an encoder's) must name evaluations of the preset and
    valid options of them."""
    for ename, options in overrides.items():
        if ename not in preset.evaluations:
            raise ProtocolError(file, f"{key}.{ename}", f"not an evaluation of this preset ({', '.join(preset.evaluations)})")
        check_options(registry.EVALUATIONS.get(ename), options or {}, file, f"{key}.{ename}", skip=1)


def check_dataset(spec: DatasetSpec, file: str, key: str, check_path: bool = True, data_root: Path | None = None) -> None:
    """Check a dataset spec against the registry (name, split) and, optionally, that its path exists (a
    named dataset: under ``data_root``, default ``$USDRL_DATA``, else ``./data``).

    Raises:
        ProtocolError: naming ``file`` and ``key``.
    """
    _check_registry(registry.DATASETS, spec.name, file, f"{key}.name")
    entry = registry.DATASETS.entry(spec.name)
    splits = entry.meta.get("splits")
    if spec.split is not None and splits and spec.split not in splits:
        raise ProtocolError(file, f"{key}.split", f"unknown split {spec.split!r} for dataset {spec.name!r}; available: {', '.join(splits)}")
    needs_path = entry.meta.get("needs_path", True)
    if needs_path and spec.path is None:
        raise ProtocolError(file, f"{key}.path", f"dataset {spec.name!r} needs a path")
    if check_path and spec.path is None and entry.meta.get("named"):
        missing = locate_dataset(spec.name, None, data_root).missing
        if missing is not None:
            raise ProtocolError(file, f"{key}.name", missing)
    if check_path and spec.path is not None:
        resolved = spec.resolved_path()
        assert resolved is not None
        if not resolved.exists():
            raise ProtocolError(file, f"{key}.path", f"data path does not exist: {spec.path} (resolved to {resolved})")
    if spec.pretrain_on is not None:
        if spec.pretrain_on.pretrain_on is not None:
            raise ProtocolError(file, f"{key}.pretrain_on.pretrain_on", "the pretraining data cannot itself name another")
        check_dataset(spec.pretrain_on, file, f"{key}.pretrain_on", check_path, data_root)
    check_options(entry.obj, spec.options, file, f"{key}.options", skip=2)


def parse_dataset_override(text: str, split: str | None = None) -> DatasetSpec:
    """Parse the CLI spelling ``NAME[:PATH]`` (e.g. ``msr_action3d:~/data/MSRAction3D``)."""
    name, _, path = text.partition(":")
    return DatasetSpec(name=name, path=path or None, split=split)


def expand_cells(
    protocol: Protocol,
    preset: str,
    *,
    dataset: DatasetSpec | None = None,
    seeds: tuple[int, ...] | None = None,
    rows: tuple[str, ...] | None = None,
    data_root: Path | None = None,
    check_paths: bool = True,
) -> list[Cell]:
    """The cells to run for ``preset``, after CLI overrides, with the data path checked (named datasets
    under ``data_root``: default ``$USDRL_DATA``, else ``./data``) unless ``check_paths`` is False (a plan or
    a rehearsal, which need no data).

    Raises:
        ProtocolError: unknown preset or row, bad dataset override, missing data path.
    """
    file = protocol.file
    if preset not in protocol.presets:
        raise ProtocolError(file, "presets", f"no preset {preset!r}; available: {', '.join(protocol.presets)}")
    spec = protocol.presets[preset]
    if dataset is not None:
        base = next((d for d in spec.all_datasets if d.name == dataset.name), None)
        if base is not None:  # the same reader: keep the preset's options, overriding path / split
            dataset = dataclasses.replace(base, path=dataset.path or base.path, split=dataset.split or base.split,
                                          id=None if dataset.split and dataset.split != base.split else base.id)
        else:  # another dataset in the place of the preset's (first) one: it takes that paper column's place; the
            # report sets the paper's numbers beside it only if it is the paper's data (a complete release)
            first = spec.all_datasets[0]
            dataset = dataclasses.replace(dataset, stream=first.stream, paper_setting=first.paper_setting,
                                          evaluations=first.evaluations)
        check_dataset(dataset, file, "--dataset", check_path=check_paths, data_root=data_root)
        datasets: tuple[DatasetSpec, ...] = (dataset,)
    else:
        datasets = spec.all_datasets
        for i, ds in enumerate(datasets):
            check_dataset(ds, file, f"presets.{preset}.datasets[{i}]" if spec.datasets else f"presets.{preset}.dataset",
                          check_path=check_paths, data_root=data_root)
    selected = tuple(r for r in protocol.rows if r.id in spec.rows) if spec.rows else protocol.rows
    if rows:
        known = {r.id for r in protocol.rows}
        unknown = [r for r in rows if r not in known]
        if unknown:
            raise ProtocolError(file, "rows", f"unknown row id(s) {unknown}; available: {', '.join(sorted(known))}")
        selected = tuple(r for r in protocol.rows if r.id in rows)
    # an ensemble needs its member rows
    members = {m for r in selected if r.ensemble is not None for m in r.ensemble.rows}
    selected = tuple(r for r in protocol.rows if r in selected or r.id in members)
    return [
        Cell(protocol=protocol, preset_name=preset, preset=spec, row=row,
             dataset=dataclasses.replace(ds, stream=row.stream) if row.stream else ds, seed=seed)
        for seed in (seeds or spec.seeds)
        for ds in datasets
        for row in selected
        if row.id not in spec.row_columns or dataset is not None or ds.column in spec.row_columns[row.id]
    ]


def check_cells(cells: list[Cell]) -> None:
    """What a run derives from each cell before it loads any data, checked: the merged pretraining schedule
    (preset, method, dataset), each evaluation's merged options against its declared ranges, and the
    encoder's configuration (preset, then options: e.g. ``hidden_size`` divisible by ``num_heads``).
    ``usdrl-bench validate`` and ``run`` call it on the same cells.

    Raises:
        ProtocolError: naming the protocol file and the key.
    """
    seen: set[tuple] = set()
    for cell in cells:
        file = cell.protocol.file
        where = f"presets.{cell.preset_name}"
        cell.pretrain  # noqa: B018 - merged and validated on access
        for name, options in cell.evaluations.items():
            check = registry.EVALUATIONS.entry(name).meta.get("check")
            if check is None:
                continue
            key = (name, repr(sorted(options.items())))
            if key in seen:
                continue
            seen.add(key)
            run_check(check, options, file, f"{where}.evaluations.{name}", f" (row {cell.row.id}, {cell.dataset.column})")
        if cell.row.encoder is None:
            continue
        config = registry.ENCODERS.entry(cell.row.encoder).meta.get("config")
        key = (cell.row.encoder, cell.encoder_preset, repr(sorted(cell.encoder_options.items())))
        if config is None or key in seen:
            continue
        seen.add(key)
        preset = cell.encoder_preset if cell.encoder_preset in ENCODER_PRESETS.get(cell.row.encoder, {}) else None
        try:
            config_from_preset(config, cell.row.encoder, preset, cell.encoder_options)
        except (ValueError, TypeError) as exc:
            key = (f"rows[{cell.protocol.rows.index(cell.row)}].encoder_options" if cell.row.encoder_options
                   else f"{where}.encoder_options")
            raise ProtocolError(file, key, f"{exc} (encoder {cell.row.encoder}, preset {cell.encoder_preset})") from None


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a protocol file as written: the keys, types and declared ranges of
    :class:`~usdrl_bench.protocols.spec.Protocol`, generated by pydantic from the same type hints that
    validate it, plus the file-level ``include:`` and a preset's ``extends:``. Required keys are required
    of rows and ensembles only (a file's presets may come from an included file or another preset).
    Registered names and the options of encoders, objectives, evaluations and datasets are checked by
    ``usdrl-bench validate``, not by the schema (plug-ins add to them). Published as
    ``docs/protocol.schema.json`` (``usdrl-bench schema``)."""
    schema = type_adapter(Protocol).json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    for internal in ("file", "overrides"):
        schema["properties"].pop(internal, None)
    schema.pop("required", None)
    schema["properties"]["include"] = {
        "description": "protocol file(s), relative to this one, merged underneath it",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    for name, definition in defs.items():
        if name != "RowSpec" and name != "EnsembleSpec":  # a preset, its schedule or data may be completed by
            definition.pop("required", None)               # an included file or the preset it extends
    preset = defs[PresetSpec.__name__]
    preset["properties"]["extends"] = {"type": "string", "description": "another preset merged underneath this one"}
    for definition in defs.values():
        definition.pop("title", None)
        for prop in definition.get("properties", {}).values():
            prop.pop("title", None)
    for prop in schema["properties"].values():
        prop.pop("title", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "usdrl-bench protocol", **{k: v for k, v in schema.items() if k != "title"}}
