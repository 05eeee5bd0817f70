"""Readers: NTU raw .skeleton, the AGCN .npy/.pkl layout, MSR Action3D (hand-written files and the
real samples in ../shared/data)."""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import pytest

from usdrl_bench.data.readers.agcn import load_agcn, save_agcn
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.msr_action3d import load_msr_action3d, parse_msr_skeleton
from usdrl_bench.data.readers.ntu_raw import (
    body_energy,
    load_ntu_raw,
    parse_skeleton,
    read_missing_list,
    read_ntu_sample,
    read_skeleton_file,
)
from usdrl_bench.registry import DATASETS

# --- a hand-written .skeleton file ------------------------------------------------------------------


def _body(seed: int, spread: float) -> np.ndarray:
    """25 joints (x, y, z) around (0, 0, 3) with the given spread."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(scale=spread, size=(25, 3)) + [0.0, 0.0, 3.0], 4)


STILL = np.tile([[0.1, 0.2, 3.0]], (25, 1))  # every joint at one point: energy 0
WIDE = [_body(1, 0.5), _body(2, 0.5), _body(3, 0.5)]  # large spread: highest energy
NARROW = [_body(4, 0.1), _body(5, 0.1)]  # small spread

#: frames: 3 bodies / 0 bodies / 3 bodies / 2 bodies (STILL, WIDE, NARROW by slot)
FRAMES: list[list[np.ndarray]] = [[STILL, WIDE[0], NARROW[0]], [], [STILL, WIDE[1], NARROW[1]], [STILL, WIDE[2]]]


def _skeleton_text(frames: list[list[np.ndarray]], newline: str = "\n", trailing: str = "\n\n") -> str:
    lines = [str(len(frames))]
    for f, bodies in enumerate(frames):
        lines.append(str(len(bodies)))
        for b, joints in enumerate(bodies):
            lines.append(f"7205759403792{f}{b} 0 1 1 1 1 0 -0.08920905 -0.4797752 2")
            lines.append("25")
            for j, (x, y, z) in enumerate(joints):
                lines.append(f"{x:g} {y:g} {z:g} 163.9 187.6 710.6 506.5 0.62 -0.10 0.77 -0.04 {2 if j % 3 else 1}")
    return newline.join(lines) + trailing.replace("\n", newline)


def test_parse_hand_written_skeleton(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(_skeleton_text(FRAMES), newline="")
    bodies = read_skeleton_file(path)
    assert bodies.shape == (4, 4, 25, 3) and bodies.dtype == np.float32
    np.testing.assert_allclose(bodies[1, 0], WIDE[0], rtol=1e-6)
    np.testing.assert_allclose(bodies[2, 2], NARROW[1], rtol=1e-6)
    np.testing.assert_allclose(bodies[0, 3], STILL, rtol=1e-6)
    assert not bodies[:, 1].any(), "the 0-body frame is empty"
    assert not bodies[2, 3].any() and not bodies[3].any()

    energy = body_energy(bodies)
    assert energy[0] == 0 and energy[1] > energy[2] > 0 and energy[3] == 0
    present = np.stack([WIDE[0], WIDE[1], WIDE[2]]).reshape(-1, 3)
    assert energy[1] == pytest.approx(present.std(axis=0).sum(), rel=1e-5)

    x, n = read_ntu_sample(path, max_frames=10)
    assert x.shape == (3, 10, 25, 2) and n == 4
    np.testing.assert_allclose(x[:, 0, :, 0], WIDE[0].T, rtol=1e-6)  # top energy first
    np.testing.assert_allclose(x[:, 2, :, 1], NARROW[1].T, rtol=1e-6)  # then the narrow body
    assert not x[:, 3, :, 1].any() and not x[:, 4:].any()


def test_crlf_and_no_trailing_newline_parse_identically():
    lf = parse_skeleton(_skeleton_text(FRAMES))
    np.testing.assert_array_equal(parse_skeleton(_skeleton_text(FRAMES, newline="\r\n")), lf)
    np.testing.assert_array_equal(parse_skeleton(_skeleton_text(FRAMES, trailing="")), lf)


def test_truncation_keeps_energy_of_whole_sequence(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(_skeleton_text(FRAMES))
    x, n = read_ntu_sample(path, max_frames=2)
    assert x.shape == (3, 2, 25, 2) and n == 2
    np.testing.assert_allclose(x[:, 0, :, 0], WIDE[0].T, rtol=1e-6)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda t: t.replace("163.9 187.6 710.6 506.5 0.62 -0.10 0.77 -0.04 1", "163.9 187.6 710.6 506.5 0.62 -0.10 0.77 1", 1), "12 values"),
        (lambda t: t.replace("720575940379222 0 1 1 1 1 0", "720575940379222 0 1 1 1", 1), "body-info line with 10 values"),
        (lambda t: "four\n" + t.split("\n", 1)[1], "frame count"),
        (lambda t: "5\n" + t.split("\n", 1)[1], "file ends early"),
        (lambda t: t.replace("\n25\n", "\n24\n", 1), "expected 25 joints"),
        (lambda t: t.rstrip("\n") + "\n0\n1\n", "unexpected content after the last frame"),
    ],
    ids=["joint-columns", "body-info", "frame-count", "truncated", "joint-count", "extra-content"],
)
def test_malformed_skeleton_names_file_and_line(tmp_path, mutate, expected):
    good = _skeleton_text(FRAMES)
    bad = mutate(good)
    assert bad != good
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text(bad)
    with pytest.raises(DataFormatError, match=expected) as info:
        read_skeleton_file(path)
    err = info.value
    assert isinstance(err, ValueError) and err.file == str(path) and err.line is not None
    assert str(err).startswith(f"{path}:{err.line}: ")
    lines = bad.splitlines()
    assert 1 <= err.line <= len(lines) + 1


def test_malformed_line_numbers_exactly():
    text = _skeleton_text(FRAMES)
    lines = text.splitlines()
    # frame 3 (index 2), body 2: line of its 7th joint
    target = _line_of(text, "720575940379222 ") + 2 + 6
    lines[target - 1] = lines[target - 1].replace(" ", " abc ", 1).split(" abc ")[0] + " abc 1 2 3 4 5 6 7 8 9 10"
    with pytest.raises(DataFormatError, match="finite numbers") as info:
        parse_skeleton("\r\n".join(lines), "x.skeleton")
    assert info.value.line == target
    lines = text.splitlines()
    lines[4] = "1 2 3"  # first joint line of frame 1 body 1
    with pytest.raises(DataFormatError) as info:
        parse_skeleton("\n".join(lines), "x.skeleton")
    assert info.value.line == 5 and "x.skeleton:5:" in str(info.value)


# --- the ntu_raw reader on hand-written directories --------------------------------------------------


def _write_dir(directory: Path, names: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        frames = [[WIDE[i % 3] + 0.01 * k, NARROW[k % 2]] for k in range(3 + i)]
        (directory / f"{name}.skeleton").write_text(_skeleton_text(frames))
    return directory


def test_ntu_raw_reader_contract(tmp_path):
    names = ["S001C001P001R001A001", "S001C002P003R002A013", "S002C003P007R001A060", "S003C001P002R001A005"]
    d = _write_dir(tmp_path / "raw", names)
    (tmp_path / "missing.txt").write_text("two header\nsentences.\n\nS003C001P002R001A005\n")
    train, test = load_ntu_raw(d, "xsub", missing_list=tmp_path / "missing.txt", cache=False, max_frames=16)
    assert train.names == ["S001C001P001R001A001"] and test.names == ["S001C002P003R002A013", "S002C003P007R001A060"]
    assert train.shape == (1, 3, 16, 25, 2) and train.layout == "ntu25" and train.num_classes == 60
    assert test.labels.tolist() == [12, 59] and test.num_frames.tolist() == [4, 5]
    assert test.meta.to_dict("list") == {"subject": [3, 7], "camera": [2, 3], "setup": [1, 2], "repetition": [2, 1]}
    assert train.extra["excluded_missing"] == ["S003C001P002R001A005"] and train.source == str(d)
    assert train.class_names is None

    train, test = load_ntu_raw(d, "xview", missing_list=False, cache=False, max_frames=16)
    assert sorted(train.meta["camera"]) == [2, 3] and len(test) == 2
    train, test = load_ntu_raw(d, "xset", missing_list=False, cache=False, max_frames=16, num_classes=120)
    assert train.names == ["S002C003P007R001A060"] and train.num_classes == 120

    with pytest.raises(KeyError, match="xsub, xview, xset"):
        load_ntu_raw(d, "cross-subject", cache=False)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_ntu_raw(tmp_path / "nowhere", cache=False)
    with pytest.raises(ValueError, match="num_classes=50"):
        load_ntu_raw(d, missing_list=False, cache=False, num_classes=50, max_frames=8)
    (d / "notes.skeleton").write_text("1\n0\n")
    with pytest.raises(DataFormatError, match="notes.skeleton.*SsssCcccPpppRrrrAaaa"):
        load_ntu_raw(d, cache=False)


def test_missing_list_formats(tmp_path):
    official = tmp_path / "official.txt"
    official.write_text("302 of the captured samples...\nIf you are working...\n\nS001C002P005R002A008\nS001C002P006R001A008\n")
    bare = tmp_path / "bare.txt"
    bare.write_text("S001C002P005R002A008.skeleton\r\nS001C002P006R001A008\r\n")
    assert read_missing_list(official) == read_missing_list(bare) == {"S001C002P005R002A008", "S001C002P006R001A008"}
    broken = tmp_path / "broken.txt"
    broken.write_text("S001C002P005R002A008\nS001C002P006R001\n")
    with pytest.raises(DataFormatError) as info:
        read_missing_list(broken)
    assert info.value.line == 2


def test_registered():
    entry = DATASETS.entry("ntu_raw")
    assert entry.obj is load_ntu_raw and entry.meta["splits"] == ("xsub", "xview", "xset")
    assert DATASETS.get("agcn") is load_agcn and DATASETS.get("msr_action3d") is load_msr_action3d
    assert all(DATASETS.entry(n).meta["needs_path"] for n in ("ntu_raw", "agcn"))
    # MSR Action3D may also be addressed by name, under the data root
    assert not DATASETS.entry("msr_action3d").meta["needs_path"] and DATASETS.entry("msr_action3d").meta["named"]


# --- real NTU samples ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _fresh_ntu(directory: str, split: str):
    return load_ntu_raw(directory, split, cache=False)


def test_real_ntu_xsub(shared_data):
    train, test = _fresh_ntu(str(shared_data / "ntu60_raw"), "xsub")
    assert len(train) + len(test) == 70
    assert train.shape[1:] == test.shape[1:] == (3, 300, 25, 2) and train.data.dtype == np.float32
    assert set(test.meta["subject"]) == {3, 7}
    assert test.meta["subject"].value_counts().to_dict() == {7: 3, 3: 2}
    assert len(train) == 65 and not set(train.meta["subject"]) & {3, 7}
    for part in (train, test):
        actions = [int(n[-3:]) for n in part.names]
        assert part.labels.tolist() == [a - 1 for a in actions]
        assert part.num_classes == 60 and part.class_names[0] == "drink water" and len(part.class_names) == 60
        assert np.all((part.num_frames >= 1) & (part.num_frames <= 300))
        # normalised: middle of spine of body 0 at the origin, shoulders of frame 0 along +x
        np.testing.assert_allclose(part.data[:, :, :, 1, 0], 0, atol=1e-5)
        d = part.data[:, :, 0, 8, 0] - part.data[:, :, 0, 4, 0]
        assert np.all(d[:, 0] > 0)
        np.testing.assert_allclose(d[:, 1:], 0, atol=1e-5)
    # all 60 classes of subject P001
    p001 = [l for n, l in zip(train.names, train.labels) if "P001" in n]
    assert sorted(p001) == list(range(60))
    header = int((shared_data / "ntu60_raw" / "S001C001P001R001A001.skeleton").read_text().split()[0])
    assert train.num_frames[train.names.index("S001C001P001R001A001")] == header


def test_real_ntu_mutual_actions_have_two_bodies(shared_data):
    train, _ = _fresh_ntu(str(shared_data / "ntu60_raw"), "xsub")
    for i, name in enumerate(train.names):
        if "P001" in name and int(name[-3:]) >= 50:
            assert np.abs(train.data[i, ..., 1]).sum() > 0, f"{name}: second body is empty"


def test_real_ntu_crlf_files(shared_data):
    for stem in ("S001C001P003R002A005", "S001C001P004R001A017"):
        path = shared_data / "ntu60_raw" / f"{stem}.skeleton"
        raw = path.read_bytes()
        assert b"\r\n" in raw
        bodies = read_skeleton_file(path)
        assert bodies.shape[1] == int(raw.split()[0]) and np.abs(bodies[0]).sum() > 0
        np.testing.assert_array_equal(parse_skeleton(raw.decode().replace("\r\n", "\n")), bodies)


def test_real_ntu_other_splits(shared_data):
    train, test = _fresh_ntu(str(shared_data / "ntu60_raw"), "xview")
    assert (len(train), len(test)) == (7, 63) and set(test.meta["camera"]) == {1}
    train, test = _fresh_ntu(str(shared_data / "ntu60_raw"), "xset")
    assert (len(train), len(test)) == (3, 67) and set(train.meta["setup"]) == {2, 10}


def test_real_ntu_cache_round_trip(shared_data, tmp_path):
    fresh_train, fresh_test = _fresh_ntu(str(shared_data / "ntu60_raw"), "xsub")
    for _ in range(2):  # build, then load from the cache
        train, test = load_ntu_raw(shared_data / "ntu60_raw", "xsub", cache_dir=tmp_path)
        assert isinstance(train.data, np.memmap) and not train.data.flags.writeable
        for got, want in ((train, fresh_train), (test, fresh_test)):
            np.testing.assert_array_equal(np.asarray(got.data), want.data)
            assert got.names == want.names and np.array_equal(got.labels, want.labels)
            assert np.array_equal(got.num_frames, want.num_frames) and got.meta.equals(want.meta)
    (cache,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert {"data_joint.npy", "label.npy", "num_frame.npy", "meta.csv", "xsub_train_data_joint.npy"} <= {p.name for p in cache.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temporary leftovers"
    # another option gives another cache entry
    load_ntu_raw(shared_data / "ntu60_raw", "xview", cache_dir=tmp_path, align_z=True)
    assert len([p for p in tmp_path.iterdir()]) == 2


# --- AGCN layout ------------------------------------------------------------------------------------


def test_agcn_round_trip(shared_data, tmp_path):
    train, test = _fresh_ntu(str(shared_data / "ntu60_raw"), "xsub")
    save_agcn(tmp_path / "NTU-RGB-D-60-AGCN" / "xsub", train, test)
    with open(tmp_path / "NTU-RGB-D-60-AGCN" / "xsub" / "val_label.pkl", "rb") as fh:
        names, labels = pickle.load(fh)
    assert names == [n + ".skeleton" for n in test.names] and labels == test.labels.tolist()
    assert all(type(x) is int for x in labels)

    for args in ((tmp_path / "NTU-RGB-D-60-AGCN" / "xsub",), (tmp_path / "NTU-RGB-D-60-AGCN", "xsub")):
        got_train, got_test = load_agcn(*args)
        for got, want in ((got_train, train), (got_test, test)):
            assert isinstance(got.data, np.memmap)
            np.testing.assert_array_equal(got.data, want.data)
            assert got.names == want.names and np.array_equal(got.labels, want.labels)
            assert np.array_equal(got.num_frames, want.num_frames) and got.meta.equals(want.meta)
            assert got.num_classes == 60 and got.layout == "ntu25" and got.extra["split"] == "xsub"
    with pytest.raises(FileNotFoundError, match="train_data_joint.npy"):
        load_agcn(tmp_path / "NTU-RGB-D-60-AGCN", "xview")


def test_agcn_non_ntu_names(tmp_path):
    from usdrl_bench.data.arrays import SkeletonArrays
    import pandas as pd

    def arrays(names, labels):
        n = len(names)
        meta = pd.DataFrame({c: [-1] * n for c in ("subject", "camera", "setup", "repetition")})
        data = np.arange(n * 3 * 4 * 25 * 2, dtype=np.float32).reshape(n, 3, 4, 25, 2)
        return SkeletonArrays(data, labels, [4] * n, meta, names, num_classes=51, layout="ntu25")

    save_agcn(tmp_path / "xsetup", arrays(["0291-L.txt_0", "0291-L.txt_1"], [3, 7]), arrays(["0005-M.txt_0"], [50]))
    train, test = load_agcn(tmp_path, "xset")  # the official NTU-120 folder is named xsetup
    assert train.names == ["0291-L.txt_0", "0291-L.txt_1"] and test.labels.tolist() == [50]
    assert train.num_classes == 51 and (train.meta.to_numpy() == -1).all()
    assert load_agcn(tmp_path / "xsetup", num_classes=52)[0].num_classes == 52
    with pytest.raises(ValueError, match="outside"):
        load_agcn(tmp_path / "xsetup", num_classes=20)


# --- MSR Action3D --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _msr(directory: str):
    return load_msr_action3d(directory)


def test_msr_action3d(shared_data):
    train, test = _msr(str(shared_data / "msr_action3d"))
    assert len(train) + len(test) == 557
    assert (len(train), len(test)) == (284, 273)
    assert set(train.meta["subject"]) == {1, 3, 5, 7, 9} and set(test.meta["subject"]) == {2, 4, 6, 8, 10}
    assert train.shape[1:] == (3, 76, 20, 1) and train.layout == "kinect20"
    assert train.num_classes == 20 and len(train.class_names) == 20 and train.class_names[12] == "bend"
    assert set(train.labels) == set(test.labels) == set(range(20))
    assert train.labels.tolist() == [int(n[1:3]) - 1 for n in train.names]
    assert train.meta["repetition"].tolist() == [int(n[-2:]) for n in train.names]
    assert (train.meta[["camera", "setup"]] == -1).all().all()
    assert "a13_s09_e02" not in train.names + test.names  # all zeros; not in the common list
    assert np.all(train.num_frames >= 13)
    # normalised like NTU: spine (joint 4) at the origin, shoulders along +x
    np.testing.assert_allclose(train.data[:, :, :, 3, 0], 0, atol=1e-5)
    d = train.data[:, :, 0, 1, 0] - train.data[:, :, 0, 0, 0]
    assert np.all(d[:, 0] > 0) and np.abs(d[:, 1:]).max() < 1e-5
    # metres: shoulder widths of adults
    assert 0.2 < np.median(d[:, 0]) < 0.6


def test_msr_all_sequences_keep_the_zero_sample(shared_data):
    train, test = load_msr_action3d(shared_data / "msr_action3d", sequences="all", max_frames=80)
    assert len(train) + len(test) == 567
    i = test.names.index("a13_s09_e02") if "a13_s09_e02" in test.names else None
    part = test
    if i is None:
        part, i = train, train.names.index("a13_s09_e02")
    assert part.num_frames[i] == 38 and not np.asarray(part.data[i]).any()


def test_msr_malformed(tmp_path):
    good = "\n".join(f"{j * 0.1:.3f} 0.5 2.5 1.0" for j in range(40)) + "\n"
    assert parse_msr_skeleton(good).shape == (2, 20, 4)
    assert parse_msr_skeleton(good.replace("\n", "\r\n") + "\r\n").shape == (2, 20, 4)
    cases = {
        "rows": (good + "0 0 0 0\n", 41, "not a multiple of 20"),
        "columns": (good.replace("0.300 0.5 2.5 1.0", "0.300 0.5 2.5", 1), 4, "4 values"),
        "number": (good.replace("0.500 0.5", "0.5OO 0.5", 1), 6, "finite numbers"),
        "empty": ("\n\n", 1, "empty"),
    }
    for what, (text, line, message) in cases.items():
        path = tmp_path / f"a01_s01_e0{len(what)}_skeleton3D.txt"
        path.write_text(text)
        with pytest.raises(DataFormatError, match=message) as info:
            parse_msr_skeleton(path.read_text(), path)
        assert info.value.line == line, what
        assert str(info.value).startswith(f"{path}:{line}:")


def test_msr_reader_contract(tmp_path):
    d = tmp_path / "msr"
    d.mkdir()
    frame = "\n".join(f"{(j % 5) * 0.1:.3f} {j * 0.05:.3f} 2.5 1.0" for j in range(20))
    for name in ("a01_s01_e01", "a02_s02_e01", "a03_s03_e02"):
        (d / f"{name}_skeleton3D.txt").write_text("\n".join([frame] * (int(name[2]) + 1)))
    (d / "files_used_in_cvpr12_paper.txt").write_text("a01_s01_e01\r\na02_s02_e01\r\n")
    train, test = load_msr_action3d(d)
    assert train.names == ["a01_s01_e01"] and test.names == ["a02_s02_e01"] and train.shape == (1, 3, 3, 20, 1)
    train, _ = load_msr_action3d(d, sequences="all")
    assert train.names == ["a01_s01_e01", "a03_s03_e02"] and train.num_frames.tolist() == [2, 4]
    with pytest.raises(KeyError, match="xsub"):
        load_msr_action3d(d, "xview")
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_msr_action3d(tmp_path / "missing_dir")
    (d / "files_used_in_cvpr12_paper.txt").write_text("a01_s01_e01\na09_s09_e09\n")
    with pytest.raises(FileNotFoundError, match="a09_s09_e09"):
        load_msr_action3d(d)
