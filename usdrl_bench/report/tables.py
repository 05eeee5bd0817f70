"""Tables beside the paper's numbers, from records only.

The records of one protocol under one preset make one table: a line per protocol row, and for every
metric one column per dataset column of the preset (``ntu60_xsub``, ``ntu60_xview`` ... or the demo's
stand-ins). A cell holds the mean over seeds, the standard deviation and the 95 % bootstrap interval
when there are several seeds (:mod:`usdrl_bench.report.stats`), and beside it the paper's number and the
difference. Tables are written as Markdown, CSV (tidy: one line per row, column and metric) and LaTeX,
with a header saying which data, preset and seeds the numbers come from.

Paper numbers come from the package's copy of the paper's tables: ``paper_table5_ablation.csv`` (rows
matched by ``paper_row``) and ``paper_tables.csv`` (Tables 1-4, rows matched by a row's ``paper``
selector, columns by the dataset's ``paper_setting``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from usdrl_bench.records import REHEARSAL_BANNER, is_rehearsal_preset
from usdrl_bench.evaluate.ensemble import FUSION_NOTE
from usdrl_bench.report.leaderboard import RANKED_METRICS, TEST_NOTE, ranking, to_display
from usdrl_bench.report.stats import CONFIDENCE, summarise

#: metrics shown in tables, in order, with their titles
METRIC_TITLES: dict[str, str] = {
    "linear_top1_best_of_evals": "linear top-1, best of evaluations (the paper's)",
    "knn1_top1": "kNN-1 top-1",
    "linear_top1": "linear top-1, final epoch",
    "linear_own_top1_best_of_evals": "linear top-1 with the method's own probe recipe, best of evaluations",
    "linear_own_top1": "linear top-1 with the method's own probe recipe, final epoch",
    "semi_top1_1pct": "semi-supervised top-1, 1 % labels",
    "semi_top1_10pct": "semi-supervised top-1, 10 % labels",
    "finetune_top1": "fine-tuned top-1 (whole encoder, all labels)",
    "silhouette_features": "silhouette of the features (cosine)",
    "silhouette_tsne": "silhouette in the t-SNE plane",
    "silhouette_umap": "silhouette in the UMAP plane",
    "map_action@0.5": "mAP over actions, θ = 0.5 (official PKU-MMD)",
    "map_video@0.5": "mAP over videos, θ = 0.5 (official PKU-MMD)",
    "voc_map_action@0.5": "VOC-style mAP over actions, IoU 0.5 (not the official metric)",
    "ap_2d": "2D-AP (official AP averaged over θ = 0.05 ... 1)",
    "frame_top1": "frame-wise top-1, background included",
    "seg_acc": "segmentation Acc (frames, background included)",
    "seg_edit": "segmentation Edit (DeST)",
    "seg_f1@10": "segmentation F1@10 (DeST)",
    "seg_f1@25": "segmentation F1@25 (DeST)",
    "seg_f1@50": "segmentation F1@50 (DeST)",
    **{f"early_top1@{p}": f"early prediction top-1, first {p} % observed" for p in range(5, 101, 5)},
}

#: record metric -> the paper's metric it is compared with. The paper's linear numbers are the official
#: code's best test top-1 over the periodic evaluations (FACTS §6), so they sit beside
#: ``linear_top1_best_of_evals``; the final-epoch ``linear_top1`` is shown without a paper number.
PAPER_METRIC: dict[str, str | None] = {"linear_top1_best_of_evals": "linear_top1", "linear_top1": None}

#: metrics in percent (the others are shown with three decimals)
PERCENT_METRICS = ("linear_top1", "knn1_top1", "linear_top1_best_of_evals", "linear_own_top1",
                   "linear_own_top1_best_of_evals", "semi_top1_1pct", "semi_top1_10pct",
                   "finetune_top1",
                   "map_action@0.5", "map_video@0.5", "voc_map_action@0.5", "ap_2d", "frame_top1", "seg_acc",
                   "seg_edit", "seg_f1@10", "seg_f1@25", "seg_f1@50",
                   *(f"early_top1@{p}" for p in range(1, 101)))

#: titles of the paper's tables and figures, by the protocols' ``paper_table``
PAPER_TITLES: dict[str, str] = {
    "quickstart": "Quickstart: does self-supervised pretraining pay? (Table 5's row 7 for reference)",
    "table5_ablation": "Table 5: ablation of encoder and objective",
    "1": "Table 1: linear evaluation",
    "2": "Table 2: semi-supervised fine-tuning (fine-tuning recipe of CMD; the paper gives none)",
    "3": "Table 3: kNN-1 action retrieval",
    "4": "Table 4: action detection on PKU-MMD I",
    "J-seg": "Journal extension: action segmentation on PKU-MMD II (DeST's metrics)",
    "J-early": "Journal extension: early action prediction (accuracy against the observed ratio)",
    "J-1": "Journal extension: linear evaluation, multi-modal (J+M+B) single model",
    "J-transfer": "Journal extension: transfer (NTU-60 pretrained, evaluated on other data)",
    "fig4_alpha": "Figure 4: the DSTE layer mix α",
    "fig5_embedding": "Figure 5: t-SNE / UMAP of instance features",
    "nwucla": "NW-UCLA cross-view (real data), beside the published results",
}

#: x-axis titles of sweep figures, by ``paper_table``
X_LABELS: dict[str, str] = {
    "fig4_alpha": "α (layer output = α·CA + (1 − α)·DSA, Eq. 5)",
}

#: the setting of every Table 5 number (the ablation is on NTU-60 xsub only)
TABLE5_SETTING = "ntu60_xsub"


@lru_cache(maxsize=None)
def _csv(name: str) -> pd.DataFrame:
    with resources.files("usdrl_bench.report").joinpath(f"data/{name}").open() as f:
        return pd.read_csv(f, dtype={"table": str})


def paper_table(name: str) -> pd.DataFrame:
    """The paper's Table 5 as a tidy frame with columns ``paper_row``, ``metric``, ``value``, ``setting``.

    Raises:
        KeyError: no such table.
    """
    if name == "table5_ablation":
        wide = _csv("paper_table5_ablation.csv")
        tidy = wide.melt(id_vars=["row", "setting"], value_vars=["linear_top1", "knn1_top1"], var_name="metric")
        return tidy.rename(columns={"row": "paper_row"})
    raise KeyError(f"no paper numbers for table {name!r}; known: table5_ablation")


def paper_results() -> pd.DataFrame:
    """All published numbers of the paper's Tables 1–4 (``paper_tables.csv``): columns ``table``,
    ``group``, ``method``, ``venue``, ``modality``, ``encoder``, ``setting``, ``metric``, ``value``."""
    return _csv("paper_tables.csv").copy()


#: named data sets read by another reader of the same benchmark: ``nwucla_xview`` is ``nwucla`` under the data root
PUBLISHED_FAMILY: dict[str, str] = {"nwucla_xview": "nwucla"}


def published_results() -> pd.DataFrame:
    """Published results of other methods on the benchmarks the suite runs for real (``published.csv``):
    columns ``dataset``, ``split``, ``train_samples``, ``test_samples``, ``method``, ``venue``, ``evaluation``,
    ``metric``, ``value``, ``source``. Shown in rows of their own, never as a paper column."""
    return _csv("published.csv").copy()


def published_for(dataset: str, split: str, sizes: tuple[int, int] | None) -> pd.DataFrame:
    """The published results that belong beside a column of ``dataset`` / ``split``: the same benchmark
    (:data:`PUBLISHED_FAMILY`), the same split and, when known, the complete set's sizes (a subset of the
    files is not the benchmark)."""
    p = published_results()
    p = p[(p["dataset"] == PUBLISHED_FAMILY.get(dataset, dataset)) & (p["split"] == split)]
    if sizes is not None:
        p = p[(p["train_samples"] == sizes[0]) & (p["test_samples"] == sizes[1])]
    return p


def paper_value(paper_table_name: str | None, paper_row: float | None, paper_key: str | None, setting: str | None,
                metric: str) -> float:
    """The paper's number for one cell, NaN when the paper has none.

    Args:
        paper_table_name: ``table5_ablation`` or a table id of ``paper_tables.csv`` ("1" ... "4" for the AAAI
            paper, "J-..." for the journal extension's numbers, FACTS-foundation §6).
        paper_row: Table 5 row.
        paper_key: JSON of the row's selector over ``paper_tables.csv`` columns (``{"method": "USDRL",
            "encoder": "DSTE", "modality": "J"}``).
        setting: the dataset column's paper setting (``ntu60_xsub`` ...).
        metric: the record's metric name (:data:`PAPER_METRIC` maps it to the paper's).
    """
    if metric in PAPER_METRIC:
        if PAPER_METRIC[metric] is None:
            return np.nan
        metric = PAPER_METRIC[metric]  # type: ignore[assignment]
    if not paper_table_name or not setting:
        return np.nan
    if paper_table_name == "table5_ablation":
        if paper_row is None or pd.isna(paper_row) or setting != TABLE5_SETTING:
            return np.nan
        t = paper_table("table5_ablation")
        hit = t[(t.paper_row == int(paper_row)) & (t.metric == metric)]
        return float(hit["value"].iloc[0]) if len(hit) else np.nan
    if not paper_key or (isinstance(paper_key, float) and np.isnan(paper_key)):
        return np.nan
    if metric.startswith("semi_top1_"):  # Table 2's settings carry the label fraction: ntu60_xsub_1pct
        setting, metric = f"{setting}_{metric[len('semi_top1_'):]}", "semi_top1"
    t = paper_results()
    mask = (t["table"] == str(paper_table_name)) & (t["setting"] == setting) & (t["metric"] == metric)
    for column, value in json.loads(paper_key).items():
        if column not in t.columns:
            raise KeyError(f"paper selector key {column!r} is not a column of paper_tables.csv ({', '.join(t.columns)})")
        mask &= t[column].astype(str) == str(value)
    hit = t[mask]
    return float(hit["value"].iloc[0]) if len(hit) == 1 else np.nan


@dataclass
class Table:
    """One generated table: the tidy summary frame and where its numbers come from.

    ``frame`` has one line per (row, column, metric) with ``mean``, ``std``, ``n``, ``ci_low``,
    ``ci_high``, ``paper`` and ``delta``; ``columns`` describes each dataset column.
    """

    protocol: str
    preset: str
    paper_table: str | None
    frame: pd.DataFrame
    seeds: list[int]
    rows: list[str]
    columns: pd.DataFrame
    metrics: list[str] = field(default_factory=list)
    x: dict[str, float] = field(default_factory=dict)  # row -> position on a sweep's x axis (Figure 4)
    ensemble_rows: list[str] = field(default_factory=list)  # rows that fuse other rows' scores (Table 1)
    published: pd.DataFrame = field(default_factory=pd.DataFrame)  # published results per column (column, ...)
    records: pd.DataFrame = field(default_factory=pd.DataFrame)  # the records behind it (per seed: rankings)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self.protocol}__{self.preset}")

    @property
    def title(self) -> str:
        # a protocol titled for itself (the quickstart), else the paper table it reproduces, else its name
        return PAPER_TITLES.get(self.protocol) or PAPER_TITLES.get(self.paper_table or self.protocol, self.protocol)

    @property
    def x_label(self) -> str:
        return X_LABELS.get(self.paper_table or "", "x")

    def source_lines(self) -> list[str]:
        """One line per dataset column: data, split, stream, sizes, and the paper setting it is set beside."""
        lines = []
        for _, c in self.columns.iterrows():
            size = (f", {int(c.train_samples)} train / {int(c.test_samples)} test samples"
                    if pd.notna(c.train_samples) else "")
            label = "streams" if "," in str(c.stream) else "stream"
            text = f"`{c.column}`: dataset **{c.dataset}**, split {c.split}, {label} {c.stream}{size}"
            if isinstance(c.get("pretrain_data"), str):
                text += f"; encoders pretrained on {c.pretrain_data} (transfer)"
            if isinstance(c.paper_setting, str):
                if _is_paper_data(c.dataset, c.split, c.paper_setting, _sizes(c)):
                    text += f"; paper column {c.paper_setting}"
                elif c.dataset in STAND_INS:
                    text += (f"; stands in for the paper's {c.paper_setting}: the paper's numbers are shown for "
                             f"reference, the Δ is a gap, not a reproduction check. A stand-in shows that every "
                             f"row runs, not what a method is worth (at a demo's size some pretrained rows stay "
                             f"near random initialisation); real numbers: `usdrl-bench run nwucla`")
            lines.append(text)
        if not self.published.empty:
            cited = self.published.drop_duplicates("method")
            lines.append("rows marked *published* are other methods' reported results on the same benchmark, not run "
                         "here: " + "; ".join(f"{r.method} ({r.evaluation}): {r.source}" for r in cited.itertuples()))
        return lines

    @property
    def header(self) -> str:
        seeds = ", ".join(map(str, self.seeds))
        n = len(self.seeds)
        return (f"Preset **{self.preset}**, seeds {seeds} ({n} seed{'s' if n != 1 else ''}; "
                + ("mean ± standard deviation and 95 % bootstrap interval over seeds" if n > 1 else "one run per cell")
                + ").")


#: (train, test) samples of the complete benchmarks as every pipeline prepares them (FACTS §2, §4)
OFFICIAL_SIZES: dict[str, tuple[int, int]] = {
    "ntu60_xsub": (40_091, 16_487), "ntu60_xview": (37_646, 18_932),
    "ntu120_xsub": (63_026, 50_919), "ntu120_xset": (54_468, 59_477), "pku1_xsub": (18_841, 2_704),
}


#: the suite's synthetic stand-ins, made to stand in for a paper column: the paper's numbers are shown beside
#: them as a reference (a gap, not a check); any other data set that is not the paper's shows none
STAND_INS: frozenset[str] = frozenset({"synthetic", "synthetic_2d", "rehearsal"})

#: named data sets that are a paper column's own data when complete (the journal's 2-D and UAV settings)
PAPER_DATASETS: frozenset[str] = frozenset({"pku2_xsub", "uav_csv1", "uav_csv2", "ntu60_2d_xsub", "ntu60_2d_xview",
                                            "ntu120_2d_xsub", "ntu120_2d_xset"})


#: readers of the official releases' formats: the paper's data when the sizes are the complete release's
RELEASE_READERS: frozenset[str] = frozenset({"agcn", "ntu_raw", "ctrgcn_npz", "pyskl"})

#: (pretraining data, paper column) of the paper's detection and segmentation settings: encoders pretrained on
#: NTU-60 xsub, evaluated on PKU-MMD I / II videos that the evaluation reads
PAPER_PRETRAINING: frozenset[tuple[str, str]] = frozenset({("ntu60_xsub", "pku1_xsub"), ("ntu60_xsub", "pku2_xsub")})


def _is_paper_data(dataset: str, split: str, setting: str, sizes: tuple[int, int] | None = None) -> bool:
    """Whether a dataset column is the paper's own data (a full NTU / PKU / UAV release), not a stand-in or a
    user's data set: the named benchmark of the setting itself and, where the official sizes are known, of
    those sizes (a preparation of a few sample files is not the paper's data), or a release reader's copy
    with exactly the complete release's sizes. ``split`` is unused: the data set carries it."""
    if (dataset, setting) in PAPER_PRETRAINING:  # detection / segmentation read the PKU release themselves
        return sizes is None or sizes == OFFICIAL_SIZES[dataset]
    if dataset in OFFICIAL_SIZES or dataset in PAPER_DATASETS:
        return dataset == setting and (sizes is None or setting not in OFFICIAL_SIZES or sizes == OFFICIAL_SIZES[setting])
    if dataset in RELEASE_READERS:  # a complete release read from its own path (agcn:NTU-RGB-D-60-AGCN/xsub)
        return setting in OFFICIAL_SIZES and sizes == OFFICIAL_SIZES[setting]
    return False


def _sizes(column) -> tuple[int, int] | None:
    """(train, test) samples of a dataset column (a row of :attr:`Table.columns`), None when not recorded."""
    return (int(column.train_samples), int(column.test_samples)) if pd.notna(column.train_samples) else None


def shows_paper_numbers(dataset: str, split: str, setting: object, sizes: tuple[int, int] | None = None) -> bool:
    """Whether the report sets a paper's numbers (and the Δ) beside a column: its own data
    (:func:`_is_paper_data`) or one of the suite's :data:`STAND_INS`; never a user's data set."""
    if not isinstance(setting, str):
        return False
    return dataset in STAND_INS or _is_paper_data(dataset, split, setting, sizes)


def with_columns(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with ``column`` filled in for records written before columns existed
    (``<dataset>_<split>``)."""
    records = records.copy()
    records["column"] = records["column"].where(records["column"].notna(), records["dataset"] + "_" + records["split"])
    return records


def _column_frame(cols: pd.DataFrame) -> pd.DataFrame:
    """Dataset columns in the protocol's order (``column_index``; records without it after, by first
    appearance) with their description; ``cols`` has ``column`` filled (:func:`with_columns`)."""
    first = cols.drop_duplicates("column", keep="last")
    position = cols["column_index"] if "column_index" in cols else pd.Series(np.nan, index=cols.index)
    keys = pd.DataFrame({"column": cols["column"], "index": position.astype(float), "date": cols["date"]})
    keys = keys.groupby("column", sort=False).agg(index=("index", "min"), date=("date", "min"))
    order = list(keys.sort_values(["index", "date"], na_position="last", kind="stable").index)
    wanted = ["dataset", "split", "stream", "paper_setting", "train_samples", "test_samples", "pretrain_data"]
    info = first.set_index("column").reindex(columns=wanted).loc[order].copy()
    # rows on their own streams (Table 1): name them all
    by_row = cols.sort_values("row_index", kind="stable") if "row_index" in cols else cols  # the protocol's row order
    streams = by_row.groupby("column")["stream"].agg(lambda s: ", ".join(dict.fromkeys(s.dropna())))
    info["stream"] = streams.loc[order].to_numpy()
    return info.reset_index()


def build_tables(records: pd.DataFrame) -> list[Table]:
    """Group records by (protocol, preset) into tables (see the module docstring)."""
    tables: list[Table] = []
    if records.empty:
        return tables
    records = with_columns(records)
    for (protocol, preset), df in records.groupby(["protocol", "preset"], sort=True):
        paper_name = df["paper_table"].dropna().iloc[0] if df["paper_table"].notna().any() else None
        columns = _column_frame(df)
        setting = {c.column: c.paper_setting if shows_paper_numbers(c.dataset, c.split, c.paper_setting, _sizes(c)) else None
                   for c in columns.itertuples()}
        meta = df.drop_duplicates("row_id", keep="last").set_index("row_id")
        first_seen = list(dict.fromkeys(df["row_id"]))

        def order(r: str) -> tuple:  # the protocol's row order; records without it: paper row, then first seen
            index = meta.loc[r, "row_index"] if "row_index" in meta else np.nan
            paper_row = meta.loc[r, "paper_row"]
            return (pd.isna(index), index if pd.notna(index) else 0, pd.isna(paper_row),
                    paper_row if pd.notna(paper_row) else 0, first_seen.index(r))

        rows = sorted(meta.index, key=order)
        lines = []
        for (row_id, column, metric), g in df.groupby(["row_id", "column", "metric"], sort=False):
            s = summarise(g["value"].to_numpy())
            m = meta.loc[row_id]
            pv = paper_value(paper_name, m["paper_row"], m.get("paper_key"),
                             setting.get(column) if isinstance(setting.get(column), str) else None, metric)
            lines.append({"row": row_id, "method": m["row_label"], "encoder": m["encoder"], "objective": m["objective"],
                          "column": column, "metric": metric, "mean": s.mean, "std": s.std, "n": s.n,
                          "ci_low": s.ci_low, "ci_high": s.ci_high, "paper": pv,
                          "delta": s.mean - pv if not np.isnan(pv) else np.nan,
                          "warned": bool(_warnings(g))})
        frame = pd.DataFrame(lines)
        known = [m for m in METRIC_TITLES if m in set(frame["metric"])]
        others = sorted(set(frame["metric"]) - set(known))
        xs = {r: float(meta.loc[r, "row_x"]) for r in rows if "row_x" in meta and pd.notna(meta.loc[r, "row_x"])}
        published = [published_for(c.dataset, c.split, _sizes(c)).assign(column=c.column) for c in columns.itertuples()]
        tables.append(Table(protocol=protocol, preset=preset, paper_table=paper_name, frame=frame,
                            published=pd.concat(published, ignore_index=True) if published else pd.DataFrame(),
                            seeds=sorted(int(x) for x in df["seed"].unique()), rows=rows, columns=columns, records=df,
                            metrics=known + others, x=xs,
                            ensemble_rows=[r for r in rows if "+" in str(meta.loc[r, "stream"])]))
    return tables


#: beside a number whose data drew a warning (usdrl_bench.data.checks; listed under the table)
WARNING_MARK = "⚠"


def _warnings(records: pd.DataFrame) -> list[str]:
    """The distinct data warnings of ``records`` (older records have none)."""
    if "data_warnings" not in records:
        return []
    found = [w for text in records["data_warnings"].dropna() if isinstance(text, str) for w in text.split("; ") if w]
    return list(dict.fromkeys(found))


def warnings_markdown(table: Table) -> list[str]:
    """The data warnings behind a table's numbers, per column (nothing when there are none)."""
    recs = table.records
    lines = []
    for column, g in (recs.groupby("column", sort=False) if "column" in recs and not recs.empty else []):
        for warning in _warnings(g):
            lines.append(f"- `{column}`: {warning}")
    if not lines:
        return []
    return [f"**{WARNING_MARK} Data warnings**: the numbers marked {WARNING_MARK} rest on data too small or odd to mean "
            "much (thresholds: docs/safety.md):", "", *lines, ""]


def _cell(s: pd.Series, digits: int = 1) -> str:
    if np.isnan(s["mean"]):
        return ""
    text = f"{s['mean']:.{digits}f}"
    if s["n"] > 1:
        text += f" ± {s['std']:.{digits}f} [{s['ci_low']:.{digits}f}, {s['ci_high']:.{digits}f}]"
    if s.get("warned", False):
        text += f" {WARNING_MARK}"
    return text


def _paper_cell(s: pd.Series, digits: int = 1) -> str:
    return "" if np.isnan(s["paper"]) else f"{s['paper']:.{digits}f} ({s['delta']:+.{digits}f})"


def wide(table: Table, metric: str, *, latex: bool = False) -> pd.DataFrame:
    """One metric as a display frame: a line per row, per dataset column ours and the paper's (Δ)."""
    f = table.frame[table.frame.metric == metric].set_index(["row", "column"])
    digits = 1 if metric in PERCENT_METRICS else 3
    out = pd.DataFrame({"Row": table.rows,
                        "Method": [table.frame[table.frame.row == r]["method"].iloc[0] for r in table.rows]})
    for column in table.columns["column"]:
        ours, paper = [], []
        for r in table.rows:
            if (r, column) in f.index:
                s = f.loc[(r, column)]
                ours.append(_cell(s, digits))
                paper.append(_paper_cell(s, digits))
            else:
                ours.append("")
                paper.append("")
        out[column] = ours
        if any(paper):
            out[f"{column}: paper (Δ)"] = paper
    pub = table.published[table.published["metric"] == metric] if not table.published.empty else table.published
    if not pub.empty:
        lines = []
        for (method, venue, evaluation), g in pub.groupby(["method", "venue", "evaluation"], sort=False):
            line = {"Row": "published", "Method": f"{method} ({venue}), {evaluation}"}
            line.update({c: f"{v:.{digits}f}" for c, v in zip(g["column"], g["value"])})
            lines.append(line)
        out = pd.concat([out, pd.DataFrame(lines)], ignore_index=True).fillna("")
    if latex:
        out = out.map(lambda v: v.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace(WARNING_MARK, r"$^{\dagger}$")
                      if isinstance(v, str) else v)
        out.columns = [c.replace("Δ", r"$\Delta$").replace("_", r"\_") for c in out.columns]
    return out


EARLY_PREFIX = "early_top1@"


def early_wide(table: Table) -> pd.DataFrame:
    """The early-prediction metrics as one display frame: a line per row (and dataset column), a column per
    observed ratio (``10 %`` ... ``100 %``), mean over seeds (± standard deviation with several)."""
    f = table.frame[table.frame.metric.str.startswith(EARLY_PREFIX)]
    ratios = sorted({int(m[len(EARLY_PREFIX):]) for m in f.metric})
    lines = []
    for column in table.columns["column"]:
        for r in table.rows:
            g = f[(f.row == r) & (f.column == column)].set_index("metric")
            if g.empty:
                continue
            line = {"Row": r, "Method": g["method"].iloc[0]}
            if len(table.columns) > 1:
                line["Column"] = column
            for p in ratios:
                m = f"{EARLY_PREFIX}{p}"
                line[f"{p} %"] = _cell(g.loc[m]) if m in g.index else ""
            lines.append(line)
    return pd.DataFrame(lines)


def to_markdown(table: Table) -> str:
    """The table as Markdown: a heading, the header lines saying where the numbers come from, one
    sub-table per metric (the early-prediction ratios together in one)."""
    parts = [f"## {table.title} — `{table.protocol}`, preset {table.preset}", ""]
    if is_rehearsal_preset(table.preset):
        parts += [REHEARSAL_BANNER, ""]
    parts += [table.header, ""]
    parts += [f"- {line}" for line in table.source_lines()] + [""]
    parts += warnings_markdown(table)
    if table.ensemble_rows:
        parts += [f"Ensemble rows ({', '.join(table.ensemble_rows)}): {FUSION_NOTE}.", ""]
    parts += leaderboard_markdown(table)
    early = [m for m in table.metrics if m.startswith(EARLY_PREFIX)]
    if early:
        parts += ["### early prediction top-1 (%) by the observed part of each sequence", "",
                  early_wide(table).to_markdown(index=False), ""]
    for metric in table.metrics:
        if metric in early:
            continue
        unit = " (%)" if metric in PERCENT_METRICS else ""
        parts += [f"### {METRIC_TITLES.get(metric, metric)}{unit}", "",
                  wide(table, metric).to_markdown(index=False), ""]
    return "\n".join(parts)


def leaderboard_markdown(table: Table) -> list[str]:
    """The rankings of a table whose rows name methods (:mod:`usdrl_bench.report.leaderboard`): per column and
    ranked metric, one sub-table; nothing for other tables."""
    recs = table.records
    if recs.empty or "method" not in recs or not recs["method"].notna().any():
        return []
    parts = ["### Leaderboard", "", f"{TEST_NOTE}. published: the method's own paper (or its code's README) on "
             "this column's benchmark, shown only on the benchmark's own data; params: the encoder's; pretrain "
             "GFLOPs/sample: one training step's forward and backward (objective heads, decoders, key encoders "
             "and extra modalities included) per sample; pretrain min: wall time of the runs that trained.", ""]
    for c in table.columns.itertuples():
        column = c.column
        # a method's published number sits beside the benchmark it was published on, not beside a stand-in
        own_data = isinstance(c.paper_setting, str) and _is_paper_data(c.dataset, c.split, c.paper_setting, _sizes(c))
        for metric in RANKED_METRICS:
            rank = ranking(recs, column, metric)
            if rank.empty:
                continue
            if not own_data:
                rank["published"] = None
            parts += [f"#### `{column}`: {METRIC_TITLES.get(metric, metric)} (%)", "",
                      to_display(rank).to_markdown(index=False), ""]
    return parts


def to_latex(table: Table) -> str:
    """The table as LaTeX (booktabs), one ``tabular`` per metric with a caption saying the source."""
    out = [f"% {table.title}; generated by usdrl-bench report from the records"]
    for metric in table.metrics:
        frame = wide(table, metric, latex=True)
        unit = " (\\%)" if metric in PERCENT_METRICS else ""
        caption = (("REHEARSAL, not results: " if is_rehearsal_preset(table.preset) else "")
                   + f"{table.title}: {METRIC_TITLES.get(metric, metric)}{unit}, preset {table.preset}, "
                   f"seeds {', '.join(map(str, table.seeds))}.").replace("_", r"\_")
        out.append(frame.to_latex(index=False, caption=caption, label=f"tab:{table.slug}:{metric}",
                                  escape=False, column_format="l" * len(frame.columns)))
    return "\n".join(out)


__all__ = ["CONFIDENCE", "METRIC_TITLES", "PAPER_METRIC", "Table", "build_tables", "paper_results", "paper_table", "paper_value", "to_latex", "to_markdown", "wide"]
