"""NW-UCLA: the reader on files the tests write (always) and on the real release (when ../shared/data has it),
the named dataset under a data root, the preprocessing switches, and the rotation augmentation."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from usdrl_bench.data.augment import SampleKeys, make_views, random_rotation
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.loading import load_dataset
from usdrl_bench.data.readers.nwucla import ACTIONS, load_nwucla, locate_nwucla, preprocess
from usdrl_bench.skeleton import NWUCLA20, bone_stream

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "nwucla"


def _write(folder: Path, action: int, subject: int, episode: int, view: int, frames: int, seed: int = 0,
           label: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.3, (frames, 20, 3)) + np.array([0.1, 0.2, 3.0])
    name = f"a{action:02d}_s{subject:02d}_e{episode:02d}_v{view:02d}"
    label = ACTIONS.index(action) + 1 if label is None else label
    (folder / f"{name}.json").write_text(json.dumps({"file_name": name, "label": label, "skeletons": x.tolist()}))
    return x


@pytest.fixture()
def small(tmp_path):
    folder = tmp_path / "all_sqe"
    folder.mkdir()
    raw = {}
    for i, (a, s, v, t) in enumerate([(1, 1, 1, 5), (1, 1, 2, 7), (1, 1, 3, 4), (12, 2, 1, 1), (12, 2, 3, 9), (8, 3, 2, 3)]):
        raw[(a, s, v)] = _write(folder, a, s, 0, v, t, seed=i)
    return tmp_path, raw


def test_reader_on_small_files_splits_by_view_and_keeps_a_one_frame_sequence(small):
    root, raw = small
    train, test = load_nwucla(root)  # a folder holding all_sqe/ is accepted
    assert train.names == ["a01_s01_e00_v01", "a01_s01_e00_v02", "a08_s03_e00_v02", "a12_s02_e00_v01"]
    assert test.names == ["a01_s01_e00_v03", "a12_s02_e00_v03"]
    np.testing.assert_array_equal(train.labels, [0, 0, 6, 9])  # a08 is label 7, a12 label 10 (0-based 6, 9)
    np.testing.assert_array_equal(train.num_frames, [5, 7, 3, 1])
    assert train.shape == (4, 3, 9, 20, 1) and train.layout == "nwucla20" and train.num_classes == 10
    assert list(train.meta["camera"]) == [1, 2, 2, 1] and list(train.meta["subject"]) == [1, 1, 3, 2]
    # the one-frame sequence: kept, its frame centred and scaled, zero beyond it
    one = train.data[3, :, :, :, 0].transpose(1, 2, 0)  # (T, V, C)
    np.testing.assert_allclose(one[0], preprocess(raw[(12, 2, 1)])[0], atol=1e-6)
    assert not one[1:].any()
    # the default preprocessing is CTR-GCN's: first-frame spine centre, then per-axis min-max to [-1, 1]
    x = raw[(1, 1, 1)] - raw[(1, 1, 1)][0, 1]
    lo, hi = x.reshape(-1, 3).min(0), x.reshape(-1, 3).max(0)
    expected = (x - lo) / (hi - lo) * 2 - 1
    np.testing.assert_allclose(train.data[0, :, :5, :, 0].transpose(1, 2, 0), expected, atol=1e-5)


def test_preprocessing_switches():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.3, (6, 20, 3)) + np.array([0.5, 0.0, 3.0])
    none = preprocess(x, centre="none", scaling="none")
    np.testing.assert_allclose(none, x, atol=1e-6)
    per_frame = preprocess(x, centre="per_frame", scaling="none")
    np.testing.assert_allclose(per_frame[:, NWUCLA20.center], 0, atol=1e-6)
    aligned = preprocess(x, align="shoulders", scaling="none")
    v = aligned[0, NWUCLA20.right_shoulder] - aligned[0, NWUCLA20.left_shoulder]
    assert abs(v[2]) < 1e-5 and v[0] > 0  # shoulders along +x in the x-z plane
    np.testing.assert_allclose(aligned[..., 1], x[..., 1] - x[0, 1, 1], atol=1e-5)  # a rotation about y
    np.testing.assert_allclose(np.linalg.norm(aligned, axis=-1), np.linalg.norm(x - x[0, 1], axis=-1), atol=1e-5)
    torso = preprocess(x, scaling="torso")
    assert abs(np.linalg.norm(torso[:, 2] - torso[:, 1], axis=-1).mean() - 1) < 1e-5
    with pytest.raises(ValueError, match="scaling must be"):
        preprocess(x, scaling="zscore")


def test_damaged_files_are_named(tmp_path):
    _write(tmp_path, 1, 1, 0, 1, 3)
    bad = tmp_path / "a02_s01_e00_v01.json"
    bad.write_text('{"file_name": "a02_s01_e00_v01", "label": 2, "skeletons": [[[0, 0')
    with pytest.raises(DataFormatError, match=r"a02_s01_e00_v01\.json.*not valid JSON"):
        load_nwucla(tmp_path)
    bad.write_text(json.dumps({"file_name": "x", "label": 2, "skeletons": [[[0, 0, 0]] * 19]}))
    with pytest.raises(DataFormatError, match=r"a02_s01_e00_v01\.json: 'skeletons' must be T x 20 x 3"):
        load_nwucla(tmp_path)
    bad.write_text(json.dumps({"file_name": "x", "label": 3, "skeletons": [[[0, 0, 0]] * 20]}))
    with pytest.raises(DataFormatError, match="label 3 is action a03, but the file name says a02"):
        load_nwucla(tmp_path)
    bad.unlink()
    with pytest.raises(KeyError, match="Unknown split 'xsub'"):
        load_nwucla(tmp_path, "xsub")
    with pytest.raises(FileNotFoundError, match="no aAA_sSS_eEE_vVV.json files"):
        load_nwucla(tmp_path / "..")


def test_named_dataset_is_found_under_the_data_root(small, tmp_path, monkeypatch):
    root, _ = small
    data_root = tmp_path / "root"
    (data_root / "NW-UCLA").mkdir(parents=True)
    (root / "all_sqe").rename(data_root / "NW-UCLA" / "all_sqe")
    assert locate_nwucla(data_root) == data_root / "NW-UCLA" / "all_sqe"
    monkeypatch.setenv("USDRL_DATA", str(data_root))
    train, test = load_dataset("nwucla_xview", None, "xview")
    assert len(train) == 4 and len(test) == 2
    monkeypatch.setenv("USDRL_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"nwucla_xview not found: expected .*nwucla/all_sqe.*--data-root"):
        load_dataset("nwucla_xview", None, "xview")


def test_the_run_plan_locates_each_dataset_once_and_workers_read_its_answer(small, tmp_path, monkeypatch):
    """The data root travels once (run -> the plan's locations -> reader): the store locates a named dataset
    under its root with the registered locate(root); a store built from those locations (a worker's) reads the
    same files with no root at all, and refuses a dataset the plan did not locate. ``$USDRL_DATA`` is
    neither read (a root was given) nor written; the reader has no ``data_root`` option any more."""
    from rich.console import Console

    from usdrl_bench.protocols.plan import DataStore
    from usdrl_bench.protocols.schema import ProtocolError
    from usdrl_bench.protocols.spec import DatasetSpec, check_dataset

    root, _ = small
    data_root = tmp_path / "root"
    (data_root / "nwucla").mkdir(parents=True)
    (root / "all_sqe").rename(data_root / "nwucla" / "all_sqe")
    monkeypatch.setenv("USDRL_DATA", str(tmp_path / "elsewhere"))
    quiet = Console(quiet=True)
    spec = DatasetSpec(name="nwucla_xview")
    planner = DataStore(tmp_path / "r1", data_root, quiet)
    location = planner.locate(spec)
    assert location.path == str((data_root / "nwucla" / "all_sqe").resolve()) and location.missing is None
    train, test = planner.load(spec)
    assert (len(train), len(test)) == (4, 2)
    worker = DataStore(tmp_path / "r1", None, quiet, locations=planner.locations)
    train2, _ = worker.load(spec)
    np.testing.assert_array_equal(train.data, train2.data)
    with pytest.raises(RuntimeError, match="not located when the run was planned"):
        worker.load(DatasetSpec(name="synthetic"))
    assert os.environ["USDRL_DATA"] == str(tmp_path / "elsewhere")
    missing = DataStore(tmp_path / "r3", None, quiet)  # no root given: the environment's default
    assert "elsewhere" in (missing.locate(spec).missing or "")
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        missing.load(spec)
    with pytest.raises(ProtocolError, match="data_root"):
        check_dataset(DatasetSpec(name="nwucla_xview", options={"data_root": str(data_root)}), "p.yaml", "dataset",
                      data_root=data_root)


@pytest.mark.skipif(not REAL.is_dir(), reason="the NW-UCLA release is not in ../shared/data/nwucla")
def test_the_real_release():
    train, test = load_nwucla(REAL)
    assert (len(train), len(test)) == (1020, 464)
    split = pd.read_csv(REAL / "split_crossview.csv").set_index("file_name")
    for part, arrays in (("train", train), ("test", test)):
        rows = split.loc[arrays.names]
        assert (rows["split"] == part).all()
        np.testing.assert_array_equal(arrays.labels, rows["label"].to_numpy() - 1)
        np.testing.assert_array_equal(arrays.num_frames, rows["num_frames"].to_numpy())
        counts = np.bincount(arrays.labels, minlength=10)
        np.testing.assert_array_equal(counts, rows.groupby("label").size().reindex(range(1, 11)).to_numpy())
    one = train.names.index("a02_s09_e04_v02")
    assert train.num_frames[one] == 1 and np.isfinite(train.data).all()
    assert train.shape[2] == 201 and float(np.abs(train.data).max()) == pytest.approx(1.0)


def test_bones_follow_ctrgcn_pairs():
    x = np.zeros((1, 3, 1, 20, 1), dtype=np.float32)
    x[0, 0, 0, :, 0] = np.arange(20)
    b = bone_stream(x, NWUCLA20)[0, 0, 0, :, 0]
    assert b[0] == 0 - 1 and b[2] == 0 and b[3] == 3 - 2 and b[12] == 12 - 0 and b[8] == 8 - 2


def test_random_rotation_is_a_rotation_and_views_without_it_are_unchanged():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 20, 1)
    r = random_rotation(x, g, degrees=60)
    torch.testing.assert_close(r.norm(dim=1), x.norm(dim=1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(r, x)
    torch.testing.assert_close(random_rotation(x, torch.Generator().manual_seed(0), degrees=0), x)
    keys = SampleKeys(seed=3, epoch=0, index=torch.arange(4))
    n = torch.full((4,), 8)
    plain = make_views(x, n, 2, 8, generator=keys)
    with_rotation = make_views(x, n, 2, 8, generator=keys, rotation=30.0)
    again = make_views(x, n, 2, 8, generator=keys, rotation=0.0)
    for a, b in zip(plain, again):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(plain, with_rotation))


def test_the_normalisation_steps_are_public_blocks_a_plugin_dataset_applies(small, tmp_path):
    """A plug-in dataset for another 20-joint Kinect set, written from the public contract alone (its own layout,
    its own file reading), exposes NW-UCLA's preprocessing as its options through usdrl_bench.normalize_arrays and
    gets the NW-UCLA reader's arrays bit for bit; the building blocks also hold on hand-computed values."""
    import usdrl_bench
    from usdrl_bench import (Layout, SkeletonArrays, align_shoulders, centre_sequence, normalize_arrays,
                             register_dataset, register_layout, scale_sequence)
    from usdrl_bench.data import load_dataset
    from usdrl_bench.skeleton import NWUCLA20

    layout = register_layout(Layout("kinect_v1_plugin", tuple(f"j{i}" for i in range(20)), NWUCLA20.bones,
                                    center=1, left_shoulder=4, right_shoulder=8))

    @register_dataset("kinect_v1_plugin_set", splits=("xview",))
    def read(path, split, *, centre: str = "first_frame", align: str = "none", scaling: str = "minmax"):
        files = sorted(Path(path).glob("*.json"))
        seqs = [np.asarray(json.loads(f.read_text())["skeletons"], np.float32) for f in files]
        data = np.zeros((len(seqs), 3, max(len(s) for s in seqs), 20, 1), np.float32)
        for i, s in enumerate(seqs):
            data[i, :, :len(s), :, 0] = s.transpose(2, 0, 1)
        views = [int(f.stem[-2:]) for f in files]
        meta = pd.DataFrame({"subject": 1, "camera": views, "setup": -1, "repetition": -1})
        labels = np.array([json.loads(f.read_text())["label"] - 1 for f in files])
        full = SkeletonArrays(data=data, labels=labels, num_frames=np.array([len(s) for s in seqs]), meta=meta,
                              names=[f.stem for f in files], num_classes=10, layout=layout.name)
        full = normalize_arrays(full, centre=centre, align=align, scaling=scaling, neck=2)
        train = np.array([v != 3 for v in views])
        return full.subset(np.flatnonzero(train)), full.subset(np.flatnonzero(~train))

    root, raw = small
    for options in ({}, {"align": "shoulders", "scaling": "torso"}, {"centre": "per_frame", "scaling": "none"}):
        mine = load_dataset("kinect_v1_plugin_set", root / "all_sqe", **options)
        ref = load_nwucla(root, **options)
        for a, b in zip(mine, ref):
            assert a.names == b.names
            np.testing.assert_array_equal(a.data[:, :, :b.data.shape[2]], b.data)
    # hand-computed: the centre joint of frame 0 at the origin; shoulders along +x; unit mean torso; [-1, 1] axes
    x = np.random.default_rng(0).normal(size=(4, 20, 3))
    c = centre_sequence(x, layout, "first_frame")
    np.testing.assert_allclose(c[0, 1], 0, atol=1e-12)
    np.testing.assert_allclose(c[2] - c[1], x[2] - x[1])
    a = align_shoulders(c, layout)
    v = a[0, 8] - a[0, 4]
    assert abs(v[2]) < 1e-12 and v[0] > 0 and np.isclose(np.linalg.norm(v), np.linalg.norm(c[0, 8] - c[0, 4]))
    t = scale_sequence(a, layout, "torso")  # default neck: the shoulders' midpoint
    assert np.isclose(np.linalg.norm((t[:, 4] + t[:, 8]) / 2 - t[:, 1], axis=-1).mean(), 1.0)
    m = scale_sequence(a, layout, "minmax")
    np.testing.assert_allclose(m.reshape(-1, 3).min(0), -1) and np.testing.assert_allclose(m.reshape(-1, 3).max(0), 1)
    with pytest.raises(ValueError, match="needs 3-D joints"):
        align_shoulders(x[..., :2], layout)
    with pytest.raises(ValueError, match="V = 20"):
        centre_sequence(x[:, :10], layout)
    assert usdrl_bench.normalize_arrays is normalize_arrays


def test_a_datasets_normalize_key_applies_the_blocks_to_any_reader(small, tmp_path):
    """`normalize:` on a protocol's dataset applies the public blocks after any reader (here the raw NW-UCLA
    reading, then the NW-UCLA steps: the reader's own options give the same arrays); it enters the data's
    identity only when set, so the keys of data without it do not change."""
    from rich.console import Console

    from usdrl_bench import Normalization
    from usdrl_bench.protocols.plan import DataStore, data_identity
    from usdrl_bench.protocols.spec import DatasetSpec

    root, _ = small
    raw = {"centre": "none", "scaling": "none"}
    store = DataStore(tmp_path / "r", None, Console(quiet=True))
    plain = DatasetSpec(name="nwucla", path=str(root), options=raw)
    steps = Normalization(centre="first_frame", align="shoulders", scaling="torso", neck=2)
    normalized = DatasetSpec(name="nwucla", path=str(root), options=raw, normalize=steps)
    mine = store.load(normalized)
    ref = load_nwucla(root, align="shoulders", scaling="torso")
    for a, b in zip(mine, ref):
        np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(store.load(plain)[0].data, mine[0].data)
    assert "normalize" not in data_identity(plain)
    assert data_identity(normalized)["normalize"] == {"centre": "first_frame", "align": "shoulders",
                                                      "scaling": "torso", "neck": 2}
    with pytest.raises(ValueError, match="Normalization.neck must be >= 0, got -1"):
        Normalization(neck=-1)
