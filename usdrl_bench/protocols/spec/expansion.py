"""Expanding a protocol into the cells a run does: a preset's rows x datasets x seeds, after the command line's
selections (``--dataset``, ``--split``, ``--rows``, ``--seeds``), with each dataset checked (:mod:`.checking`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from usdrl_bench.protocols.schema import ProtocolError
from usdrl_bench.protocols.spec.checking import check_dataset
from usdrl_bench.protocols.spec.model import Cell, DatasetSpec, Protocol

__all__ = ["parse_dataset_override", "expand_cells"]


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
