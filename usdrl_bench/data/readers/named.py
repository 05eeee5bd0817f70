"""Datasets addressed by name under a data root: ``ntu60_xsub``, ``ntu60_xview``, ``ntu120_xsub``,
``ntu120_xset``, ``pku1_xsub``, ``pku2_xsub``, ``msr_action3d`` (``synthetic`` needs no files).

The data root is ``--data-root`` (``data_root=`` of the API), else ``$USDRL_DATA``, else ``./data``. Each
name is registered with a ``locate(root)`` that finds, under it, the folder ``usdrl-bench data prepare``
writes (the layout of the official code, FACTS §3A item 7); the run's plan calls it once
(:func:`~usdrl_bench.data.root.locate_dataset`) and the reader receives the folder:

=================  ==========================================
``ntu60_xsub``     ``NTU-RGB-D-60-AGCN/xsub``
``ntu60_xview``    ``NTU-RGB-D-60-AGCN/xview``
``ntu120_xsub``    ``NTU-RGB-D-120-AGCN/xsub``
``ntu120_xset``    ``NTU-RGB-D-120-AGCN/xsetup``
``pku1_xsub``      ``PKU-MMD-v1-AGCN/xsub``
``pku2_xsub``      ``PKU-MMD-v2-AGCN/xsub``
``uav_csv1``       ``UAV-Human-AGCN/csv1`` (17 joints, 155 classes)
``uav_csv2``       ``UAV-Human-AGCN/csv2``
``ntu60_2d_xsub``  ``NTU-2D/ntu60_hrnet.pkl`` (pyskl 2-D keypoints; also ``ntu60_2d_xview``,
                   ``ntu120_2d_xsub``, ``ntu120_2d_xset`` from ``ntu120_hrnet.pkl``; :mod:`~usdrl_bench.data.readers.two_d`)
``msr_action3d``   ``MSRAction3D`` (the skeleton text files)
=================  ==========================================

A missing dataset's error says what to download and which command prepares it. Any other location
is read with an explicit ``format:path`` (``agcn:``, ``ntu_raw:``, ``ctrgcn_npz:``, ``pyskl:``,
``pku_pickle:``, ``msr_action3d:``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from usdrl_bench.data.readers.agcn import load_agcn
from usdrl_bench.data.root import DATA_ROOT_ENV, locate_dataset, resolve_data_root
from usdrl_bench.data.registration import register_dataset

__all__ = ["NAMED", "NamedDataset", "DATA_ROOT_ENV", "default_output", "locate", "locate_prepared"]


@dataclass(frozen=True)
class NamedDataset:
    folder: str  # under the data root
    split: str
    prepare: str  # the `data prepare` dataset that writes it
    download: str
    num_classes: int


NTU_SITE = "https://rose1.ntu.edu.sg/dataset/actionRecognition/"
PKU_SITE = "https://www.icst.pku.edu.cn/struct/Projects/PKUMMD.html"
UAV_SITE = "https://github.com/sutdcv/UAV-Human"
NAMED: dict[str, NamedDataset] = {
    "ntu60_xsub": NamedDataset("NTU-RGB-D-60-AGCN/xsub", "xsub", "ntu60", f"nturgbd_skeletons_s001_to_s017.zip ({NTU_SITE})", 60),
    "ntu60_xview": NamedDataset("NTU-RGB-D-60-AGCN/xview", "xview", "ntu60", f"nturgbd_skeletons_s001_to_s017.zip ({NTU_SITE})", 60),
    "ntu120_xsub": NamedDataset("NTU-RGB-D-120-AGCN/xsub", "xsub", "ntu120",
                                f"nturgbd_skeletons_s001_to_s017.zip and nturgbd_skeletons_s018_to_s032.zip ({NTU_SITE})", 120),
    "ntu120_xset": NamedDataset("NTU-RGB-D-120-AGCN/xsetup", "xset", "ntu120",
                                f"nturgbd_skeletons_s001_to_s017.zip and nturgbd_skeletons_s018_to_s032.zip ({NTU_SITE})", 120),
    "pku1_xsub": NamedDataset("PKU-MMD-v1-AGCN/xsub", "xsub", "pku1",
                              f"PKU-MMD Phase 1 skeletons, labels and split files ({PKU_SITE})", 51),
    "pku2_xsub": NamedDataset("PKU-MMD-v2-AGCN/xsub", "xsub", "pku2",
                              f"PKU-MMD Phase 2 skeletons, labels and split files ({PKU_SITE})", 51),
    "uav_csv1": NamedDataset("UAV-Human-AGCN/csv1", "csv1", "uav", f"UAV-Human's skeleton files ({UAV_SITE})", 155),
    "uav_csv2": NamedDataset("UAV-Human-AGCN/csv2", "csv2", "uav", f"UAV-Human's skeleton files ({UAV_SITE})", 155),
}
#: Output folder of each `data prepare` dataset under the root.
PREPARE_FOLDERS = {"ntu60": "NTU-RGB-D-60-AGCN", "ntu120": "NTU-RGB-D-120-AGCN", "pku1": "PKU-MMD-v1-AGCN",
                   "pku2": "PKU-MMD-v2-AGCN", "uav": "UAV-Human-AGCN"}


def default_output(dataset: str, root: str | Path | None = None) -> Path:
    """Where ``data prepare <dataset>`` writes by default."""
    return resolve_data_root(root) / PREPARE_FOLDERS[dataset]


def locate(name: str, root: str | Path | None = None) -> Path:
    """The folder (or file) of a named dataset under the data root ``root`` (default ``$USDRL_DATA``, else
    ``./data``): its registered ``locate`` (:func:`~usdrl_bench.data.root.locate_dataset`).

    Raises:
        FileNotFoundError: it is not there; the message says what to download and how to prepare it.
        KeyError: not a registered dataset.
    """
    path = locate_dataset(name, None, root).require()
    if path is None:
        raise KeyError(f"dataset {name!r} is not found under a data root (it needs no files, or a path)")
    return Path(path)


def locate_prepared(name: str, root: Path) -> Path:
    """The prepared arrays of named dataset ``name`` (:data:`NAMED`) under the data root ``root``.

    Raises:
        FileNotFoundError: no ``train_data_joint.npy`` there; the message says what to download and which
            command prepares it.
    """
    entry = NAMED[name]
    folder = root / entry.folder
    if not (folder / "train_data_joint.npy").is_file():
        raise FileNotFoundError(
            f"dataset {name} not found: expected prepared arrays in {folder} (train_data_joint.npy, ...). "
            f"Download {entry.download}, unpack it, then run: usdrl-bench data prepare {entry.prepare} --raw <unpacked dir> "
            f"--out {root / PREPARE_FOLDERS[entry.prepare]}. The data root is --data-root or ${DATA_ROOT_ENV} (now {root})")
    return folder


def _register(name: str, entry: NamedDataset) -> None:
    @register_dataset(name, description=f"{name}: prepared arrays under the data root ({entry.folder})",
                      splits=(entry.split,), default_split=entry.split,
                      locate=functools.partial(locate_prepared, name))
    def load(path: str, split: str = entry.split):
        if split != entry.split:
            raise KeyError(f"Unknown split {split!r} for {name}; available: {entry.split}")
        return load_agcn(path, entry.split, num_classes=entry.num_classes)

    load.__doc__ = f"(train, test) of {name}: the prepared arrays at ``path`` (``<data root>/{entry.folder}``)."


for _name, _entry in NAMED.items():
    _register(_name, _entry)
