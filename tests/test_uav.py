"""UAV-Human: files in the release's name and text format (built here), the CSv1 / CSv2 splits, data prepare
uav, and the named datasets reading the result."""

from __future__ import annotations

import numpy as np
import pytest

from usdrl_bench.cli import main
from usdrl_bench.data.synthetic.raw import skeleton_text
from usdrl_bench.data.preparation.uav import TRAIN_PERSONS
from usdrl_bench.data.readers.agcn import parse_uav_name


def _uav_name(person: int, action: int, replicate: int = 0) -> str:
    return f"P{person:03d}S00G10B10H10UC022000LC021000A{action:03d}R{replicate}_08241716"


def _write(folder, name, rng, frames=30, bodies=1):
    joints = np.zeros((3, frames, 17, bodies), np.float32)
    joints[:, :, :, 0] = rng.standard_normal((3, frames, 17)) * 0.3 + np.array([0, 1, 3])[:, None, None]
    (folder / f"{name}.txt").write_text(skeleton_text(joints, frames, [72057594037931101 + b for b in range(bodies)]))


def test_names_and_split_ids():
    meta = parse_uav_name("P118S03G10B20H31UC092000LC021000A154R1_09051423")
    assert meta == {"person": 118, "setup": 3, "action": 154, "replicate": 1}
    assert parse_uav_name("S001C001P001R001A001") is None
    assert {0, 2, 10, 21, 118} <= TRAIN_PERSONS["csv1"] and not {1, 3, 4, 9, 22} & TRAIN_PERSONS["csv1"]
    assert {0, 3, 4, 118} <= TRAIN_PERSONS["csv2"] and not {1, 2, 7, 9, 13} & TRAIN_PERSONS["csv2"]
    assert len(TRAIN_PERSONS["csv1"]) == 89 and len(TRAIN_PERSONS["csv2"]) == 89


def test_prepare_uav_writes_both_splits_and_named_datasets_read_them(tmp_path, capsys):
    rng = np.random.default_rng(0)
    raw = tmp_path / "Skeleton"
    raw.mkdir()
    # person 2: train in CSv1, test in CSv2; person 3: the other way round; person 1: test in both
    for person, action in ((2, 0), (2, 5), (3, 7), (1, 154), (3, 0)):
        _write(raw, _uav_name(person, action), rng, bodies=2 if action == 5 else 1)
    (raw / "notes.txt").write_text("not a skeleton\n")
    (raw / f"{_uav_name(1, 3, 1)}.txt").write_text("30\n1\n")  # truncated: skipped, named
    root = tmp_path / "data"
    assert main(["data", "prepare", "uav", "--raw", str(raw), "--data-root", str(root), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "notes" in out or "skipped" in out
    from usdrl_bench.data.loading import load_dataset

    train, test = load_dataset("uav_csv1", None, "csv1", data_root=str(root))
    assert train.data.shape[1:] == (3, 300, 17, 2) and train.layout == "coco17" and train.num_classes == 155
    assert sorted(train.labels.tolist()) == [0, 5] and sorted(test.labels.tolist()) == [0, 7, 154]
    train2, test2 = load_dataset("uav_csv2", None, "csv2", data_root=str(root))
    assert sorted(train2.labels.tolist()) == [0, 7] and sorted(test2.labels.tolist()) == [0, 5, 154]
    assert train.num_frames.tolist() == [30, 30]
    x = np.asarray(train.data[0])
    np.testing.assert_allclose(x[:, :30, 11, 0], 0, atol=1e-5)  # centred on the left hip
    assert train.meta["subject"].tolist() == [2, 2]


def test_missing_uav_dataset_says_how_to_prepare_it(tmp_path):
    from usdrl_bench.data.loading import load_dataset

    with pytest.raises(FileNotFoundError, match="usdrl-bench data prepare uav"):
        load_dataset("uav_csv1", None, "csv1", data_root=str(tmp_path))
