"""Tables beside the paper's numbers, from records only.

Every group of records (protocol, preset, dataset, split, stream) becomes one table: one line per
protocol row, one column per metric (mean over seeds, with the standard deviation when there are
several), the paper's value and the difference. Tables are written as Markdown and CSV under
``reports/`` with a bar chart, and the Markdown says where the numbers come from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from usdrl_bench.io import write_text_atomic

#: metrics shown in tables, in order, with their column titles
METRIC_TITLES: dict[str, str] = {
    "linear_top1": "linear top-1",
    "knn1_top1": "kNN-1 top-1",
    "linear_top1_best_of_evals": "linear top-1 (official: best of evals)",
}

#: the paper's setting for each paper table (all Table 5 rows are NTU-60 xsub)
PAPER_SETTING = {"table5_ablation": "ntu60_xsub"}


def paper_table(name: str) -> pd.DataFrame:
    """The paper's numbers for a table shipped with the package (``table5_ablation``), as a tidy frame
    with columns ``paper_row``, ``metric``, ``value``, ``setting``.

    Raises:
        KeyError: no such table.
    """
    if name == "table5_ablation":
        with resources.files("usdrl_bench.report").joinpath("data/paper_table5_ablation.csv").open() as f:
            wide = pd.read_csv(f)
        tidy = wide.melt(id_vars=["row", "setting"], value_vars=["linear_top1", "knn1_top1"], var_name="metric")
        return tidy.rename(columns={"row": "paper_row"})
    raise KeyError(f"no paper numbers for table {name!r}; known: table5_ablation")


def paper_results() -> pd.DataFrame:
    """All published numbers of the paper's Tables 1–4 (``paper_tables.csv``)."""
    with resources.files("usdrl_bench.report").joinpath("data/paper_tables.csv").open() as f:
        return pd.read_csv(f)


@dataclass
class Table:
    """One generated table and where its numbers come from."""

    protocol: str
    preset: str
    dataset: str
    split: str
    stream: str
    paper_table: str | None
    frame: pd.DataFrame
    seeds: list[int]
    sizes: tuple[int, int] | None = None  # (train, test) samples, when the records say

    @property
    def slug(self) -> str:
        parts = [self.protocol, self.preset, f"{self.dataset}-{self.split}"] + ([self.stream] if self.stream != "joint" else [])
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", "__".join(parts))

    @property
    def source_line(self) -> str:
        setting = PAPER_SETTING.get(self.paper_table or "", "")
        same = setting == f"{self.dataset.replace('ntu60_raw', 'ntu60').replace('agcn', 'ntu60')}_{self.split}"
        size = f", {self.sizes[0]} train / {self.sizes[1]} test samples" if self.sizes else ""
        text = (f"Numbers from dataset **{self.dataset}** (split {self.split}, stream {self.stream}{size}), preset "
                f"**{self.preset}**, seeds {', '.join(map(str, self.seeds))}.")
        if self.paper_table and not same:
            text += (f" The paper's numbers are for {setting or 'its own setting'} at full scale: the Δ columns "
                     f"show the gap to them, not a reproduction check.")
        return text


def _fmt(mean: float, std: float, n: int) -> str:
    if np.isnan(mean):
        return ""
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def build_tables(records: pd.DataFrame) -> list[Table]:
    """Group records into tables (see module docstring)."""
    tables: list[Table] = []
    if records.empty:
        return tables
    group_cols = ["protocol", "preset", "dataset", "split", "stream"]
    for key, df in records.groupby(group_cols, sort=True):
        protocol, preset, dataset, split, stream = key
        paper_name = df["paper_table"].dropna().iloc[0] if df["paper_table"].notna().any() else None
        stats = (df.groupby(["row_id", "metric"])["value"].agg(["mean", "std", "count"]).reset_index())
        rows_meta = (df.drop_duplicates("row_id").set_index("row_id")[["row_label", "encoder", "objective", "paper_row"]])
        order = sorted(rows_meta.index, key=lambda r: (pd.isna(rows_meta.loc[r, "paper_row"]),
                                                       rows_meta.loc[r, "paper_row"] if pd.notna(rows_meta.loc[r, "paper_row"]) else 0, str(r)))
        paper = paper_table(paper_name) if paper_name else None
        out = []
        for row_id in order:
            meta = rows_meta.loc[row_id]
            line: dict[str, object] = {"row": row_id, "method": meta["row_label"], "encoder": meta["encoder"],
                                       "objective": meta["objective"]}
            for metric in METRIC_TITLES:
                s = stats[(stats.row_id == row_id) & (stats.metric == metric)]
                if s.empty:
                    continue
                mean, std, n = float(s["mean"].iloc[0]), float(np.nan_to_num(s["std"].iloc[0])), int(s["count"].iloc[0])
                line[metric] = mean
                line[f"{metric}_std"] = std
                line[f"{metric}_n"] = n
                if paper is not None and metric in ("linear_top1", "knn1_top1"):
                    p = paper[(paper.paper_row == meta["paper_row"]) & (paper.metric == metric)]
                    pv = float(p["value"].iloc[0]) if len(p) else np.nan
                    line[f"{metric}_paper"] = pv
                    line[f"{metric}_delta"] = mean - pv if not np.isnan(pv) else np.nan
            out.append(line)
        sizes = df[["train_samples", "test_samples"]].dropna()
        tables.append(Table(protocol=protocol, preset=preset, dataset=dataset, split=split, stream=stream,
                            paper_table=paper_name, frame=pd.DataFrame(out), seeds=sorted(df["seed"].unique().tolist()),
                            sizes=tuple(int(v) for v in sizes.iloc[-1]) if len(sizes) else None))
    return tables


def to_markdown(table: Table) -> str:
    """The table as Markdown, with a heading and a line saying where the numbers come from."""
    f = table.frame
    shown = pd.DataFrame({"Row": f["row"], "Method": f["method"]})
    for metric, title in METRIC_TITLES.items():
        if metric not in f:
            continue
        shown[title] = [_fmt(m, s, n) for m, s, n in zip(f[metric], f[f"{metric}_std"], f[f"{metric}_n"].fillna(1).astype(int))]
        if f"{metric}_paper" in f:
            shown[f"{title} (paper)"] = f[f"{metric}_paper"].map(lambda v: "" if np.isnan(v) else f"{v:.1f}")
            shown[f"Δ {title}"] = f[f"{metric}_delta"].map(lambda v: "" if np.isnan(v) else f"{v:+.1f}")
    title = {"table5_ablation": "Table 5: ablation of encoder and objective"}.get(table.paper_table or "", table.protocol)
    return (f"## {title} — {table.dataset}/{table.split}, preset {table.preset}\n\n{table.source_line}\n\n"
            + shown.to_markdown(index=False) + "\n")


def write_reports(records: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write every table (``.md``, ``.csv``, ``.png``) and an index ``README.md`` to ``out_dir``."""
    from usdrl_bench.report.plots import plot_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index = ["# usdrl-bench reports", "", "Generated by `usdrl-bench report` from the records under `results/`.", ""]
    for table in build_tables(records):
        md = to_markdown(table)
        written.append(write_text_atomic(out_dir / f"{table.slug}.md", md))
        written.append(write_text_atomic(out_dir / f"{table.slug}.csv", table.frame.to_csv(index=False)))
        png = plot_table(table, out_dir / f"{table.slug}.png")
        if png is not None:
            written.append(png)
        index += [md, f"![{table.slug}]({table.slug}.png)" if png else "", ""]
    written.append(write_text_atomic(out_dir / "README.md", "\n".join(index) + "\n"))
    return written
