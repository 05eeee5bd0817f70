"""One front door: the command line parses, calls the Python API and prints; every check lives once, below it.

Each check a command used to make itself is tested here at the API (the commands reach it through the same call),
and the command line's own ``raise`` statements are limited to parsing its arguments.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import usdrl_bench
from usdrl_bench.cli import main

CLI = Path(usdrl_bench.__file__).with_name("cli.py")
#: the command line's parsing helpers: the only functions of cli.py that may raise
PARSERS = {"_count", "_ints", "_jobs"}


def test_the_command_line_raises_only_while_parsing():
    tree = ast.parse(CLI.read_text())
    raising = sorted({fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef)
                      for node in ast.walk(fn) if isinstance(node, ast.Raise) and node.exc is not None})
    assert set(raising) <= PARSERS, f"checks in cli.py outside its parsers (move them into the API): {raising}"


def test_run_refuses_a_negative_save_interval_before_any_work(tmp_path):
    with pytest.raises(ValueError, match=r"save_every_s must be >= 0 seconds, got -60"):
        usdrl_bench.run_protocols(["table5_ablation"], results=tmp_path, save_every_s=-60)
    with pytest.raises(ValueError, match="jobs must be >= 1, got 0"):
        usdrl_bench.run_protocols(["table5_ablation"], results=tmp_path, jobs=0)
    assert not (tmp_path / "checkpoints").exists()


def test_the_nproc_option_is_parsed_as_a_count(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "table5_ablation", "--nproc", "0"])
    assert exit_.value.code == 2 and "expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_prepare_data_checks_its_release_and_options(tmp_path):
    from usdrl_bench.api import prepare_data

    with pytest.raises(ValueError, match="unknown release 'ntu90'"):
        prepare_data("ntu90", tmp_path)
    with pytest.raises(ValueError, match="unknown pipeline 'sgn'; expected one of agcn, ctrgcn"):
        prepare_data("ntu60", tmp_path, pipeline="sgn")  # prepare_ntu's own check, before the release is read
    with pytest.raises(ValueError, match="workers must be >= 1"):
        prepare_data("pku1", tmp_path, workers=0)
    with pytest.raises(ValueError, match="pipeline and missing lists apply to NTU only, not pku1"):
        prepare_data("pku1", tmp_path, pipeline="ctrgcn")
    with pytest.raises(ValueError, match="apply to NTU only, not uav"):
        prepare_data("uav", tmp_path, missing_lists=[tmp_path / "list.txt"])
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_segmentation_scoring_checks_thresholds_and_unmatched_predictions(tmp_path):
    from usdrl_bench.segmentation.metric import score_folders, score_segmentation

    labels = np.array([0, 1, 1, 2])
    with pytest.raises(ValueError, match=r"thresholds must lie in \(0, 1\], got \[0.0, 1.5\]"):
        score_segmentation({"v": labels}, {"v": labels}, thresholds=(0.0, 0.5, 1.5))
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    (gt / "v1.txt").write_text("0\n1\n1\n2\n")
    for name in ("v1", "v9"):
        (pred / f"{name}.txt").write_text("0\n1\n1\n2\n")
    with pytest.raises(ValueError, match="1 prediction file.* have no ground truth .*v9"):
        score_folders(gt, pred)
    (pred / "v9.txt").unlink()
    assert score_folders(gt, pred).acc == 100.0


def test_bench_checks_its_schedule_and_batches():
    import torch

    from usdrl_bench.train.throughput import BenchConfig, run_bench

    cpu = torch.device("cpu")
    for kwargs, message in ((dict(steps=0), "steps must be >= 1"), (dict(repeats=0), "repeats must be >= 1"),
                            (dict(warmup=-1), "warmup must be >= 0"), (dict(peak_tflops=0.0), "peak_tflops must be > 0")):
        with pytest.raises(ValueError, match=message):
            run_bench([BenchConfig()], cpu, **kwargs)
    with pytest.raises(ValueError, match=r"batch size must be >= 2 \(batch statistics\), got \[1\]"):
        run_bench([BenchConfig(batch_size=1), BenchConfig()], cpu)
    with pytest.raises(ValueError, match="no configuration"):
        run_bench([], cpu)


def test_the_command_line_imports_the_api_alone():
    """A thin layer: every suite module cli.py uses is reached through usdrl_bench.api (which re-exports what
    the commands print with)."""
    tree = ast.parse(CLI.read_text())
    modules = sorted({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                      and node.module.startswith("usdrl_bench")}
                     | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
                        if alias.name.startswith("usdrl_bench")})
    assert modules == ["usdrl_bench.api"], modules


def test_list_and_report_are_api_calls(tmp_path):
    from usdrl_bench.api import list_components, shipped_protocol_table, write_report

    components = list_components()
    assert {"dste", "sttr", "stgcn"} <= {e.name for e in components["encoders"]}  # built-ins and shipped baselines
    assert "usdrl" in {e.name for e in components["methods"]}
    table = shipped_protocol_table()
    assert "table5_ablation" in set(table.name) and (table.rows > 0).all()
    empty = write_report(tmp_path / "results", tmp_path / "reports")
    assert empty.records.empty and empty.written == [] and not (tmp_path / "reports").exists()


def test_untrimmed_videos_are_found_under_the_runs_data_root(tmp_path, monkeypatch):
    """Detection names its videos itself (pku1, no path): they are looked for under the run's data root, which the
    evaluation receives in its context, not under $USDRL_DATA."""
    from usdrl_bench.detection.evaluation import _videos

    monkeypatch.setenv("USDRL_DATA", str(tmp_path / "environment"))
    with pytest.raises(FileNotFoundError, match=r"run-root/PKU-MMD-v1-AGCN"):
        _videos('{"name": "pku1"}', str(tmp_path / "run-root"))
