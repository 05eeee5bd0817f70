"""Records: tidy rows, one per metric, with provenance. The report reads only these.

Each evaluation of a cell is one JSON file under ``results/records/<protocol>/<preset>/<dataset>-<split>/``
written atomically; its existence means the evaluation is done (a re-run skips it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from usdrl_bench.io import write_json_atomic

#: columns of a record row, in report order
RECORD_COLUMNS: tuple[str, ...] = (
    "protocol", "preset", "row_id", "row_label", "row_x", "row_index", "paper_table", "paper_row", "paper_key", "encoder", "objective",
    "dataset", "split", "stream", "column", "column_index", "paper_setting", "train_samples", "test_samples", "seed", "evaluation", "metric", "value", "higher_is_better", "note",
    "config_hash", "checkpoint_hash", "git_revision", "package_version", "date", "wall_time_s",
    "pretrain_wall_time_s", "device", "artifact", "protocol_version", "overrides", "pretrain_data",
    # methods (usdrl_bench.methods): the method, its published number here, and what its model costs
    "method", "method_published", "encoder_params", "pretrain_gflops_per_sample",
    # where the weights came from: "pretrained" (by this suite), "random init", or "released weights: <file> (sha256 ...)"
    "weights",
    # a rehearsal's record (synthetic data shaped as the release, schedules cut): never a result
    "rehearsal",
    # what makes the number hard to defend (usdrl_bench.data.checks), "; "-separated; None: nothing
    "data_warnings",
)

RECORDS_SUBDIR = "records"
#: appended to the preset's name in a rehearsal's records (``paper-rehearsal``; :mod:`usdrl_bench.protocols.rehearsal`)
REHEARSAL_SUFFIX = "-rehearsal"
#: what every report of a rehearsal says first
REHEARSAL_BANNER = ("**REHEARSAL: not results.** Synthetic data shaped as each release and every schedule cut to a few "
                    "steps; these numbers only show that every row, evaluation and report entry runs at the preset's "
                    "shapes (`usdrl-bench run --rehearse`).")


def is_rehearsal_preset(preset: str) -> bool:
    """Whether records of ``preset`` come from a rehearsal."""
    return str(preset).endswith(REHEARSAL_SUFFIX)


def write_records(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` (each with every :data:`RECORD_COLUMNS` key) atomically as one JSON file.

    Raises:
        ValueError: a row lacks a column.
    """
    for row in rows:
        missing = [c for c in RECORD_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"record row lacks columns {missing}")
    return write_json_atomic(path, {"schema": "usdrl-bench/records-v1", "rows": rows})


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of one record file.

    Raises:
        ValueError: not a record file (names the file).
    """
    try:
        data = json.loads(Path(path).read_text())
        rows = list(data["rows"])
        if not all(isinstance(r, dict) for r in rows):
            raise TypeError("rows must be objects")
        return rows
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a usdrl-bench record file ({exc})") from exc


def load_records(results_dir: str | Path, latest_only: bool = True, bad: list[str] | None = None) -> pd.DataFrame:
    """Every record under ``results_dir/records`` as a DataFrame with :data:`RECORD_COLUMNS`.

    Args:
        latest_only: keep, per (protocol, preset, column, dataset, split, stream, row, seed, metric), only the
            most recent record (older ones come from earlier code or configurations).
        bad: when given, an unreadable record file is skipped and its message appended here (the report goes
            on with the others); when None, it raises.
    Raises:
        ValueError: an unreadable record file (naming it), unless ``bad`` is given.
    """
    files = sorted((Path(results_dir) / RECORDS_SUBDIR).rglob("*.json"))
    rows = []
    for f in files:
        try:
            rows.extend(read_records(f))
        except ValueError as exc:
            if bad is None:
                raise
            bad.append(str(exc))
    df = pd.DataFrame(rows, columns=list(RECORD_COLUMNS))
    df["rehearsal"] = df["rehearsal"].astype("boolean").fillna(False).astype(bool)  # records from before the column
    if latest_only and len(df):
        key = ["protocol", "preset", "column", "dataset", "split", "stream", "row_id", "seed", "metric"]
        df = df.sort_values("date").drop_duplicates(key, keep="last").reset_index(drop=True)
    return df
