"""Leaderboards: methods ranked per column and metric, with intervals over seeds, paired significance against
the best, published numbers and cost.

For one (column, metric) of a protocol's records whose rows name a method (``method:`` rows, e.g. the
``leaderboard`` protocol): each method's mean over seeds, sample standard deviation and 95 % percentile
bootstrap interval (:func:`usdrl_bench.report.stats.summarise`); methods sorted by mean (best first); each
method compared with the best by a **paired t-test over the seeds both ran** (two-sided,
``scipy.stats.ttest_rel``: the same seed gives both methods the same data order and labelled subsets), the
p-values of one (column, metric) adjusted together by **Holm's step-down correction** (family-wise error
over the methods compared with the best); a difference is marked significant when the adjusted p-value is
below 0.05. With fewer than two common seeds there is no test (shown as "n/a").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from usdrl_bench.report.stats import summarise

__all__ = ["ALPHA", "RANKED_METRICS", "paired_p_value", "holm", "ranking", "TEST_NOTE"]

#: family-wise significance level of the marks
ALPHA = 0.05
#: metrics a leaderboard ranks, in this order (those present)
RANKED_METRICS = ("linear_top1_best_of_evals", "linear_own_top1_best_of_evals", "knn1_top1", "semi_top1_10pct",
                  "semi_top1_1pct", "linear_top1", "linear_own_top1", "finetune_top1")
TEST_NOTE = ("Δ best: difference from the first-ranked method; p: paired t-test over the seeds both ran "
             "(two-sided), Holm-corrected over the methods compared with the best in this column and metric; "
             f"* = significant at {ALPHA:g}; n/a = fewer than 2 common seeds")


def paired_p_value(best: dict[int, float], other: dict[int, float]) -> tuple[float, int]:
    """Two-sided paired t-test of two methods' values over their common seeds.

    Returns:
        ``(p, n)`` with ``n`` the common seeds; ``p`` is NaN when ``n < 2``; when every paired difference is
        the same, 0 if it is not zero (no variance: any t is infinite) and 1 if it is.
    """
    seeds = sorted(set(best) & set(other))
    n = len(seeds)
    if n < 2:
        return float("nan"), n
    a = np.array([best[s] for s in seeds], dtype=float)
    b = np.array([other[s] for s in seeds], dtype=float)
    d = a - b
    if np.all(d == d[0]):
        return (0.0 if d[0] != 0 else 1.0), n
    from scipy.stats import ttest_rel  # deferred: SciPy costs a second at every start of the command line

    return float(ttest_rel(a, b).pvalue), n


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries kept as NaN, left out of the family): the i-th
    smallest of m p-values becomes ``max_{j <= i} min(1, (m - j) p_(j))`` (0-based j)."""
    valid = [(p, i) for i, p in enumerate(p_values) if not np.isnan(p)]
    out = [float("nan")] * len(p_values)
    m = len(valid)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(valid)):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _first(series: pd.Series):
    values = series.dropna()
    return values.iloc[0] if len(values) else None


def ranking(records: pd.DataFrame, column: str, metric: str) -> pd.DataFrame:
    """The ranking of the method rows of ``records`` (one protocol and preset) on ``column`` and ``metric``.

    Returns:
        one line per row (best first): ``rank``, ``row``, ``method`` (the row label), ``mean``, ``std``,
        ``ci_low``, ``ci_high``, ``n`` (seeds), ``delta`` (mean minus the best's), ``p`` (Holm-adjusted),
        ``significant``, ``published``, ``params``, ``gflops`` (pretraining GFLOPs per sample),
        ``pretrain_min`` (mean pretraining wall time of the runs that trained, minutes). Empty when no row
        has the metric.
    """
    df = records[(records["column"] == column) & (records["metric"] == metric)]
    if "method" in df:
        df = df[df["method"].notna()]
    if df.empty:
        return pd.DataFrame()
    higher = bool(_first(df["higher_is_better"])) if df["higher_is_better"].notna().any() else True
    lines, values = [], {}
    for row_id, g in df.groupby("row_id", sort=False):
        values[row_id] = dict(zip(g["seed"].astype(int), g["value"].astype(float)))
        s = summarise(g["value"].to_numpy(dtype=float))
        trained = g["pretrain_wall_time_s"].astype(float)
        trained = trained[trained > 0]
        lines.append({"row": row_id, "method": _first(g["row_label"]), "mean": s.mean, "std": s.std,
                      "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n,
                      "published": _first(g["method_published"]) if "method_published" in g else None,
                      "params": _first(g["encoder_params"]) if "encoder_params" in g else None,
                      "gflops": _first(g["pretrain_gflops_per_sample"]) if "pretrain_gflops_per_sample" in g else None,
                      "pretrain_min": float(trained.mean()) / 60 if len(trained) else np.nan})
    out = pd.DataFrame(lines).sort_values("mean", ascending=not higher, kind="stable").reset_index(drop=True)
    best = out.loc[0, "row"]
    raw = [float("nan")] + [paired_p_value(values[best], values[r])[0] for r in out["row"][1:]]
    adjusted = [float("nan")] + holm(raw[1:])
    out.insert(0, "rank", range(1, len(out) + 1))
    out["delta"] = out["mean"] - out.loc[0, "mean"]
    out["p"] = adjusted
    out["significant"] = [bool(p < ALPHA) if not np.isnan(p) else False for p in adjusted]
    return out


def to_display(rank: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    """A ranking as strings for Markdown: mean ± sd [95 % interval], Δ best, p with its mark, cost."""
    def cell(r) -> str:
        text = f"{r['mean']:.{digits}f}"
        if r["n"] > 1:
            text += f" ± {r['std']:.{digits}f} [{r['ci_low']:.{digits}f}, {r['ci_high']:.{digits}f}]"
        return text

    def p_cell(r) -> str:
        if r["rank"] == 1:
            return "best"
        return "n/a" if np.isnan(r["p"]) else f"{r['p']:.3f}{' *' if r['significant'] else ''}"

    def number(v, fmt: str) -> str:
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

    return pd.DataFrame({
        "#": rank["rank"], "Row": rank["row"], "Method": rank["method"],
        "top-1": [cell(r) for _, r in rank.iterrows()],
        "Δ best": ["" if r["rank"] == 1 else f"{r['delta']:+.{digits}f}" for _, r in rank.iterrows()],
        "p (Holm)": [p_cell(r) for _, r in rank.iterrows()],
        "published": [number(v, ".1f") for v in rank["published"]],
        "params (M)": [number(None if v is None else float(v) / 1e6, ".2f") for v in rank["params"]],
        "pretrain GFLOPs/sample": [number(None if v is None else float(v), ".3g") for v in rank["gflops"]],
        "pretrain min": [number(v, ".1f") for v in rank["pretrain_min"]],
        "seeds": rank["n"],
    })
