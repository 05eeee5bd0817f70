"""Rehearsal: a protocol's preset run at its real shapes with the length of the work cut down.

``usdrl-bench run PROTOCOL --preset paper --rehearse`` runs every row, column and evaluation of the preset
with the paper's model sizes, view lengths, joints, persons, streams, ensembles and evaluation heads, on
synthetic data shaped as each named dataset's release (:data:`RELEASES`: channels, frames, joints, persons
and class count as released; a few samples), with every schedule cut to a few steps
(:class:`Rehearsal`). It finds what would fail on the first real run (a shape error in an evaluation, a
key missing in the report, a batch that does not fit) in minutes instead of days.

What is cut, and nothing else:

* data: each named dataset (``ntu60_xsub``, ``pku2_xsub``, ``uav_csv1``, ``ntu60_2d_xsub``, ...) is replaced by
  the ``rehearsal`` dataset shaped as its release, ``samples`` training and test samples (labels spread over
  all its classes); the untrimmed videos of detection and segmentation by a few synthetic videos with the
  release's classes;
* schedules: pretraining ``epochs`` epochs (milestones and warm-up inside them), each evaluation ``epochs``
  epochs (its milestones inside them, every epoch tested), one repeat of each semi-supervised fraction;
* batch sizes: capped at ``batch_cap`` (on a CPU; the paper's on a GPU), stated in the run's output;
* seeds: the preset's first seed only.

Rehearsal results never mix with real ones: they go to ``<results>/rehearsal/`` (:func:`rehearsal_results`),
every key they are cached under differs from a real run's (the data and the schedule differ, and the
rehearsal settings enter the key), and their records carry the preset ``<preset>-rehearsal`` and
``rehearsal = True``, so a report marks them and never puts them in a real table.
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usdrl_bench.records import REHEARSAL_SUFFIX
from usdrl_bench.registry import EVALUATIONS
from usdrl_bench.data.synthetic.releases import REHEARSAL_DATASET, RELEASES, VIDEO_CLASSES

__all__ = ["Rehearsal", "REHEARSAL_SUFFIX", "rehearsal_results", "rehearse_cells"]

#: the options a rehearsal cuts (:meth:`Rehearsal.cut_schedule`)
_SCHEDULE_KEYS = ("epochs", "milestones", "warmup_epochs", "batch_size", "eval_every", "repeats")


@dataclass(frozen=True)
class Rehearsal:
    """How a rehearsal cuts the work (module docstring).

    Attributes:
        samples: training and test samples of each dataset (at least ``batch_cap`` and 2).
        epochs: pretraining epochs, and epochs of every evaluation that trains.
        batch_cap: the largest batch of any pretraining or evaluation (None: the paper's batches; the
            dataset then holds ``samples`` or the largest batch, whichever is more).
        videos: untrimmed videos of detection and segmentation (half train, half test).
        seed: seeds the synthetic data.
        measure: after the run, measure each model configuration's step for ``usdrl-bench plan``
            (:func:`~usdrl_bench.protocols.forecast.measure_rehearsal`); not part of any key.
        keep_weights: keep the rehearsal's encoders (by default each is deleted once the run's protocols that
            need it are done: at the paper's size up to 180 MB each); not part of any key.
    """

    samples: int = 4
    epochs: int = 1
    batch_cap: int | None = 4
    videos: int = 4
    seed: int = 0
    measure: bool = True
    keep_weights: bool = False

    def __post_init__(self) -> None:
        for name in ("samples", "epochs", "videos"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (2 if name != "epochs" else 1):
                raise ValueError(f"rehearsal {name} must be an integer >= {2 if name != 'epochs' else 1}, got {value!r}")
        if self.batch_cap is not None and (not isinstance(self.batch_cap, int) or self.batch_cap < 2):
            raise ValueError(f"rehearsal batch_cap must be an integer >= 2 or None, got {self.batch_cap!r}")

    @classmethod
    def for_device(cls, device_type: str) -> "Rehearsal":
        """A CPU's rehearsal (batches capped at 4 and 4 samples per part: one optimisation step per pretraining;
        every paper preset in 25 minutes on 2 cores), or a GPU's (the preset's batches on 1,024 samples per part:
        up to 3 steps per pretraining at batch 356)."""
        return cls() if device_type != "cuda" else cls(samples=1024, batch_cap=None)

    def describe(self) -> str:
        batches = f"batches capped at {self.batch_cap}" if self.batch_cap else "the preset's batch sizes"
        return (f"rehearsal: synthetic data shaped as each release ({self.samples} train / {self.samples} test samples), "
                f"{self.epochs} epoch(s) of every pretraining and evaluation, {batches}, the first seed")

    def batch(self, value: int) -> int:
        return value if self.batch_cap is None else min(value, self.batch_cap)

    def cut_schedule(self, options: dict[str, Any]) -> dict[str, Any]:
        """A pretraining or evaluation schedule cut to :attr:`epochs` (milestones and warm-up inside them,
        evaluated every epoch, one repeat, batch capped); other options as they are."""
        out = dict(options)
        if isinstance(out.get("epochs"), int):
            out["epochs"] = min(out["epochs"], self.epochs)
            if isinstance(out.get("milestones"), (list, tuple)):
                out["milestones"] = [m for m in out["milestones"] if m < out["epochs"]]
            if isinstance(out.get("warmup_epochs"), (int, float)):
                out["warmup_epochs"] = min(out["warmup_epochs"], out["epochs"] / 2)
        if isinstance(out.get("batch_size"), int):
            out["batch_size"] = self.batch(out["batch_size"])
        if isinstance(out.get("eval_every"), int):
            out["eval_every"] = 1
        if isinstance(out.get("repeats"), int):
            out["repeats"] = 1
        return out

    def cut_evaluation(self, evaluation: str, options: dict[str, Any]) -> dict[str, Any]:
        """:meth:`cut_schedule` of the evaluation's options (its defaults where the protocol leaves them: a
        linear probe's 160 epochs are cut too), and untrimmed videos (``data: {name: pku1}``) replaced by
        synthetic ones with the release's classes."""
        defaults = {name: p.default for name, p in inspect.signature(EVALUATIONS.get(evaluation)).parameters.items()
                    if name in _SCHEDULE_KEYS and p.default is not inspect.Parameter.empty}
        out = self.cut_schedule({**defaults, **options})
        data = out.get("data")
        if isinstance(data, dict) and data.get("name") in VIDEO_CLASSES:
            out["data"] = {"name": "synthetic_untrimmed", "options": {
                "seed": self.seed, "num_classes": VIDEO_CLASSES[data["name"]], "num_videos": self.videos,
                "actions_per_video": 3}}
        elif isinstance(data, dict) and data.get("name") == "synthetic_untrimmed":
            opts = dict(data.get("options") or {})
            opts["num_videos"] = min(opts.get("num_videos", self.videos), self.videos)
            out["data"] = {**data, "options": opts}
        return out

    def key(self) -> dict[str, Any]:
        """What of the rehearsal enters a checkpoint's key (all but ``measure`` and ``keep_weights``)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("measure", "keep_weights")}


def rehearsal_results(results: str | Path) -> Path:
    """Where a rehearsal writes: ``<results>/rehearsal`` (never the real results' folders)."""
    return Path(results) / "rehearsal"


def _rehearsal_spec(spec, rehearsal: Rehearsal, samples: int):
    """A :class:`~usdrl_bench.protocols.spec.DatasetSpec` for the rehearsal data shaped as ``spec``'s dataset
    (its column, stream, paper setting and per-dataset overrides kept)."""
    if spec.name == REHEARSAL_DATASET:
        return spec
    like = spec.name
    if like not in RELEASES:
        raise KeyError(f"dataset {spec.describe()}: no release shape known for a rehearsal (known: "
                       f"{', '.join(sorted(RELEASES))})")
    pretrain_on = _rehearsal_spec(spec.pretrain_on, rehearsal, samples) if spec.pretrain_on is not None else None
    return dataclasses.replace(spec, name=REHEARSAL_DATASET, path=None, split=None, id=spec.column,
                               options={"like": like, "samples": samples, "seed": rehearsal.seed},
                               pretrain_on=pretrain_on)


def rehearse_cells(cells: list, rehearsal: Rehearsal) -> list:
    """The cells of a rehearsal: the first seed, each dataset replaced by the rehearsal data shaped as its
    release, and the cut schedules (:attr:`Cell.rehearsal <usdrl_bench.protocols.spec.Cell>`).

    Raises:
        KeyError: a dataset without a known release (the rehearsal cannot shape data like it).
    """
    if not cells:
        return []
    first_seed = min(c.seed for c in cells)
    out = []
    for cell in cells:
        if cell.seed != first_seed:
            continue
        trains = cell.row.objective is not None and cell.row.checkpoint is None
        samples = max(rehearsal.samples, rehearsal.batch(cell.schedule.batch_size) if trains else 0)
        out.append(dataclasses.replace(cell, dataset=_rehearsal_spec(cell.dataset, rehearsal, samples),
                                       rehearsal=rehearsal))
    return out
