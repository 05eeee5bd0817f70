"""Evaluating planned cells: the missing records of each cell, the fused ensembles, the record rows.

:class:`Evaluator` takes a :class:`~usdrl_bench.protocols.plan.ProtocolPlan`, gets each cell's encoder from
the :class:`~usdrl_bench.protocols.training.CheckpointTrainer` (training it when no process did), runs the
registered evaluations whose record is missing, and writes one JSON record per (cell, evaluation) with
the provenance of :data:`usdrl_bench.records.RECORD_COLUMNS`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from usdrl_bench import registry
from usdrl_bench._version import __version__
from usdrl_bench.evaluate.base import Metric
from usdrl_bench.evaluate.ensemble import FUSION_NOTE, ensemble_top1
from usdrl_bench.evaluate.features import EvalContext
from usdrl_bench.evaluate.linear import BEST_PROBS_FILE
from usdrl_bench.io import git_revision, stable_hash
from usdrl_bench.objectives import create_objective
from usdrl_bench.protocols.plan import CellPlan, DataStore, EnsemblePlan, ProtocolPlan, build_encoder, encoder_input
from usdrl_bench.protocols.released import RELEASED, load_released
from usdrl_bench.protocols.schema import ProtocolError
from usdrl_bench.protocols.spec import Cell
from usdrl_bench.protocols.training import CheckpointTrainer
from usdrl_bench.records import read_records, write_records
from usdrl_bench.train.pretrain import pretraining_flops

__all__ = ["Evaluator", "progress_columns"]


def progress_columns() -> tuple:
    """The columns of the run's progress lines: description (with loss and samples/s while pretraining),
    bar, done/total, elapsed, time left."""
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn())


class Evaluator:
    """Writes the missing records of planned cells and returns every record row of them."""

    def __init__(self, trainer: CheckpointTrainer, store: DataStore, console: Console) -> None:
        self.trainer, self.store, self.console = trainer, store, console
        self.results_dir, self.device = trainer.results_dir, trainer.device
        self._costs: dict[str, dict[str, Any]] = {}  # checkpoint key -> parameters and pretraining FLOPs
        # wall seconds of this process: training or loading encoders, extracting features, the evaluations' own
        self.seconds = {"pretraining": 0.0, "extraction": 0.0, "evaluation": 0.0}

    def run(self, plan: ProtocolPlan) -> list[dict[str, Any]]:
        """Evaluate what is missing of ``plan`` (pretraining what no process trained yet) and return every
        record row of its cells, ensembles last."""
        all_rows: list[dict[str, Any]] = []
        with Progress(*progress_columns(), console=self.console, transient=False) as progress:
            overall = progress.add_task("[bold]cells", total=len(plan.cells) + len(plan.ensembles))
            for cell_plan in plan.cells:
                pending = cell_plan.missing_records()
                if pending:
                    t0 = time.perf_counter()
                    encoder, pretrain_s = self.trainer.checkpoint(cell_plan, progress)
                    self.seconds["pretraining"] += time.perf_counter() - t0
                    self.evaluate(cell_plan, encoder, pending, pretrain_s, progress)
                for record in cell_plan.records.values():
                    all_rows.extend(read_records(record))
                progress.advance(overall)
            for ensemble in plan.ensembles:
                all_rows.extend(self.ensemble(ensemble))
                progress.advance(overall)
        return all_rows

    def _check_transfer(self, plan: CellPlan, encoder: torch.nn.Module, shape: tuple[int, ...]) -> None:
        """A transfer column's data must fit the encoder pretrained on another dataset."""
        cell = plan.cell
        c, v, m = encoder_input(cell, shape)
        cfg = encoder.config
        if (c, v, m) != (cfg.in_channels, cfg.num_joints, cfg.num_bodies):
            raise ProtocolError(cell.protocol.file, f"datasets.{cell.dataset.column}.pretrain_on",
                                f"the encoder pretrained on {cell.pretrain_dataset.describe()} takes (C, V, M) = "
                                f"{(cfg.in_channels, cfg.num_joints, cfg.num_bodies)}; {cell.dataset.describe()} "
                                f"has {(c, v, m)}")

    def evaluate(self, plan: CellPlan, encoder: torch.nn.Module, evaluations: dict[str, dict[str, Any]],
                 pretrain_s: float, progress: Progress) -> None:
        """Run ``evaluations`` (name -> options) of ``plan`` with ``encoder`` and write their records; a
        record another process wrote meanwhile is kept (the record's file lock)."""
        cell = plan.cell
        train, test = self.store.load(cell.dataset)
        if cell.dataset.pretrain_on is not None:
            self._check_transfer(plan, encoder, train.shape)
        task = progress.add_task(f"features {cell.row.label}", total=len(train) + len(test))

        def on_progress(which: str, k: int, total: int) -> None:
            progress.update(task, completed=k if which == "train" else len(train) + k)

        ctx = EvalContext(encoder=encoder, train=train, test=test, device=self.device, seed=cell.seed,
                          subset_dir=plan.subset_dir, stream=cell.dataset.stream, on_progress=on_progress,
                          cache_dir=plan.features_dir, data_root=self.store.data_root)
        for name, options in evaluations.items():
            record = plan.records[name]
            with self.trainer.lock(f"record-{record.stem}"):
                if record.exists():  # written by another process while this one waited
                    continue
                ctx.artifact_dir = record.with_suffix("")  # beside the record, named after it
                t0 = time.perf_counter()
                metrics = registry.EVALUATIONS.get(name)(ctx, **options)
                wall = time.perf_counter() - t0
                artifact = ctx.artifacts.get(name)
                rows = [self.row(plan, name, options, m, wall, pretrain_s,
                                 str(artifact.relative_to(self.results_dir)) if artifact else None) for m in metrics]
                write_records(record, rows)
                self.seconds["evaluation"] += wall
        self.seconds["extraction"] += ctx.extract_s
        self.seconds["evaluation"] -= ctx.extract_s  # extraction happens inside the evaluations that need it
        progress.remove_task(task)

    def _member_scores(self, plan: EnsemblePlan) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        scores, best_scores = [], []
        for m in plan.members:
            member_record = m.records["linear"]
            rows = read_records(member_record)
            artifact = rows[0].get("artifact") if rows else None
            if not artifact or not (self.results_dir / artifact).exists():
                raise ProtocolError(plan.cell.protocol.file, f"rows.{plan.cell.row.id}.ensemble",
                                    f"no linear test scores for member row {m.cell.row.id!r}: delete "
                                    f"{member_record} and run again to re-evaluate it")
            scores.append(np.load(self.results_dir / artifact))
            best = (self.results_dir / artifact).with_name(BEST_PROBS_FILE)
            best_scores.append(np.load(best) if best.exists() else None)
        return scores, best_scores

    def ensemble(self, plan: EnsemblePlan) -> list[dict[str, Any]]:
        """Fuse the member rows' linear test scores (Table 1's 3s ensemble); cached like any record.

        Raises:
            ProtocolError: a member's scores are missing.
        """
        if not plan.record.exists():
            cell, members, weights = plan.cell, plan.members, plan.cell.row.ensemble.weights  # type: ignore[union-attr]
            scores, best_scores = self._member_scores(plan)
            _, test = self.store.load(cell.dataset)
            t0 = time.perf_counter()
            note = (f"{FUSION_NOTE}; rows {', '.join(m.cell.row.id for m in members)}, "
                    f"weights {list(weights) or [1.0] * len(members)}")
            metrics = [Metric("linear_top1", ensemble_top1(scores, test.labels, weights or None),
                              note=f"final-epoch classifiers; {note}")]
            if all(b is not None for b in best_scores):
                best = ensemble_top1(best_scores, test.labels, weights or None)
                metrics.insert(0, Metric("linear_top1_best_of_evals", best, note="each stream's classifier at its "
                                                                                 f"best evaluation (official selection); {note}"))
            wall = time.perf_counter() - t0
            self.seconds["evaluation"] += wall
            stand_in = CellPlan(cell=cell, encoder_config={}, checkpoint_hash=plan.key)
            out = []
            for metric in metrics:
                row = self.row(stand_in, "linear", plan.options, metric, wall, 0.0)
                row.update(encoder="+".join(dict.fromkeys(m.cell.row.encoder or "" for m in members)),
                           objective="+".join(dict.fromkeys(m.cell.row.objective or "none" for m in members)),
                           stream="+".join(m.cell.dataset.stream for m in members), checkpoint_hash=None,
                           weights="ensemble of " + ", ".join(m.cell.row.id for m in members))
                out.append(row)
            write_records(plan.record, out)
        return read_records(plan.record)

    def cost(self, plan: CellPlan) -> dict[str, Any]:
        """What the cell's model costs, for reading accuracy against it: the encoder's parameters and one
        pretraining step's FLOPs per sample (:func:`~usdrl_bench.train.pretrain.pretraining_flops`; None for a
        random initialisation), computed once per checkpoint key."""
        known = self._costs.get(plan.checkpoint_hash)
        if known is not None:
            return known
        cell = plan.cell
        if cell.row.checkpoint is not None:  # released weights: what the file holds, no pretraining counted
            encoder = load_released(cell.row.checkpoint, cell.row.method, cell.row.checkpoint_args)
            cost = {"encoder_params": int(sum(p.numel() for p in encoder.parameters())), "pretrain_gflops_per_sample": None}
            self._costs[plan.checkpoint_hash] = cost
            return cost
        train, _ = self.store.load(cell.pretrain_dataset)
        encoder = build_encoder(cell, train.shape)
        cost: dict[str, Any] = {"encoder_params": int(sum(p.numel() for p in encoder.parameters())),
                                "pretrain_gflops_per_sample": None}
        if cell.row.objective is not None:
            try:
                objective = create_objective(cell.row.objective, encoder, **cell.objective_options)
                flops = pretraining_flops(encoder, objective, tuple(train.shape), train.layout, cell.schedule,
                                          cell.pretrain_dataset.stream)
                cost["pretrain_gflops_per_sample"] = round(flops / 1e9, 6)
            except Exception as exc:  # noqa: BLE001 - a cost the counter cannot take is left out, said once
                self.console.print(f"[yellow]warning:[/] pretraining FLOPs of {cell.row.label} not counted: {exc}",
                                   highlight=False)
        self._costs[plan.checkpoint_hash] = cost
        return cost

    @staticmethod
    def published(cell: Cell, evaluation: str) -> float | None:
        """The row's method's published number for this column's paper setting and evaluation, if any."""
        if cell.row.method is None or not cell.dataset.paper_setting:
            return None
        method = registry.METHODS.get(cell.row.method)
        return method.published.get(f"{cell.dataset.paper_setting}/{evaluation.removesuffix('_own')}")

    def row(self, plan: CellPlan, evaluation: str, options: dict[str, Any], metric: Metric, wall: float,
            pretrain_s: float, artifact: str | None = None) -> dict[str, Any]:
        """One record row (:data:`usdrl_bench.records.RECORD_COLUMNS`): what ran, the value, the provenance."""
        cell = plan.cell
        train, test = self.store.load(cell.dataset)
        cost = self.cost(plan) if cell.row.method is not None or cell.row.checkpoint is not None else {}
        released = cell.row.checkpoint is not None
        return {
            "method": cell.row.method, "method_published": self.published(cell, evaluation),
            "encoder_params": cost.get("encoder_params"),
            "pretrain_gflops_per_sample": cost.get("pretrain_gflops_per_sample"),
            "protocol": cell.protocol.name, "preset": cell.preset_label, "rehearsal": cell.rehearsal is not None,
            "row_id": cell.row.id,
            "row_label": cell.row.label + (f" ({RELEASED})" if released else ""), "paper_table": cell.protocol.paper_table, "paper_row": cell.row.paper_row,
            "paper_key": json.dumps(cell.row.paper, sort_keys=True) if cell.row.paper else None, "row_x": cell.row.x,
            "row_index": next(i for i, r in enumerate(cell.protocol.rows) if r.id == cell.row.id),
            "encoder": cell.row.encoder,
            "objective": RELEASED if released else (cell.row.objective or "none (random init)"),
            "weights": (f"{RELEASED}: {plan.pretrain_dataset_identity['released']['file']} (sha256 "
                        f"{plan.pretrain_dataset_identity['released']['sha256'][:12]})" if released
                        else "pretrained" if cell.row.objective else "random init"),
            "dataset": cell.dataset.name, "split": cell.dataset.resolved_split(), "stream": cell.dataset.stream,
            "column": cell.dataset.column, "paper_setting": cell.dataset.paper_setting,
            "column_index": next((i for i, d in enumerate(cell.preset.all_datasets) if d.column == cell.dataset.column), 0),
            "train_samples": len(train), "test_samples": len(test), "seed": cell.seed,
            "evaluation": evaluation, "metric": metric.name, "value": metric.value,
            "higher_is_better": metric.higher_is_better, "note": metric.note,
            "config_hash": stable_hash({"checkpoint": plan.checkpoint_hash, "evaluation": evaluation, "options": options}),
            "checkpoint_hash": plan.checkpoint_hash, "git_revision": git_revision(), "package_version": __version__,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "wall_time_s": round(wall, 3),
            "pretrain_wall_time_s": round(pretrain_s, 3), "device": str(self.device),
            "artifact": artifact, "protocol_version": cell.protocol.version,
            "overrides": list(cell.protocol.overrides),
            # transfer: where the encoder was pretrained, when not on this column's data
            "pretrain_data": cell.pretrain_dataset.describe() if cell.dataset.pretrain_on is not None else None,
            # data too small or odd to mean much (usdrl_bench.data.checks): shown beside the number in the report
            "data_warnings": "; ".join(self.store.data_warnings(cell, plan.encoder_config.get("num_frames"))) or None,
        }
