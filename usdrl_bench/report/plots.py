"""Figures for reports (matplotlib/seaborn, headless). Plot functions return ``(fig, axes)``; the
``plot_*`` writers save PNG and PDF and return the paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from usdrl_bench.detection.metric import read_segments  # noqa: E402
from usdrl_bench.io import atomic_write  # noqa: E402
from usdrl_bench.report.leaderboard import RANKED_METRICS, ranking  # noqa: E402
from usdrl_bench.report.tables import METRIC_TITLES, Table  # noqa: E402


#: history keys that are not loss terms
_NOT_LOSS = ("epoch", "lr", "accuracy")
#: metrics drawn as bars (accuracies in %)
ACCURACIES = ("linear_top1_best_of_evals", "linear_own_top1_best_of_evals", "knn1_top1", "semi_top1_1pct", "semi_top1_10pct", "finetune_top1",
              "seg_acc", "seg_edit",
              "seg_f1@10", "seg_f1@25", "seg_f1@50")
#: formats every figure is written in
FORMATS = ("png", "pdf")


def save_figure(fig, stem: Path) -> list[Path]:
    """Write ``fig`` as ``stem.png`` and ``stem.pdf`` (atomically) and close it."""
    paths = []
    try:
        for fmt in FORMATS:
            path = stem.with_name(f"{stem.name}.{fmt}")
            atomic_write(path, lambda p, fmt=fmt: fig.savefig(p, dpi=130, format=fmt, bbox_inches="tight"))
            paths.append(path)
    finally:
        plt.close(fig)
    return paths


def table_bars(table: "Table", metrics: list[str] | None = None):
    """Horizontal bars per row and dataset column (ours: mean over seeds, with the seed standard
    deviation as error bars) and the paper's value as a black marker, one panel per metric.

    Returns:
        ``(fig, axes)``.
    """
    metrics = [m for m in (metrics or table.metrics) if m in ACCURACIES]
    columns = list(table.columns["column"])
    labels = [f"{r}  {table.frame[table.frame.row == r]['method'].iloc[0]}" for r in table.rows]
    height = 0.8 / max(len(columns), 1)
    palette = sns.color_palette("deep", len(columns))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics) + 2.5, 0.42 * len(table.rows) * max(1, len(columns) / 2) + 1.6),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        f = table.frame[table.frame.metric == metric].set_index(["row", "column"])
        for j, column in enumerate(columns):
            ys = np.arange(len(table.rows)) - 0.4 + height * (j + 0.5)
            means = [f.loc[(r, column), "mean"] if (r, column) in f.index else np.nan for r in table.rows]
            stds = [f.loc[(r, column), "std"] if (r, column) in f.index else np.nan for r in table.rows]
            paper = [f.loc[(r, column), "paper"] if (r, column) in f.index else np.nan for r in table.rows]
            ax.barh(ys, means, height=height * 0.9, xerr=np.nan_to_num(stds), color=palette[j], label=f"ours: {column}",
                    error_kw={"elinewidth": 1, "capsize": 2})
            if not np.all(np.isnan(paper)):
                ax.scatter(paper, ys, marker="D", s=18, color="black", zorder=3, label="paper")
        ax.set_yticks(np.arange(len(table.rows)), labels)
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"{METRIC_TITLES.get(metric, metric)} (%)")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()  # first row on top (the y axis is shared: invert it once)
    handles, names = axes[0][0].get_legend_handles_labels()
    unique = dict(zip(names, handles))
    fig.legend(unique.values(), unique.keys(), loc="lower center", ncol=min(len(unique), 4), fontsize="small",
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.suptitle(f"{table.title} — preset {table.preset}, seeds {', '.join(map(str, table.seeds))}", fontsize="medium")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig, axes


def plot_table(table: "Table", stem: Path) -> list[Path]:
    """Write :func:`table_bars` as ``stem.png`` / ``stem.pdf``; ``[]`` when the table has no accuracy."""
    if table.frame.empty or not set(ACCURACIES) & set(table.metrics):
        return []
    fig, _ = table_bars(table)
    return save_figure(fig, stem)


def sweep_curve(table: "Table", metric: str, x_label: str = "x"):
    """``metric`` against the rows' ``x`` (Figure 4: linear top-1 against the DSTE layer mix α), a line per
    dataset column with the mean over seeds and, with several seeds, the 95 % bootstrap interval as a
    band; rows without ``x`` (random-init references) as dashed horizontal lines.

    Returns:
        ``(fig, ax)``.
    """
    f = table.frame[table.frame.metric == metric]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    palette = sns.color_palette("deep", len(table.columns))
    for color, column in zip(palette, table.columns["column"]):
        g = f[(f.column == column) & f.row.isin(list(table.x))].assign(x=lambda d: d.row.map(table.x)).sort_values("x")
        if g.empty:
            continue
        ax.plot(g["x"], g["mean"], marker="o", color=color, label=column)
        if (g["n"] > 1).any():
            ax.fill_between(g["x"], g["ci_low"], g["ci_high"], color=color, alpha=0.2, lw=0)
        for _, ref in f[(f.column == column) & ~f.row.isin(list(table.x))].iterrows():
            ax.axhline(ref["mean"], color=color, ls="--", lw=1)
            ax.annotate(ref["method"], (ax.get_xlim()[0], ref["mean"]), fontsize="x-small", color=color,
                        xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    n = len(table.seeds)
    ax.set_title(f"{table.title} — preset {table.preset}, {n} seed{'s' if n != 1 else ''}"
                 + (" (band: 95 % bootstrap interval)" if n > 1 else ""), fontsize="medium")
    fig.tight_layout()
    return fig, ax


def plot_sweep(table: "Table", stem: Path) -> list[Path]:
    """Write :func:`sweep_curve` of the table's first metric, one file per metric after the first
    (``stem.png``, ``stem__<metric>.png``, and PDFs)."""
    paths = []
    for i, metric in enumerate(table.metrics):
        fig, _ = sweep_curve(table, metric, x_label=table.x_label)
        paths += save_figure(fig, stem if i == 0 else stem.with_name(f"{stem.name}__{metric}"))
    return paths


def embedding_panels(panels: list[dict], methods: list[str], title: str = ""):
    """Figure 5: one column per variant, one row per method (t-SNE, UMAP); points coloured by class, the
    silhouette score of the panel in its title, one legend of class names.

    Args:
        panels: per variant ``{"label": str, "coords": {method: (N, 2)}, "labels": (N,), "class_names":
            list, "classes": (K,), "silhouette": {method: float}}``.
        methods: the rows of the figure.
    Returns:
        ``(fig, axes)``.
    """
    classes = panels[0]["classes"]
    names = dict(zip(classes, panels[0]["class_names"]))
    palette = dict(zip(classes, sns.color_palette("tab10" if len(classes) <= 10 else "husl", len(classes))))
    fig, axes = plt.subplots(len(methods), len(panels), figsize=(3.6 * len(panels), 3.5 * len(methods) + 0.9),
                             squeeze=False)
    for j, panel in enumerate(panels):
        for i, method in enumerate(methods):
            ax = axes[i][j]
            xy = panel["coords"][method]
            for c in classes:
                sel = panel["labels"] == c
                ax.scatter(xy[sel, 0], xy[sel, 1], s=7, color=palette[c], label=names[c], alpha=0.85, linewidths=0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{panel['label']}\n{method.upper() if method == 'umap' else 't-SNE'} · silhouette "
                         f"{panel['silhouette'][method]:.3f}", fontsize="small")
    handles = [matplotlib.lines.Line2D([], [], marker="o", ls="", color=palette[c]) for c in classes]
    fig.legend(handles, [names[c] for c in classes], loc="lower center", ncol=min(len(classes), 5),
               fontsize="small", frameon=False)
    fig.suptitle(title or "instance features in 2-D", fontsize="medium")
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight() * (1 + len(classes) // 5) * 0.6, 1, 1))
    return fig, axes


def plot_embeddings(table: "Table", records: pd.DataFrame, results_dir: Path, stem: Path) -> list[Path]:
    """Write :func:`embedding_panels` for every dataset column whose records point at embedding
    coordinates (the ``embedding`` evaluation), using the lowest seed; ``[]`` when there are none."""
    emb = records[(records.evaluation == "embedding") & records.artifact.notna()]
    paths: list[Path] = []
    for k, column in enumerate(c for c in table.columns["column"] if c in set(emb["column"])):
        sub = emb[emb.column == column]
        seed = sub["seed"].min()
        panels, methods = [], None
        for row in table.rows:
            hit = sub[(sub.row_id == row) & (sub.seed == seed)]
            if hit.empty:
                continue
            path = Path(results_dir) / hit["artifact"].iloc[-1]
            if not path.exists():
                continue
            with np.load(path, allow_pickle=False) as z:
                found = [m for m in ("tsne", "umap") if m in z.files]
                methods = methods or found
                sil = {m: float(hit[hit.metric == f"silhouette_{m}"]["value"].iloc[-1]) for m in found}
                panels.append({"label": f"{row} {hit['row_label'].iloc[-1]}", "coords": {m: z[m] for m in found},
                               "labels": z["labels"], "classes": z["classes"], "class_names": list(z["class_names"]),
                               "silhouette": sil})
        if not panels or not methods:
            continue
        title = f"{table.title} — {column}, preset {table.preset}, seed {seed}"
        fig, _ = embedding_panels(panels, methods, title)
        paths += save_figure(fig, stem if k == 0 else stem.with_name(f"{stem.name}__{column}"))
    return paths


def detection_timeline(rows: list[dict], title: str = ""):
    """For one test video: per model row, the ground-truth segments against the predicted ones (bar
    opacity = score) and the frame-wise probabilities over time (background and the best action class).

    Args:
        rows: ``{"label", "probs" (T, K), "labels" (T,), "truth" [Segment], "pred" [Segment], "class_names"}``.
    Returns:
        ``(fig, axes)``.
    """
    classes = sorted({s.label for r in rows for s in r["truth"] + r["pred"]})
    palette = dict(zip(classes, sns.color_palette("tab20" if len(classes) > 10 else "tab10", max(len(classes), 1))))
    fig, axes = plt.subplots(2 * len(rows), 1, figsize=(11, 2.6 * len(rows) + 0.8), squeeze=False,
                             gridspec_kw={"height_ratios": [1, 1.4] * len(rows)})
    for i, r in enumerate(rows):
        seg_ax, prob_ax = axes[2 * i][0], axes[2 * i + 1][0]
        for y, (name, segments) in enumerate((("ground truth", r["truth"]), ("predicted", r["pred"]))):
            for s in segments:
                alpha = 1.0 if name == "ground truth" else 0.35 + 0.65 * min(max(s.confidence, 0.0), 1.0)
                seg_ax.barh(1 - y, s.end - s.start, left=s.start, height=0.7, color=palette.get(s.label, "grey"),
                            alpha=alpha, edgecolor="black", linewidth=0.4)
                if s.end - s.start > 0.04 * len(r["labels"]):
                    seg_ax.text((s.start + s.end) / 2, 1 - y, str(s.label), ha="center", va="center", fontsize="x-small")
        seg_ax.set_yticks([1, 0], ["ground truth", "predicted"], fontsize="small")
        seg_ax.set_xlim(0, len(r["labels"]))
        seg_ax.set_title(r["label"], fontsize="small", loc="left")
        seg_ax.tick_params(labelbottom=False)
        t = np.arange(len(r["labels"]))
        probs = r["probs"]
        prob_ax.plot(t, probs[:, 0], color="grey", lw=1, label="P(background)")
        best = probs[:, 1:].argmax(axis=1) + 1
        prob_ax.plot(t, probs[t, best], color="tab:red", lw=1, label="P(most likely action)")
        truth = r["labels"]
        prob_ax.fill_between(t, 0, 1, where=truth > 0, color="tab:blue", alpha=0.08, step="mid", label="an action (ground truth)")
        prob_ax.set_ylim(0, 1)
        prob_ax.set_xlim(0, len(truth))
        prob_ax.set_ylabel("probability", fontsize="small")
        prob_ax.set_xlabel("frame", fontsize="small")
        prob_ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize="x-small", ncol=3, frameon=False)
    handles = [matplotlib.patches.Patch(color=palette[c]) for c in classes]
    names = rows[0]["class_names"]
    fig.legend(handles, [f"{c} {names[c] if c < len(names) else ''}" for c in classes], loc="lower center",
               ncol=min(len(classes), 6), fontsize="x-small", frameon=False)
    fig.suptitle(title or "detection timeline", fontsize="medium")
    fig.tight_layout(rect=(0, 0.05 + 0.02 * (len(classes) // 6), 1, 1))
    return fig, axes


def plot_detection_timelines(table: "Table", records: pd.DataFrame, results_dir: Path, stem: Path) -> list[Path]:
    """Write :func:`detection_timeline` for the first test video of every dataset column whose records point
    at detection outputs (the ``detection`` evaluation), lowest seed; ``[]`` when there are none."""
    det = records[(records.evaluation == "detection") & records.artifact.notna()]
    paths: list[Path] = []
    for k, column in enumerate(c for c in table.columns["column"] if c in set(det["column"])):
        sub = det[det.column == column]
        seed = sub["seed"].min()
        rows = []
        for row in table.rows:
            hit = sub[(sub.row_id == row) & (sub.seed == seed)]
            folder = Path(results_dir) / hit["artifact"].iloc[-1] if not hit.empty else None
            if folder is None or not (folder / "frames.npz").exists():
                continue
            with np.load(folder / "frames.npz", allow_pickle=False) as z:
                video = str(z["names"][0])
                rows.append({"label": f"{row} {hit['row_label'].iloc[-1]} — video {video}", "probs": z["probs_0"],
                             "labels": z["labels_0"], "class_names": [str(c) for c in z["class_names"]],
                             "truth": read_segments(folder / "truth" / f"{video}.txt"),
                             "pred": read_segments(folder / "proposals" / f"{video}.txt")})
        if not rows:
            continue
        fig, _ = detection_timeline(rows, f"{table.title} — {column}, preset {table.preset}, seed {seed}")
        paths += save_figure(fig, stem if k == 0 else stem.with_name(f"{stem.name}__{column}"))
    return paths


#: early action prediction metrics: ``early_top1@<percent observed>``
_EARLY = re.compile(r"early_top1@(\d+)$")


def early_curve(table: "Table"):
    """Early action prediction: top-1 against the observed ratio, a line per row (and dataset column), the
    mean over seeds with the seeds' min..max as a band when there are several.

    Returns:
        ``(fig, ax)``; None when the table has no ``early_top1@...`` metric.
    """
    f = table.frame[table.frame.metric.str.match(_EARLY.pattern)]
    if f.empty:
        return None
    f = f.assign(ratio=f.metric.str.extract(_EARLY.pattern)[0].astype(float) / 100)
    several = len(table.columns) > 1
    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    palette = sns.color_palette("tab10", max(len(table.rows), 1))
    styles = ["-", "--", ":", "-."]
    for color, row in zip(palette, table.rows):
        for j, column in enumerate(table.columns["column"]):
            g = f[(f.row == row) & (f.column == column)].sort_values("ratio")
            if g.empty:
                continue
            label = f"{row} {g['method'].iloc[0]}" + (f" · {column}" if several else "")
            ax.plot(g["ratio"] * 100, g["mean"], marker="o", ms=3, color=color, ls=styles[j % 4], label=label)
            if (g["n"] > 1).any():
                ax.fill_between(g["ratio"] * 100, g["ci_low"], g["ci_high"], color=color, alpha=0.15, lw=0)
    ax.set_xlabel("observed part of each sequence (%)")
    ax.set_ylabel("top-1 (%)")
    ax.set_xlim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{table.title}\npreset {table.preset}, seeds {', '.join(map(str, table.seeds))}", fontsize="medium")
    fig.tight_layout()
    return fig, ax


def accuracy_cost(table: "Table", metric: str | None = None):
    """A leaderboard's accuracy against cost: per dataset column one panel, each method a point at its
    pretraining GFLOPs per sample (log axis) and its mean top-1 on ``metric`` (default: the first of
    :data:`~usdrl_bench.report.leaderboard.RANKED_METRICS` the records hold), the seeds' standard deviation as
    an error bar, labelled with its row id.

    Returns:
        ``(fig, axes)``; None when no row names a method or no cost was recorded.
    """
    recs = table.records
    if recs.empty or "method" not in recs or not recs["method"].notna().any():
        return None
    metric = metric or next((m for m in RANKED_METRICS if m in set(recs["metric"])), None)
    if metric is None:
        return None
    panels = [(c, ranking(recs, c, metric)) for c in table.columns["column"]]
    panels = [(c, r.dropna(subset=["gflops"])) for c, r in panels if not r.empty and r["gflops"].notna().any()]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), squeeze=False)
    for ax, (column, rank) in zip(axes[0], panels):
        x = rank["gflops"].astype(float).to_numpy()
        y = rank["mean"].astype(float).to_numpy()
        err = np.nan_to_num(rank["std"].astype(float).to_numpy())
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3)
        for xi, yi, label in zip(x, y, rank["row"]):
            ax.annotate(str(label), (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize="small")
        ax.set_xscale("log")
        ax.set_xlabel("pretraining GFLOPs per sample (one step, forward + backward)")
        ax.set_ylabel(f"{METRIC_TITLES.get(metric, metric)} (%)")
        ax.set_title(column, fontsize="medium")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{table.title}: accuracy against pretraining cost, preset {table.preset}, "
                 f"seeds {', '.join(map(str, table.seeds))}", fontsize="medium")
    fig.tight_layout()
    return fig, axes


def plot_accuracy_cost(table: "Table", stem: Path) -> list[Path]:
    """Write :func:`accuracy_cost`; ``[]`` for a table without methods."""
    drawn = accuracy_cost(table)
    return save_figure(drawn[0], stem) if drawn is not None else []


def plot_early_curves(table: "Table", stem: Path) -> list[Path]:
    """Write :func:`early_curve`; ``[]`` when the table has no early-prediction metric."""
    drawn = early_curve(table)
    return save_figure(drawn[0], stem) if drawn is not None else []


def segmentation_timeline(truth: np.ndarray, rows: list[dict], class_names: list[str], title: str = ""):
    """For one test video: the ground-truth frame labels, then each model row's predicted frame labels, as
    coloured strips over time (background white, one colour per class), with each row's frame accuracy.

    Args:
        truth: ``(T,)`` ground-truth labels (0 = background).
        rows: ``{"label", "pred" (T,)}`` per model row.
        class_names: names by label.
    Returns:
        ``(fig, ax)``.
    """
    strips = [("ground truth", np.asarray(truth))] + [
        (f"{r['label']} (frames {100 * np.mean(np.asarray(r['pred']) == truth):.0f} % right)", np.asarray(r["pred"]))
        for r in rows]
    classes = sorted({int(c) for _, y in strips for c in np.unique(y)} - {0})
    palette = sns.color_palette("tab20" if len(classes) > 10 else "tab10", max(len(classes), 1))
    colours = {0: (1.0, 1.0, 1.0), **{c: palette[i] for i, c in enumerate(classes)}}
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(strips) + 1.6))
    for i, (_, y) in enumerate(strips):
        change = np.flatnonzero(np.diff(y)) + 1
        for start, end in zip(np.concatenate([[0], change]), np.concatenate([change, [len(y)]])):
            ax.barh(len(strips) - 1 - i, end - start, left=start, height=0.8, color=colours[int(y[start])],
                    edgecolor="black" if y[start] else "none", linewidth=0.3)
    ax.set_yticks(range(len(strips)), [name for name, _ in strips][::-1], fontsize="small")
    ax.set_xlim(0, len(truth))
    ax.set_xlabel("frame")
    handles = [matplotlib.patches.Patch(facecolor=colours[c], edgecolor="black", linewidth=0.3) for c in classes]
    fig.legend(handles, [f"{c} {class_names[c] if c < len(class_names) else ''}" for c in classes],
               loc="lower center", ncol=min(max(len(classes), 1), 6), fontsize="x-small", frameon=False)
    ax.set_title(title or "segmentation timeline", fontsize="medium")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(classes) // 6), 1, 1))
    return fig, ax


def plot_segmentation_timelines(table: "Table", records: pd.DataFrame, results_dir: Path, stem: Path) -> list[Path]:
    """Write :func:`segmentation_timeline` for the first test video of every dataset column whose records
    point at segmentation outputs (the ``segmentation`` evaluation), lowest seed; ``[]`` when none."""
    seg = records[(records.evaluation == "segmentation") & records.artifact.notna()]
    paths: list[Path] = []
    for k, column in enumerate(c for c in table.columns["column"] if c in set(seg["column"])):
        sub = seg[seg.column == column]
        seed = sub["seed"].min()
        rows, truth, names, video = [], None, [], ""
        for row in table.rows:
            hit = sub[(sub.row_id == row) & (sub.seed == seed)]
            folder = Path(results_dir) / hit["artifact"].iloc[-1] if not hit.empty else None
            if folder is None or not (folder / "frames.npz").exists():
                continue
            with np.load(folder / "frames.npz", allow_pickle=False) as z:
                video, truth = str(z["names"][0]), z["labels_0"]
                names = [str(c) for c in z["class_names"]]
                rows.append({"label": f"{row} {hit['row_label'].iloc[-1]}", "pred": z["pred_0"]})
        if not rows or truth is None:
            continue
        fig, _ = segmentation_timeline(truth, rows, names, f"{table.title}\n{column}, test video {video}, preset "
                                                            f"{table.preset}, seed {seed}")
        paths += save_figure(fig, stem if k == 0 else stem.with_name(f"{stem.name}__{column}"))
    return paths


def loss_histories(records: pd.DataFrame, results_dir: Path) -> pd.DataFrame:
    """The per-epoch training logs of the pretrained cells behind ``records`` (tidy: ``row``, ``label``,
    ``column``, ``seed``, ``epoch``, ``term``, ``value``), read from
    ``results_dir/checkpoints/<checkpoint_hash>/history.json``. Random-init cells have none."""
    cells = records.drop_duplicates(["row_id", "column", "seed", "checkpoint_hash"])
    out = []
    for _, c in cells.iterrows():
        path = Path(results_dir) / "checkpoints" / str(c.checkpoint_hash) / "history.json"
        if not path.exists():
            continue
        for entry in json.loads(path.read_text()):
            for term, value in entry.items():
                if term in _NOT_LOSS or term == "loss":
                    continue
                out.append({"row": c.row_id, "label": f"{c.row_id} {c.row_label}", "column": c.column, "seed": c.seed,
                            "epoch": entry["epoch"], "term": term, "value": value})
    return pd.DataFrame(out, columns=["row", "label", "column", "seed", "epoch", "term", "value"])


def loss_curves(history: pd.DataFrame, title: str = ""):
    """One panel per loss term (each term as the objective logs it, e.g. MG-FD's ``sim``, ``vac``,
    ``xcorr`` and ``total``, InfoNCE's ``infonce``), a line per cell (mean over seeds, band = min..max),
    each cell in the same colour in every panel.

    Returns:
        ``(fig, axes)``.
    """
    terms = sorted(history["term"].unique(), key=lambda t: (t == "total", t))
    ncols = min(len(terms), 4)
    nrows = int(np.ceil(len(terms) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 0.8), squeeze=False)
    several = history["column"].nunique() > 1
    history = history.assign(cell=history["label"] + (" · " + history["column"].astype(str) if several else ""))
    cells = list(dict.fromkeys(history.sort_values(["row", "column"], key=lambda c: c.astype(str))["cell"]))
    palette = dict(zip(cells, sns.color_palette("tab10" if len(cells) <= 10 else "husl", len(cells))))
    for ax, term in zip(axes.flat, terms):
        sns.lineplot(data=history[history.term == term], x="epoch", y="value", hue="cell", palette=palette,
                     errorbar=("pi", 100), ax=ax, legend=False)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms):]:
        ax.set_visible(False)
    handles = [matplotlib.lines.Line2D([], [], color=palette[c], lw=2) for c in cells]
    ncol = 3 if len(cells) > 4 else len(cells)
    fig.legend(handles, cells, loc="lower center", ncol=ncol, fontsize="small", frameon=False)
    fig.suptitle(title or "pretraining loss per term", fontsize="medium")
    legend_rows = int(np.ceil(len(cells) / ncol))
    fig.tight_layout(rect=(0, min(0.45, (0.3 * legend_rows + 0.2) / fig.get_figheight()), 1, 1))
    return fig, axes


def plot_loss_curves(records: pd.DataFrame, results_dir: Path, stem: Path) -> list[Path]:
    """Write :func:`loss_curves` for the cells behind ``records``; ``[]`` when no history was recorded."""
    history = loss_histories(records, results_dir)
    if history.empty:
        return []
    title = f"pretraining loss per term — {records['protocol'].iloc[0]}, preset {records['preset'].iloc[0]}"
    fig, _ = loss_curves(history, title)
    return save_figure(fig, stem)
