"""Figures for reports (matplotlib/seaborn, headless). Plot functions return ``(fig, ax)`` or write a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from usdrl_bench.io import atomic_write  # noqa: E402

if TYPE_CHECKING:
    from usdrl_bench.report.tables import Table


def table_bars(table: "Table", metric: str = "linear_top1"):
    """Bar chart of ``metric`` per row (ours, with the seed std as error bars) beside the paper's value.

    Returns:
        ``(fig, ax)``.
    """
    f = table.frame
    long = [{"row": f"{r} {m}", "source": f"ours ({table.dataset}, {table.preset})", "value": v}
            for r, m, v in zip(f["row"], f["method"], f[metric])]
    if f"{metric}_paper" in f:
        long += [{"row": f"{r} {m}", "source": "paper (NTU-60 xsub)", "value": v}
                 for r, m, v in zip(f["row"], f["method"], f[f"{metric}_paper"]) if pd.notna(v)]
    data = pd.DataFrame(long)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(f) + 1.5))
    sns.barplot(data=data, y="row", x="value", hue="source", ax=ax, orient="h")
    ax.set_xlabel(f"{metric} (%)")
    ax.set_ylabel("")
    ax.set_xlim(0, 100)
    ax.set_title(f"{table.protocol}: {table.dataset}/{table.split}, preset {table.preset}")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return fig, ax


def plot_table(table: "Table", path: Path, metric: str = "linear_top1") -> Path | None:
    """Write :func:`table_bars` to ``path`` (PNG); ``None`` when the table lacks ``metric``."""
    if metric not in table.frame:
        return None
    fig, _ = table_bars(table, metric)
    try:
        atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path
