"""Run protocols: plan once, pretrain what is missing (here, in workers, on torchrun ranks or as cluster
jobs), evaluate what is missing, return the records.

The run is three steps, each in its own module:

- planning (:mod:`usdrl_bench.protocols.plan`): every cell's checkpoint key, data identity and record
  paths, computed once into a :class:`~usdrl_bench.protocols.plan.RunPlan`;
- scheduling (:mod:`usdrl_bench.protocols.schedule`, :mod:`usdrl_bench.protocols.launch`): the missing
  checkpoints trained by ``--jobs`` workers, data-parallel torchrun ranks or submitit jobs, under the
  plan's keys (:mod:`usdrl_bench.protocols.training` trains one);
- evaluation (:mod:`usdrl_bench.protocols.evaluation`): the missing records, written beside the cached
  checkpoints and features.

A pretrained checkpoint is keyed by everything that determines it, so every protocol and evaluation that
needs the same one reuses it and running a finished protocol again trains nothing. An interrupted run
resumes: finished checkpoints and records are kept, a partly trained checkpoint continues from its last
epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from usdrl_bench import distributed as dist_utils
from usdrl_bench.protocols.evaluation import Evaluator
from usdrl_bench.protocols.plan import CellPlan, DataStore, Planner, ProtocolPlan, RunPlan
from usdrl_bench.protocols.spec import Cell, Protocol
from usdrl_bench.protocols.training import CheckpointTrainer
from usdrl_bench.train.pretrain import TrainingOptions

__all__ = ["ProtocolRunner"]


class ProtocolRunner:
    """The run's data, planner, trainer and evaluator over one results folder.

    Args:
        results_dir: root of checkpoints, features and records.
        device: where checkpoints train and evaluations run.
        console: where progress and messages go.
        options: how pretraining reports (:class:`~usdrl_bench.protocols.training.TrainingOptions`).
        world_size: the processes a checkpoint of this run trains on (torchrun's world, or a submitit job's
            GPUs; default: the current process group's size).
        data_root: where named datasets are found (None: ``$USDRL_DATA``, else ``./data``).
    """

    def __init__(self, results_dir: Path = Path("results"), device: torch.device | None = None,
                 console: Console | None = None, *, options: TrainingOptions = TrainingOptions(),
                 world_size: int | None = None, data_root: Path | None = None) -> None:
        self.results_dir = Path(results_dir)
        self.device = device or torch.device("cpu")
        self.console = console or Console(stderr=True)
        self.store = DataStore(self.results_dir, None if data_root is None else Path(data_root), self.console)
        world = dist_utils.world_size() if world_size is None else int(world_size)
        self.planner = Planner(self.results_dir, self.store, self.device, world)
        self.trainer = CheckpointTrainer(self.results_dir, self.store, self.device, self.console, options)
        self.evaluator = Evaluator(self.trainer, self.store, self.console)

    @property
    def world_size(self) -> int:
        return self.planner.world_size

    def plan(self, cell: Cell) -> CellPlan:
        """The cell's plan (computed once per cell)."""
        return self.planner.plan(cell)

    def plan_run(self, work: list[tuple[Protocol, list[Cell]]]) -> RunPlan:
        """The plan of running ``work`` (protocols and their cells), built once."""
        return self.planner.plan_run(work)

    def run(self, plan: ProtocolPlan) -> list[dict[str, Any]]:
        """Evaluate what is missing of one protocol's plan, pretraining what no process trained yet; returns
        every record row of its cells."""
        return self.evaluator.run(plan)
