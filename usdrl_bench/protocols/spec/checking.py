"""Checking a protocol: its names against the registries, its rows and presets against each other, each
component's options against its declared ranges, a dataset against its reader (and its data's location), and
what each expanded cell derives (merged schedule, evaluation options, encoder configuration); and the JSON Schema
of a protocol file (``usdrl-bench schema``). Every refusal is a
:class:`~usdrl_bench.protocols.schema.ProtocolError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from usdrl_bench import registry
from usdrl_bench.components import unknown_name_message
from usdrl_bench.data.root import locate_dataset
from usdrl_bench.encoders._blocks import ENCODER_PRESETS, config_from_preset
from usdrl_bench.io import is_safe_name
from usdrl_bench.protocols.schema import ProtocolError, check_options, from_data, type_adapter
from usdrl_bench.protocols.spec.model import Cell, DatasetSpec, PresetSpec, Protocol, RowSpec
from usdrl_bench.train.spec import PretrainSpec

__all__ = ["check_registry", "check_names", "check_dataset", "check_cells", "run_check", "protocol_json_schema",
           "UNSAFE_NAME"]


def check_registry(reg: registry.Registry, name: str, file: str, key: str) -> None:
    if name not in reg:
        raise ProtocolError(file, key, unknown_name_message(reg, name))


#: what a name that becomes part of a file name must look like
UNSAFE_NAME = ("must be a name that can be a file name: a letter or digit first, then letters, digits, '.', '_', "
               "'+', '-' (no '/' or '..')")


def check_names(protocol: Protocol) -> None:
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
        check_registry(registry.ENCODERS, row.encoder, file, f"{where}.encoder")
        _check_encoder_options(row.encoder, row.encoder_options, file, f"{where}.encoder_options")
        if row.objective is not None:
            check_registry(registry.OBJECTIVES, row.objective, file, f"{where}.objective")
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
        check_registry(registry.OBJECTIVES, oname, file, f"{where}.objective_options.{oname}")
        check_options(registry.OBJECTIVES.get(oname), options, file, f"{where}.objective_options.{oname}", skip=1)
    _check_preset_evaluations(file, where, preset)
    if not preset.seeds:
        raise ProtocolError(file, f"{where}.seeds", "at least one seed is needed")
    for encoder, overrides in preset.encoder_evaluations.items():
        check_registry(registry.ENCODERS, encoder, file, f"{where}.encoder_evaluations.{encoder}")
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
        check_registry(registry.EVALUATIONS, ename, file, f"{where}.evaluations.{ename}")
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
    check_registry(registry.DATASETS, spec.name, file, f"{key}.name")
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
        cell.schedule  # noqa: B018 - merged and validated on access
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
