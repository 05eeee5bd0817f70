"""The reproduction table: for each peer, the official code it is checked against, the parity that holds, the
official code's and the suite's linear top-1 on NW-UCLA at the CPU preset (mean ± sd over seeds), and the
published number with its status.

A Welch t-test (two-sided, over seeds) says whether the difference of the means exceeds the seeds' spread.

The official side is the JSON files of ``benchmarks/official_nwucla.py`` (``<method>-seed<k>.json``: the method's
own code on the same arrays); the suite's is the ``official_comparison`` protocol's records (``linear_own``: the
method's probe recipe). A published number counts as reproduced when a record of the method's ``paper`` preset on
the paper's setting lies within :data:`TOLERANCE` points of it; none has run yet (it needs NTU RGB+D and a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from usdrl_bench.methods import get_method  # noqa: E402
from usdrl_bench.components import load_builtins  # noqa: E402
from usdrl_bench.methods.shipped import load_shipped_baselines  # noqa: E402

__all__ = ["PARITY", "TOLERANCE", "reproduction_table", "read_official_runs", "plot_loss_curves"]

#: points of top-1 within which a published number counts as reproduced
TOLERANCE = 1.0
#: what tests/test_official_peers.py checks against each method's official code (fixtures made by it)
PARITY = {
    "skeletonclr": "checkpoint -> features; MoCo logits, loss, queue, one SGD step; export",
    "aimclr": "checkpoint -> features; D3M, mining, one SGD step (with and without mining); export",
    "mamp": "checkpoint -> features; mask, masked-motion loss, one AdamW step; export",
    "cmd": "checkpoint -> features; logits, six KL terms, one SGD step; export",
}
#: the published number the status column reports, per method: (setting, evaluation)
PUBLISHED_SETTING = ("ntu60_xsub", "linear")


def _official_losses(folder: Path, method: str) -> list[list[float]]:
    return [json.loads(p.read_text())["pretrain_loss"] for p in sorted(folder.glob(f"{method}-seed*.json"))]


def _suite_losses(records: pd.DataFrame, results_dir: Path, method: str) -> list[list[float]]:
    mine = records[(records.protocol == "official_comparison") & (records.method == method)]
    curves = []
    for checkpoint in sorted(set(mine.checkpoint_hash.dropna())):
        history = results_dir / "checkpoints" / checkpoint / "history.json"
        if history.is_file():
            curves.append([float(h["loss"]) for h in json.loads(history.read_text())])
    return curves


def plot_loss_curves(records: pd.DataFrame, official_dir: str | Path, results_dir: str | Path,
                     out: str | Path) -> Path | None:
    """Per method, the pretraining loss per epoch of the official code's seeds and the suite's (one line each),
    as ``out`` (PNG); None when neither side has a curve."""
    methods = [m for m in PARITY if _official_losses(Path(official_dir), m) or
               _suite_losses(records, Path(results_dir), m)]
    if not methods:
        return None
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.2), squeeze=False)
    for ax, method in zip(axes[0], methods):
        for curves, colour, label in ((_official_losses(Path(official_dir), method), "tab:blue", "official code"),
                                      (_suite_losses(records, Path(results_dir), method), "tab:orange", "suite")):
            for i, curve in enumerate(curves):
                ax.plot(range(1, len(curve) + 1), curve, color=colour, alpha=0.8, label=label if i == 0 else None)
        ax.set(title=method, xlabel="epoch", ylabel="pretraining loss")
        ax.legend()
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def read_official_runs(folder: str | Path) -> pd.DataFrame:
    """``method, seed, final_top1, best_top1, commit`` of every ``<method>-seed<k>.json`` in ``folder``.

    Raises:
        ValueError: a file that is not such a result (naming it).
    """
    rows = []
    for path in sorted(Path(folder).glob("*-seed*.json")):
        try:
            data = json.loads(path.read_text())
            rows.append({k: data[k] for k in ("method", "seed", "final_top1", "best_top1", "commit")})
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a result of benchmarks/official_nwucla.py ({exc})") from exc
    return pd.DataFrame(rows, columns=["method", "seed", "final_top1", "best_top1", "commit"])


def _mean_sd(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "not run"
    sd = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
    return f"{values.mean():.1f} ± {sd:.1f} (n={len(values)})" if np.isfinite(sd) else f"{values.mean():.1f} (n=1)"


def _status(method: str, records: pd.DataFrame, published: float | None) -> str:
    if published is None:
        return "no published number on this setting"
    setting, evaluation = PUBLISHED_SETTING
    mine = records[(records.method == method) & (records.preset == "paper") & (records.paper_setting == setting)
                   & records.metric.isin([f"{evaluation}_own_top1_best_of_evals", f"{evaluation}_top1_best_of_evals"])]
    if mine.empty:
        return "not run yet: needs NTU-60 and a GPU (the `paper` preset)"
    delta = float(mine.value.mean()) - published
    word = "reproduced" if abs(delta) <= TOLERANCE else "not reproduced"
    return f"{word} ({mine.value.mean():.1f}, Δ {delta:+.1f}, n={len(mine)})"


def reproduction_table(records: pd.DataFrame, official_runs: pd.DataFrame) -> pd.DataFrame:
    """One row per peer (see the module docstring). ``records``: the suite's records (any protocols; the
    ``official_comparison`` ones are used for the NW-UCLA columns); ``official_runs``: :func:`read_official_runs`."""
    load_builtins()
    load_shipped_baselines()
    suite = records[records.protocol == "official_comparison"] if len(records) else records
    rows = []
    for method in PARITY:
        m = get_method(method)
        official = official_runs[official_runs.method == method]
        ours = suite[suite.method == method] if len(suite) else suite
        cols = {}
        for label, metric, key in (("final", "linear_own_top1", "final_top1"),
                                   ("best of evaluations", "linear_own_top1_best_of_evals", "best_top1")):
            theirs = official[key].astype(float)
            mine = ours[ours.metric == metric].value.astype(float) if len(ours) else pd.Series(dtype=float)
            cols[f"official, {label}"] = _mean_sd(theirs)
            cols[f"suite, {label}"] = _mean_sd(mine)
            cols[f"Δ {label}"] = (f"{mine.mean() - theirs.mean():+.1f}" if len(mine) and len(theirs) else "")
            within = ""
            if len(mine) and len(theirs) > 1:
                within = "yes" if theirs.min() <= mine.mean() <= theirs.max() else "no"
            cols[f"suite mean within the official seeds' range, {label}"] = within
            if len(mine) > 1 and len(theirs) > 1:  # Welch's t-test, two-sided: is the difference more than seed noise?
                cols[f"p (Welch), {label}"] = round(float(stats.ttest_ind(mine, theirs, equal_var=False).pvalue), 3)
            else:
                cols[f"p (Welch), {label}"] = None
        setting = "/".join(PUBLISHED_SETTING)
        published = m.published.get(setting)
        commits = sorted(set(official.commit)) if len(official) else []
        rows.append({"method": method, "official code": f"{m.repository}@{m.commit}",
                     "NW-UCLA run of": ", ".join(c[:8] for c in commits) or "",
                     "parity (tests/test_official_peers.py)": PARITY[method], **cols,
                     f"published ({setting})": published, "status": _status(method, records, published)})
    return pd.DataFrame(rows)
