"""Dataset preparation from the raw releases (NTU RGB+D, PKU-MMD): official split counts, damaged files,
interruption and resumption, the AGCN and CTR-GCN pipelines against independent computations."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from usdrl_bench.data.preparation import prepare as prepare_module
from usdrl_bench.data.readers.agcn import load_agcn
from usdrl_bench.data.preparation.ntu_prepare import prepare_ntu
from usdrl_bench.data.synthetic.raw import ntu_names, write_ntu_skeleton_tree

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

# the official rules, written out here independently of the package (FACTS §2)
XSUB_TRAIN = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49, 50, 52, 53,
              54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103}


def _expected(names, missing, rule):
    kept = [n for n in names if n not in missing]
    train = [n for n in kept if rule(n)]
    return len(train), len(kept) - len(train)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A raw tree with official names over setups 1-2 and 18-19, subjects on both sides of every split,
    3 cameras, 2 repetitions, actions from NTU-60 and NTU-120; 3 samples on the missing list."""
    root = tmp_path_factory.mktemp("raw")
    names = ntu_names([1, 2, 18, 19], [1, 2, 3], [1, 3, 45, 48], [1, 2], [1, 50, 61])
    missing = [names[0], names[40], names[-1]]
    write_ntu_skeleton_tree(root, names, missing=missing, subfolders=2, min_frames=12, max_frames=20)
    return root, names, set(missing)


def _counts(out: Path) -> dict[str, int]:
    return {p: v["samples"] for p, v in json.loads((out / "manifest.json").read_text())["parts"].items()}


def test_split_counts_follow_the_official_rules(tree, tmp_path):
    root, names, missing = tree
    subject, camera, setup, action = (lambda n: int(n[9:12])), (lambda n: int(n[5:8])), (lambda n: int(n[1:4])), (lambda n: int(n[17:20]))
    ntu60 = [n for n in names if setup(n) <= 17 and action(n) <= 60]
    s60 = prepare_ntu("ntu60", root, tmp_path / "ntu60", workers=2, progress=False)
    xsub = _expected(ntu60, missing, lambda n: subject(n) in XSUB_TRAIN)
    xview = _expected(ntu60, missing, lambda n: camera(n) in (2, 3))
    assert _counts(tmp_path / "ntu60") == {"xsub/train": xsub[0], "xsub/val": xsub[1],
                                           "xview/train": xview[0], "xview/val": xview[1]}
    assert sorted(s60.excluded) == sorted(m for m in missing if m in ntu60)
    prepare_ntu("ntu120", root, tmp_path / "ntu120", workers=1, progress=False)
    xsub = _expected(names, missing, lambda n: subject(n) in XSUB_TRAIN)
    xset = _expected(names, missing, lambda n: setup(n) % 2 == 0)
    assert _counts(tmp_path / "ntu120") == {"xsub/train": xsub[0], "xsub/val": xsub[1],
                                            "xsetup/train": xset[0], "xsetup/val": xset[1]}
    # what load_agcn and the official code read: names with the suffix, 0-based labels, (N, 3, 300, 25, 2)
    train, test = load_agcn(tmp_path / "ntu120", "xset")
    assert train.data.shape[1:] == (3, 300, 25, 2) and len(train) == xset[0]
    assert all(train.meta["setup"] % 2 == 0) and all(test.meta["setup"] % 2 == 1)
    assert set(train.labels) <= {0, 49, 60} and train.num_classes == 120
    with open(tmp_path / "ntu120" / "xsetup" / "train_label.pkl", "rb") as fh:
        pickled_names, labels = pickle.load(fh)
    assert pickled_names[0].endswith(".skeleton") and labels == train.labels.tolist()
    manifest = json.loads((tmp_path / "ntu120" / "manifest.json").read_text())
    assert manifest["pipeline"] == "agcn" and manifest["release_complete"] is False
    assert manifest["official_counts_match"] is None  # an incomplete release is not checked
    assert sum(manifest["parts"]["xsub/train"]["class_histogram"]) == xsub[0]
    assert all(len(h) == 64 for h in manifest["parts"]["xsub/train"]["files"].values())


def test_damaged_file_is_skipped_named_and_the_rest_kept(tree, tmp_path, capsys):
    from usdrl_bench.cli import main

    root, names, missing = tree
    raw = tmp_path / "raw"
    files = [f for f in sorted(root.rglob("*.skeleton")) if int(f.stem[1:4]) <= 17 and int(f.stem[17:20]) <= 60][:12]
    raw.mkdir()
    for f in files + list(root.glob("*missing_skeletons.txt")):
        (raw / f.name).write_bytes(f.read_bytes())
    victim = next(f for f in sorted(raw.glob("*.skeleton")) if f.stem not in missing)
    lines = victim.read_text().splitlines()
    victim.write_text("\n".join(lines[:40]) + "\n" + lines[40][:10] + "\n")  # cut mid-line
    assert main(["data", "prepare", "ntu60", "--raw", str(raw), "--out", str(tmp_path / "out"), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{victim}:42: file ends early" in printed and "skipped" in printed
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = manifest["skipped"]
    assert entry["name"] == victim.stem and entry["line"] == 42 and "ends early" in entry["reason"]
    written = sum(v["samples"] for k, v in manifest["parts"].items() if k.startswith("xsub/"))
    assert written == len([f for f in files if f.stem not in missing]) - 1
    # the other samples are intact: each equals its preparation from a clean tree
    clean = prepare_ntu("ntu60", root, tmp_path / "clean", workers=1, progress=False)
    assert clean.counts
    a_train, _ = load_agcn(tmp_path / "out", "xview")
    b_train, _ = load_agcn(tmp_path / "clean", "xview")
    index = {n: i for i, n in enumerate(b_train.names)}
    for i, n in enumerate(a_train.names):
        np.testing.assert_array_equal(a_train.data[i], b_train.data[index[n]])
    assert victim.stem not in a_train.names
    # --strict makes skipped files an error (exit status 3); the output is written all the same
    assert main(["data", "prepare", "ntu60", "--raw", str(raw), "--out", str(tmp_path / "strict"), "--strict"]) == 3
    assert (tmp_path / "strict" / "xsub" / "train_data_joint.npy").is_file()


def test_interrupted_preparation_resumes_to_byte_identical_files(tree, tmp_path, monkeypatch):
    root, _, _ = tree
    monkeypatch.setattr(prepare_module, "CHUNK_JOBS", 16)
    prepare_ntu("ntu60", root, tmp_path / "whole", workers=2, progress=False)

    class Stop(Exception):
        pass

    def stop_after_two(done: int) -> None:
        if done >= 32:
            raise Stop

    with pytest.raises(Stop):
        prepare_ntu("ntu60", root, tmp_path / "cut", workers=2, progress=False, on_chunk=stop_after_two)
    state = json.loads((tmp_path / "cut" / ".partial" / "progress.json").read_text())
    assert state["jobs_done"] == 32 and not (tmp_path / "cut" / "manifest.json").exists()
    # as if the run had died after saving the status of a third chunk but before its progress record
    status = np.load(tmp_path / "cut" / ".partial" / "status.npy")
    status[32:48] = 25
    np.save(tmp_path / "cut" / ".partial" / "status.npy", status)
    summary = prepare_ntu("ntu60", root, tmp_path / "cut", workers=1, progress=False)
    assert summary.resumed_from == 32
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    cut = sorted(p.relative_to(tmp_path / "cut") for p in (tmp_path / "cut").rglob("*") if p.is_file())
    assert whole == cut and not (tmp_path / "cut" / ".partial").exists()
    for rel in whole:
        assert (tmp_path / "whole" / rel).read_bytes() == (tmp_path / "cut" / rel).read_bytes(), rel
    # a partial run made with other options is refused, not mixed in
    with pytest.raises(Stop):
        prepare_ntu("ntu60", root, tmp_path / "mixed", workers=1, progress=False, on_chunk=stop_after_two)
    with pytest.raises(RuntimeError, match="other inputs or options"):
        prepare_ntu("ntu60", root, tmp_path / "mixed", workers=1, progress=False, pipeline="ctrgcn")


def _rodrigues(v: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction v to target (written here from the formula)."""
    a, b = v / np.linalg.norm(v), target / np.linalg.norm(target)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(a @ b)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]]) / s
    angle = np.arctan2(s, c)
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.mark.skipif(not (SHARED / "ntu60_raw").is_dir(), reason="needs ../shared/data/ntu60_raw (real NTU files)")
def test_agcn_pipeline_on_a_real_file_matches_an_independent_computation(tmp_path):
    name = "S001C001P001R001A010"  # one body
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / f"{name}.skeleton").write_bytes((SHARED / "ntu60_raw" / f"{name}.skeleton").read_bytes())
    prepare_ntu("ntu60", raw, tmp_path / "out", workers=1, progress=False, missing_lists=[])
    train, _ = load_agcn(tmp_path / "out", "xsub")
    got = np.asarray(train.data[0])  # 3, 300, 25, 2
    # independent reading of the text: frames, then per body 10 info values, 25, 25 joint lines
    lines = (raw / f"{name}.skeleton").read_text().split("\n")
    frames, pos, joints = int(lines[0]), 1, []
    for _ in range(frames):
        bodies = int(lines[pos]); pos += 1
        per = []
        for _b in range(bodies):
            pos += 2
            per.append([[float(v) for v in lines[pos + j].split()[:3]] for j in range(25)])
            pos += 25
        joints.append(per[0])
    x = np.array(joints)  # F, 25, 3
    centred = x - x[:, 1:2]  # centre: joint 2 (middle of spine) of each frame
    R = _rodrigues(centred[0, 8] - centred[0, 4], np.array([1.0, 0.0, 0.0]))  # shoulders of frame 0 to +x
    expected = centred @ R.T
    assert train.num_frames[0] == frames
    np.testing.assert_allclose(got[:, :frames, :, 0].transpose(1, 2, 0), expected, atol=2e-5)
    shoulders = got[:, 0, 8, 0] - got[:, 0, 4, 0]
    assert shoulders[0] > 0 and abs(shoulders[1]) < 1e-5 and abs(shoulders[2]) < 1e-5
    # the frames after the sequence repeat it from its start (2s-AGCN padding); body 2 is absent
    np.testing.assert_array_equal(got[:, frames:2 * frames, :, 0], got[:, :frames, :, 0][:, : min(frames, 300 - frames)])
    assert not got[..., 1].any()


def _skeleton(frames: list[list[tuple[str, np.ndarray]]]) -> str:
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for body_id, joints in bodies:
            out += [f"{body_id} 0 1 1 1 1 0 0 0 2", "25"]
            out += [f"{x:.6f} {y:.6f} {z:.6f} 0 0 0 0 0 0 0 0 2" for x, y, z in joints]
    return "\n".join(out) + "\n"


def test_ctrgcn_pipeline_denoises_orders_actors_and_translates(tmp_path):
    from usdrl_bench.data.preparation.ctrgcn import ctrgcn_sample

    rng = np.random.default_rng(0)
    F = 30

    def body(offset, motion, n):  # tall (y-spread > x-spread) bodies that move by `motion`
        base = np.stack([np.linspace(-0.2, 0.2, 25), np.linspace(-0.8, 0.8, 25), np.full(25, 3.0)], 1)
        return [base + offset + motion * np.array([np.sin(t / 3), 0, 0]) + 0.001 * rng.standard_normal((25, 3))
                for t in range(n)]

    calm, lively, noise = body(np.array([1.0, 0, 0]), 0.05, F), body(np.array([-1.0, 0, 0]), 0.5, F), body(np.zeros(3), 2.0, 8)
    frames = []
    for t in range(F):
        bodies = [("111", calm[t]), ("222", lively[t])]
        if t < 8:
            bodies.append(("333", noise[t]))  # present in 8 <= 11 frames: dropped as noise
        frames.append(bodies)
    frames.insert(5, [])  # a frame without bodies is dropped
    path = tmp_path / "S001C001P001R001A050.skeleton"
    path.write_text(_skeleton(frames))
    x, n = ctrgcn_sample(path)
    assert x.shape == (3, 300, 25, 2) and n == F
    # actor 1 = the body with the larger motion; origin = its joint 2 in its first frame; no rotation
    origin = lively[0][1]
    np.testing.assert_allclose(x[:, :F, :, 0].transpose(1, 2, 0), np.array(lively) - origin, atol=1e-5)
    np.testing.assert_allclose(x[:, :F, :, 1].transpose(1, 2, 0), np.array(calm) - origin, atol=1e-5)
    assert not x[:, F:].any()  # zero padding, no repetition


def test_row_writer_and_shrink(tmp_path):
    from usdrl_bench.data.npy_writer import NpyRowWriter, shrink_npy

    path = tmp_path / "a.npy"
    rows = np.arange(5 * 6, dtype=np.float32).reshape(5, 2, 3)
    with NpyRowWriter(path, (2, 3), 8) as w:
        w.write(3, rows[3])
        w.write(0, rows[:3])
        w.write(4, rows[4:])
        with pytest.raises(ValueError):
            w.write(7, rows[:2])
    with pytest.raises(ValueError, match="holds"):
        NpyRowWriter(path, (2, 4), 8)
    shrink_npy(path, 5)
    shrink_npy(path, 5)  # idempotent
    np.testing.assert_array_equal(np.load(path), rows)
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), rows)
    with pytest.raises(ValueError):
        shrink_npy(path, 6)


@pytest.mark.skipif(not (SHARED / "ntu60_raw").is_dir(), reason="needs ../shared/data/ntu60_raw (real NTU files)")
def test_both_pipelines_on_the_real_ntu_samples(tmp_path):
    agcn = prepare_ntu("ntu60", SHARED / "ntu60_raw", tmp_path / "agcn", workers=2, progress=False, missing_lists=[])
    ctr = prepare_ntu("ntu60", SHARED / "ntu60_raw", tmp_path / "ctr", workers=2, progress=False, pipeline="ctrgcn",
                      missing_lists=[])
    assert not agcn.skipped and not ctr.skipped
    stems = [f.stem for f in (SHARED / "ntu60_raw").glob("*.skeleton")]
    xsub = sum(int(n[9:12]) in XSUB_TRAIN for n in stems)
    xview = sum(int(n[5:8]) in (2, 3) for n in stems)
    assert agcn.counts == ctr.counts == {"xsub/train": xsub, "xsub/val": len(stems) - xsub,
                                         "xview/train": xview, "xview/val": len(stems) - xview}
    assert (xsub, len(stems) - xsub) == (65, 5)  # the data README: subjects 3 and 7 are the test subjects
    train, _ = load_agcn(tmp_path / "ctr", "xsub")
    mutual = np.array([int(n[17:20]) >= 50 for n in train.names])
    second = np.asarray(train.data[..., 1]).reshape(len(train), -1).any(axis=1)
    assert second[mutual].mean() > 0.9  # the interactions keep their second actor
    # CTR-GCN: translation only (joint 2 of actor 1's first frame at the origin), no rotation, zero padding
    x = np.asarray(train.data[0])
    np.testing.assert_allclose(x[:, 0, 1, 0], 0, atol=1e-6)
    assert not x[:, train.num_frames[0]:].any()


@pytest.mark.slow
def test_killed_preparation_resumes_to_byte_identical_files(tree, tmp_path):
    """SIGKILL in the middle of a run (no clean-up at all), then the same command again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, _, _ = tree
    script = (
        "import sys, time\n"
        "import usdrl_bench.data.preparation.prepare as p\n"
        "p.CHUNK_JOBS = 8\n"
        "from usdrl_bench.data.preparation.ntu_prepare import prepare_ntu\n"
        "slow = (lambda done: time.sleep(0.3)) if sys.argv[3] == 'slow' else None\n"
        "prepare_ntu('ntu60', sys.argv[1], sys.argv[2], workers=1, progress=False, on_chunk=slow)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(root), str(tmp_path / "whole"), "fast"], check=True)
    proc = subprocess.Popen([sys.executable, "-c", script, str(root), str(tmp_path / "cut"), "slow"])
    progress = tmp_path / "cut" / ".partial" / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if progress.is_file() and json.loads(progress.read_text() or "{}").get("jobs_done", 0) >= 24:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "manifest.json").exists()  # it died before the end
    subprocess.run([sys.executable, "-c", script, str(root), str(tmp_path / "cut"), "fast"], check=True)
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*") if p.is_file())
    cut = sorted(p.relative_to(tmp_path / "cut") for p in (tmp_path / "cut").rglob("*") if p.is_file())
    assert whole == cut
    for rel in whole:
        assert (tmp_path / "whole" / rel).read_bytes() == (tmp_path / "cut" / rel).read_bytes(), rel
