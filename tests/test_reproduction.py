"""The reproduction table (usdrl-bench report --official): the official code's NW-UCLA runs beside the suite's
official_comparison records, with means and standard deviations computed by hand, and each published number's
status."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from usdrl_bench.records import RECORD_COLUMNS
from usdrl_bench.report.reproduction import plot_loss_curves, read_official_runs, reproduction_table


def _records(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{**{c: None for c in RECORD_COLUMNS}, **r} for r in rows], columns=list(RECORD_COLUMNS))


def _official(tmp_path, method: str, finals: list[float], bests: list[float]):
    for seed, (final, best) in enumerate(zip(finals, bests)):
        (tmp_path / f"{method}-seed{seed}.json").write_text(json.dumps(
            {"method": method, "seed": seed, "final_top1": final, "best_top1": best, "commit": "09e6252a5c7d"}))


def test_the_table_puts_both_sides_and_their_difference(tmp_path):
    _official(tmp_path, "mamp", [60.0, 62.0, 64.0], [61.0, 63.0, 65.0])
    suite = [{"protocol": "official_comparison", "method": "mamp", "metric": "linear_own_top1", "value": v, "seed": s}
             for s, v in enumerate([61.0, 63.0, 65.0])]
    suite += [{"protocol": "official_comparison", "method": "mamp", "metric": "linear_own_top1_best_of_evals",
               "value": v, "seed": s} for s, v in enumerate([70.0, 71.0, 72.0])]
    table = reproduction_table(_records(suite), read_official_runs(tmp_path)).set_index("method")
    row = table.loc["mamp"]
    assert row["official, final"] == "62.0 ± 2.0 (n=3)" and row["suite, final"] == "63.0 ± 2.0 (n=3)"
    assert row["Δ final"] == "+1.0" and row["suite mean within the official seeds' range, final"] == "yes"
    assert row["Δ best of evaluations"] == "+8.0"
    assert row["p (Welch), final"] == pytest.approx(0.573, abs=1e-3)  # t = 1 / sqrt(8/3) = 0.612, 4 d.o.f.
    assert row["suite mean within the official seeds' range, best of evaluations"] == "no"
    assert row["official code"] == "github.com/maoyunyao/MAMP@09e6252a" and row["published (ntu60_xsub/linear)"] == 84.9
    assert row["status"].startswith("not run yet")
    assert table.loc["cmd", "official, final"] == "not run"  # no official run of CMD: said, not invented


def test_a_published_number_is_reproduced_only_within_the_tolerance(tmp_path):
    paper = [{"protocol": "leaderboard", "preset": "paper", "paper_setting": "ntu60_xsub", "method": "mamp",
              "metric": "linear_own_top1_best_of_evals", "value": 84.5, "seed": 0}]
    table = reproduction_table(_records(paper), read_official_runs(tmp_path)).set_index("method")
    assert table.loc["mamp", "status"].startswith("reproduced (84.5, Δ -0.4")
    paper[0]["value"] = 80.0
    table = reproduction_table(_records(paper), read_official_runs(tmp_path)).set_index("method")
    assert table.loc["mamp", "status"].startswith("not reproduced (80.0, Δ -4.9")


def test_a_foreign_result_file_is_named(tmp_path):
    (tmp_path / "mamp-seed0.json").write_text("{}")
    with pytest.raises(ValueError, match="mamp-seed0.json"):
        read_official_runs(tmp_path)


def test_the_loss_curves_of_both_sides_are_drawn(tmp_path):
    official = tmp_path / "official"
    official.mkdir()
    (official / "mamp-seed0.json").write_text(json.dumps({"method": "mamp", "seed": 0, "final_top1": 60.0,
                                                          "best_top1": 61.0, "commit": "09e6252a",
                                                          "pretrain_loss": [1.0, 0.9, 0.8]}))
    results = tmp_path / "results"
    (results / "checkpoints" / "abc").mkdir(parents=True)
    (results / "checkpoints" / "abc" / "history.json").write_text(json.dumps([{"epoch": 1, "loss": 1.1},
                                                                               {"epoch": 2, "loss": 0.95}]))
    records = _records([{"protocol": "official_comparison", "method": "mamp", "metric": "linear_own_top1",
                         "value": 60.0, "seed": 0, "checkpoint_hash": "abc"}])
    out = plot_loss_curves(records, official, results, tmp_path / "curves.png")
    assert out is not None and out.stat().st_size > 1000
    assert plot_loss_curves(_records([]), tmp_path / "nothing", results, tmp_path / "none.png") is None
