"""Report: intervals over seeds against hand-computed values, the paper's numbers beside ours, every
output format, and the loss curves read from the training histories."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from usdrl_bench.records import RECORD_COLUMNS
from usdrl_bench.report.stats import summarise
from usdrl_bench.report.tables import build_tables, paper_value, to_latex, to_markdown
from usdrl_bench.report.writer import write_reports


def test_summarise_two_seeds_by_hand():
    # bootstrap means of [70, 80]: 70 (p 1/4), 75 (1/2), 80 (1/4) -> the 2.5 / 97.5 percentiles are 70 and 80
    s = summarise([70.0, 80.0])
    assert (s.mean, s.n) == (75.0, 2)
    assert s.std == pytest.approx(math.sqrt(50.0))  # sample std, ddof 1
    assert (s.ci_low, s.ci_high) == (70.0, 80.0)


def test_summarise_three_seeds_by_hand():
    # means of 3 draws from [1, 2, 3]: P(mean = 1) = P(mean = 3) = 1/27 > 2.5 %, so the interval is [1, 3];
    # a 90 % interval excludes them (1/27 < 5 %): the next values are 4/3 and 8/3
    s = summarise([1.0, 2.0, 3.0])
    assert (s.mean, s.std, s.ci_low, s.ci_high) == (2.0, 1.0, 1.0, 3.0)
    narrow = summarise([1.0, 2.0, 3.0], confidence=0.9)
    assert narrow.ci_low == pytest.approx(4 / 3) and narrow.ci_high == pytest.approx(8 / 3)


def test_summarise_degenerate_cases():
    one = summarise([5.0])
    assert one.mean == 5.0 and one.n == 1 and math.isnan(one.std) and math.isnan(one.ci_low)
    same = summarise([3.0, 3.0, float("nan")])
    assert (same.mean, same.std, same.n, same.ci_low, same.ci_high) == (3.0, 0.0, 2, 3.0, 3.0)
    assert summarise([]).n == 0
    with pytest.raises(ValueError, match="confidence"):
        summarise([1.0, 2.0], confidence=95)
    # reproducible: an explicit random state
    assert summarise([1.0, 5.0, 2.0, 9.0]) == summarise([1.0, 5.0, 2.0, 9.0])


def test_paper_values():
    # the paper's linear numbers are the official best-of-evaluations ones: compared with that record only
    best = "linear_top1_best_of_evals"
    assert paper_value("table5_ablation", 7, None, "ntu60_xsub", best) == 85.2
    assert math.isnan(paper_value("table5_ablation", 7, None, "ntu60_xsub", "linear_top1"))  # final epoch
    assert paper_value("table5_ablation", 1, None, "ntu60_xsub", "knn1_top1") == 63.8
    assert math.isnan(paper_value("table5_ablation", 7, None, "ntu60_xview", best))  # Table 5 is xsub only
    key = json.dumps({"method": "USDRL", "encoder": "DSTE", "modality": "J"})
    assert paper_value("1", None, key, "ntu120_xset", best) == 78.1
    assert math.isnan(paper_value("1", None, key, "ntu120_xset", "linear_top1"))
    assert paper_value("3", None, key, "ntu60_xview", "knn1_top1") == 89.3
    assert math.isnan(paper_value("1", None, key, "ntu60_xsub", "knn1_top1"))
    # Table 2: the label fraction is part of the paper's setting
    assert paper_value("2", None, key, "ntu60_xview", "semi_top1_10pct") == 84.0
    assert paper_value("2", None, key, "ntu60_xsub", "semi_top1_1pct") == 57.3
    with pytest.raises(KeyError, match="paper_tables.csv"):
        paper_value("1", None, json.dumps({"backbone": "DSTE"}), "ntu60_xsub", best)


def _records(tmp_path) -> pd.DataFrame:
    rows = []
    for seed, (a, b) in enumerate([(70.0, 60.0), (80.0, 62.0)]):
        for row_id, paper_row, value, ckpt in (("7", 7, a, "abc"), ("R", None, b, "rnd")):
            row_index = 0 if row_id == "R" else 1  # the protocol lists R first: tables keep that order
            for column, setting in (("demo_xsub", "ntu60_xsub"), ("demo_xview", "ntu60_xview")):
                rows.append({c: None for c in RECORD_COLUMNS} | {
                    "protocol": "t5", "preset": "demo", "row_id": row_id, "row_label": f"label {row_id}", "row_index": row_index,
                    "paper_table": "table5_ablation", "paper_row": paper_row, "encoder": "dste", "objective": "mgfd",
                    "dataset": "synthetic", "split": column.split("_")[1], "stream": "joint", "column": column,
                    "paper_setting": setting, "train_samples": 10, "test_samples": 8, "seed": seed,
                    "evaluation": "linear", "metric": "linear_top1_best_of_evals", "value": value,
                    "checkpoint_hash": f"{ckpt}{seed}",
                    "date": f"2026-01-0{seed + 1}"})
    hist = tmp_path / "results" / "checkpoints"
    for seed in (0, 1):
        (hist / f"abc{seed}").mkdir(parents=True)
        (hist / f"abc{seed}" / "history.json").write_text(json.dumps(
            [{"epoch": e, "loss": 3.0 - e, "lr": 1e-3, "sim": 1.0 / e, "vac": 2.0 - 0.1 * e, "total": 3.0 - e} for e in (1, 2, 3)]))
    return pd.DataFrame(rows, columns=list(RECORD_COLUMNS))


def test_table_cells_intervals_and_paper(tmp_path):
    (table,) = build_tables(_records(tmp_path))
    assert table.rows == ["R", "7"] and list(table.columns["column"]) == ["demo_xsub", "demo_xview"]
    assert table.seeds == [0, 1]
    cell = table.frame[(table.frame.row == "7") & (table.frame.column == "demo_xsub")].iloc[0]
    assert (cell["mean"], cell["ci_low"], cell["ci_high"], cell["paper"], cell["delta"]) == (75.0, 70.0, 80.0, 85.2, 75.0 - 85.2)
    other = table.frame[(table.frame.row == "7") & (table.frame.column == "demo_xview")].iloc[0]
    assert math.isnan(other["paper"])  # Table 5 has no xview numbers
    md = to_markdown(table)
    assert "75.0 ± 7.1 [70.0, 80.0]" in md and "85.2 (-10.2)" in md
    assert "stands in for the paper's ntu60_xsub" in md and "10 train / 8 test samples" in md
    assert "seeds 0, 1 (2 seeds; mean ± standard deviation and 95 % bootstrap interval" in md
    tex = to_latex(table)
    assert r"\begin{tabular}" in tex and r"75.0 $\pm$ 7.1" in tex and r"demo\_xsub" in tex


def test_columns_follow_the_protocol_order_not_the_record_dates(tmp_path):
    records = _records(tmp_path)
    # the protocol lists demo_xview first, but demo_xsub was recorded first: the protocol's order wins
    records["column_index"] = np.where(records["column"] == "demo_xview", 0, 1)
    (table,) = build_tables(records)
    assert list(table.columns["column"]) == ["demo_xview", "demo_xsub"]
    assert to_markdown(table).index("demo_xview") < to_markdown(table).index("demo_xsub")
    # records from before column_index existed: first appearance, after the indexed ones
    records.loc[records["column"] == "demo_xview", "column_index"] = np.nan
    (table,) = build_tables(records)
    assert list(table.columns["column"]) == ["demo_xsub", "demo_xview"]


def test_write_reports_all_formats_and_loss_curves(tmp_path):
    records = _records(tmp_path)
    written = write_reports(records, tmp_path / "reports", tmp_path / "results")
    names = {p.name for p in written}
    for ext in ("md", "csv", "tex", "png", "pdf"):
        assert f"t5__demo.{ext}" in names
    assert {"t5__demo__loss.png", "t5__demo__loss.pdf", "README.md"} <= names
    tidy = pd.read_csv(tmp_path / "reports" / "t5__demo.csv")
    assert len(tidy) == 4 and set(tidy.columns) >= {"row", "column", "metric", "mean", "std", "ci_low", "ci_high", "paper"}
    assert all((tmp_path / "reports" / n).stat().st_size > 0 for n in names)


def test_reports_whose_inputs_did_not_change_are_not_rendered_again(tmp_path, monkeypatch):
    """A rerun that computed nothing reports without rendering: same records and code -> the files of the
    first rendering, untouched; a changed record, or a deleted figure, renders that table again."""
    from usdrl_bench.report import writer

    records = _records(tmp_path)
    first = write_reports(records, tmp_path / "reports", tmp_path / "results")
    stamps = {p.name: p.stat().st_mtime_ns for p in first if p.name != "README.md"}

    def refuse(*args, **kwargs):
        raise AssertionError("rendered again")

    monkeypatch.setattr(writer, "plot_table", refuse)
    again = write_reports(records, tmp_path / "reports", tmp_path / "results")
    assert sorted(p.name for p in again) == sorted(p.name for p in first)
    assert {p.name: p.stat().st_mtime_ns for p in again if p.name != "README.md"} == stamps
    assert "![t5__demo](t5__demo.png)" in (tmp_path / "reports" / "README.md").read_text()
    changed = records.copy()
    changed.loc[0, "value"] = 71.0
    with pytest.raises(AssertionError, match="rendered again"):
        write_reports(changed, tmp_path / "reports", tmp_path / "results")
    (tmp_path / "reports" / "t5__demo__loss.png").unlink()
    with pytest.raises(AssertionError, match="rendered again"):
        write_reports(records, tmp_path / "reports", tmp_path / "results")


def test_loss_histories_tidy(tmp_path):
    from usdrl_bench.report.plots import loss_histories
    from usdrl_bench.report.tables import with_columns

    h = loss_histories(with_columns(_records(tmp_path)), tmp_path / "results")
    # 2 seeds x 2 columns x 3 epochs x 3 terms (sim, vac, total) for row 7; the random-init row has no history
    assert set(h["row"]) == {"7"} and set(h["term"]) == {"sim", "vac", "total"} and len(h) == 2 * 2 * 3 * 3
    assert np.allclose(h[(h.term == "sim") & (h.epoch == 2)]["value"], 0.5)


def test_load_records_keeps_columns_of_the_same_dataset_apart(tmp_path):
    """Two columns of one reader and split (the 19- and the 120-class synthetic stand-ins) are two
    results, not an older and a newer version of one."""
    from usdrl_bench.records import load_records, write_records

    base = {c: None for c in RECORD_COLUMNS} | {"protocol": "t3", "preset": "demo", "row_id": "DSTE", "dataset": "synthetic",
                                                "split": "xsub", "stream": "joint", "seed": 0, "metric": "knn1_top1"}
    write_records(tmp_path / "records" / "a.json", [base | {"column": "synthetic_xsub", "value": 80.0, "date": "2026-01-01"}])
    write_records(tmp_path / "records" / "b.json", [base | {"column": "synthetic120_xsub", "value": 40.0, "date": "2026-01-02"}])
    write_records(tmp_path / "records" / "c.json", [base | {"column": "synthetic_xsub", "value": 81.0, "date": "2026-01-03"}])
    df = load_records(tmp_path)
    assert sorted(zip(df["column"], df["value"])) == [("synthetic120_xsub", 40.0), ("synthetic_xsub", 81.0)]


def test_paper_data_or_stand_in():
    from usdrl_bench.report.tables import _is_paper_data

    assert _is_paper_data("ntu60_xsub", "xsub", "ntu60_xsub", (40_091, 16_487))
    assert not _is_paper_data("ntu60_xsub", "xsub", "ntu60_xsub", (65, 5))  # a few prepared sample files
    assert not _is_paper_data("pku1_xsub", "xsub", "ntu60_xsub", (64, 35))  # another benchmark in its place
    assert _is_paper_data("pku2_xsub", "xsub", "pku2_xsub", (123, 45))  # sizes unknown: the name decides
    assert not _is_paper_data("synthetic", "xsub", "ntu60_xsub")
    # a user's copy in a release format: the paper's data only with the complete release's sizes
    assert _is_paper_data("agcn", "xsub", "ntu60_xsub", (40_091, 16_487))
    assert not _is_paper_data("agcn", "xsub", "ntu60_xsub", (1_020, 464)) and not _is_paper_data("agcn", "xsub", "ntu60_xsub")
    assert not _is_paper_data("stick5", "xsub", "ntu60_xsub", (54, 36))


def test_a_users_data_set_sits_beside_no_paper_number_and_published_results_have_their_own_rows(tmp_path):
    records = _records(tmp_path)
    mine = records.assign(dataset="agcn", column=records["column"].str.replace("demo", "agcn"), train_samples=1020)
    (table,) = build_tables(mine)
    assert table.frame["paper"].isna().all() and table.frame["delta"].isna().all()
    md = to_markdown(table)
    assert "paper" not in md.split("###", 1)[1].split("\n", 1)[1] and "Δ" not in md and "stands in" not in md
    assert "ntu60" not in md
    # NW-UCLA: published results in rows of their own, each beside its own metric, never a paper column
    ucla = records[records.column == "demo_xsub"].assign(
        protocol="nwucla", paper_table=None, paper_row=None, paper_setting=None, dataset="nwucla_xview", split="xview",
        column="nwucla_xview", train_samples=1020, test_samples=464)
    knn = ucla.assign(metric="knn1_top1")
    (table,) = build_tables(pd.concat([ucla, knn], ignore_index=True))
    md = to_markdown(table)
    linear, knn_part = md.split("### linear top-1, best")[1].split("### kNN-1")
    assert "| published | GL-Transformer (ECCV'22), linear evaluation" in linear and "90.4" in linear
    assert "P&C" not in linear and "| published | P&C (CVPR'20), nearest-neighbour (1-NN)" in knn_part
    assert "84.9" in knn_part and "paper (Δ)" not in md and "Kim et al., ECCV 2022" in md
    # a subset of the files is not the benchmark: no published rows
    (subset,) = build_tables(ucla.assign(train_samples=100))
    assert "| published |" not in to_markdown(subset) and "*published*" not in to_markdown(subset)


def test_paper_numbers_sit_beside_best_of_evaluations_and_final_epoch_is_labelled(tmp_path):
    best = _records(tmp_path)
    final = best.assign(metric="linear_top1", value=best["value"] - 5)
    (table,) = build_tables(pd.concat([final, best], ignore_index=True))
    assert table.metrics[:2] == ["linear_top1_best_of_evals", "linear_top1"]  # the paper's metric first
    f = table.frame[(table.frame.row == "7") & (table.frame.column == "demo_xsub")].set_index("metric")
    assert f.loc["linear_top1_best_of_evals", "paper"] == 85.2 and math.isnan(f.loc["linear_top1", "paper"])
    md = to_markdown(table)
    assert "best of evaluations (the paper's)" in md and "final epoch" in md
