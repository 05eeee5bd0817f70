"""Readers of the other common formats (CTR-GCN npz, pyskl pickle, the USDRL code's PKU pickles), PKU-MMD
preparation, and datasets addressed by name under a data root."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.formats import load_ctrgcn_npz, load_pku_pickle, load_pyskl, read_pku_v1_windows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _joints(rng, n, t, m=2):
    x = rng.standard_normal((n, 3, t, 25, m)).astype(np.float32)
    x[:, :, t - 3 :] = 0  # trailing padding
    return x


def test_ctrgcn_npz_layout_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = {p: _joints(rng, n, 20) for p, n in (("train", 5), ("test", 3))}
    y = {p: np.eye(60)[rng.integers(0, 60, len(v))] for p, v in x.items()}
    # the CTR-GCN row layout: per frame, body 1's 25 joints x xyz, then body 2's
    flat = {p: v.transpose(0, 2, 4, 3, 1).reshape(len(v), 20, 150) for p, v in x.items()}
    np.savez(tmp_path / "NTU60_CS.npz", x_train=flat["train"], y_train=y["train"], x_test=flat["test"], y_test=y["test"])
    train, test = load_ctrgcn_npz(tmp_path, "xsub", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(train.data, x["train"])
    np.testing.assert_array_equal(test.data, x["test"])
    assert train.labels.tolist() == y["train"].argmax(1).tolist() and train.num_classes == 60
    assert (train.num_frames == 17).all()  # up to the last non-zero frame
    assert "CTR-GCN layout" in train.extra["assumed"]
    again, _ = load_ctrgcn_npz(tmp_path / "NTU60_CS.npz", "xsub", cache_dir=tmp_path / "cache")  # from the cache
    np.testing.assert_array_equal(again.data, x["train"])
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 20, 75)), y_train=np.eye(2), x_test=np.zeros((1, 20, 75)), y_test=np.eye(2)[:1])
    with pytest.raises(DataFormatError, match="150"):
        load_ctrgcn_npz(tmp_path / "bad.npz", cache_dir=tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="NTU60_CV.npz"):
        load_ctrgcn_npz(tmp_path, "xview", cache_dir=tmp_path / "cache")


@pytest.mark.skipif(not (SHARED / "ntu60_ctrgcn_npz").is_dir(), reason="needs ../shared/data/ntu60_ctrgcn_npz")
def test_ctrgcn_npz_real_samples(tmp_path):
    train, test = load_ctrgcn_npz(SHARED / "ntu60_ctrgcn_npz", "xview", cache_dir=tmp_path)
    assert len(train) == 11 and len(test) == 0 and train.data.shape[1:] == (3, 111, 25, 2)
    assert train.labels.tolist() == list(range(49, 60))  # S017C003P020R002A050-A060
    raw = np.load(SHARED / "ntu60_ctrgcn_npz" / "NTU60_CV.npz")["x_train"]
    np.testing.assert_array_equal(train.data[4, :, :, 7, 1], raw[4].reshape(111, 2, 25, 3)[:, 1, 7].T)
    assert train.data[:, :, :, :, 1].any()  # mutual actions: a second body


def test_pyskl_pickle(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"S001C00{c}P00{p}R001A00{a}" for c in (1, 2) for p in (1, 3) for a in (1, 2)]
    annotations = []
    for i, n in enumerate(names):
        m, t = 1 + i % 2, 10 + i
        annotations.append({"frame_dir": n, "label": int(n[-1]) - 1, "keypoint": rng.standard_normal((m, t, 25, 3)),
                            "total_frames": t})
    split = {"xsub_train": [n for n in names if "P001" in n], "xsub_val": [n for n in names if "P003" in n],
             "xview_train": [n for n in names if "C002" in n], "xview_val": [n for n in names if "C001" in n]}
    path = tmp_path / "ntu60_3danno.pkl"
    path.write_bytes(pickle.dumps({"split": split, "annotations": annotations}))
    train, test = load_pyskl(path, "xview", cache_dir=tmp_path / "cache")
    assert train.names == split["xview_train"] and (train.meta["camera"] == 2).all()
    by_name = {a["frame_dir"]: a for a in annotations}
    for i, n in enumerate(train.names):
        kp = by_name[n]["keypoint"]  # M, T, V, C
        np.testing.assert_allclose(train.data[i, :, : kp.shape[1], :, : kp.shape[0]], kp.transpose(3, 1, 2, 0), rtol=1e-6)
        assert train.num_frames[i] == kp.shape[1] and not train.data[i, :, kp.shape[1]:].any()
    assert train.data.shape[1:] == (3, 17, 25, 2) and train.layout == "ntu25"
    annotations[0]["keypoint"] = annotations[0]["keypoint"][..., :2]  # 2-D keypoints
    path.write_bytes(pickle.dumps({"split": split, "annotations": annotations}))
    with pytest.raises(DataFormatError, match="3-D"):
        load_pyskl(path, "xview", cache_dir=tmp_path / "cache2")
    with pytest.raises(DataFormatError, match="split keys"):
        load_pyskl(path, "xset", cache_dir=tmp_path / "cache2")


def test_pku_pickles(tmp_path):
    rng = np.random.default_rng(2)
    for part, n in (("train", 4), ("val", 2)):
        data = [rng.standard_normal((3, 30 + i, 25, 2)).astype(np.float32) for i in range(n)]
        (tmp_path / f"PKUv2_xsub_{part}.pkl").write_bytes(pickle.dumps(
            {"data": data, "num_frames": [30 + i for i in range(n)], "label": [1 + i for i in range(n)]}))
    train, test = load_pku_pickle(tmp_path)
    assert train.labels.tolist() == [0, 1, 2, 3] and train.num_classes == 51 and len(test) == 2
    assert train.num_frames.tolist() == [30, 31, 32, 33] and train.data.shape == (4, 3, 33, 25, 2)
    windows = [{"name": "0291-L.txt", "data": rng.standard_normal((3, 64, 25, 2)), "label": [0] * 32 + [7] * 32}
               for _ in range(3)]
    (tmp_path / "PKUv1_xsub_val.pkl").write_bytes(pickle.dumps(windows))
    data, labels, names = read_pku_v1_windows(tmp_path / "PKUv1_xsub_val.pkl")
    assert data.shape == (3, 3, 64, 25, 2) and labels[0, 31:33].tolist() == [0, 7] and names == ["0291-L.txt"] * 3
    windows[1]["label"] = [0] * 63
    (tmp_path / "PKUv1_xsub_val.pkl").write_bytes(pickle.dumps(windows))
    with pytest.raises(DataFormatError, match="window 1"):
        read_pku_v1_windows(tmp_path / "PKUv1_xsub_val.pkl")


def test_pku_preparation_from_a_synthetic_release(tmp_path):
    from usdrl_bench.data.readers.agcn import load_agcn
    from usdrl_bench.data.preparation.pku import prepare_pku, read_pku_labels
    from usdrl_bench.data.synthetic.raw import write_pku_release

    videos = {"0002-L": [(3, 40, 1), (8, 30, 2)], "0002-M": [(3, 35, 1)], "0291-L": [(8, 50, 1), (3, 45, 0), (12, 20, 1)]}
    write_pku_release(tmp_path / "raw", videos, train=["0002-L", "0002-M", "0003-M"], test=["0291-L"])
    (tmp_path / "raw" / "label" / "0002-M.txt").write_text("3,10,45,1\nthree,1,2,1\n")  # a malformed label file
    summary = prepare_pku("pku1", tmp_path / "raw", tmp_path / "out", workers=1, progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["missing_videos"] == ["0003-M"]
    assert manifest["label_errors"][0]["line"] == 2 and manifest["label_errors"][0]["name"] == "0002-M"
    assert summary.counts == {"xsub/train": 2, "xsub/val": 3}
    train, test = load_agcn(tmp_path / "out", "xsub", num_classes=51)
    assert train.names == ["0002-L.txt_0", "0002-L.txt_1"] and train.labels.tolist() == [2, 7]
    assert test.num_frames.tolist() == [50, 45, 20]
    # the untrimmed video and its per-frame labels (0 = background)
    video = np.load(tmp_path / "out" / "untrimmed" / "val" / "0291-L.npy")
    frames = np.load(tmp_path / "out" / "untrimmed" / "val" / "0291-L_label.npy")
    assert video.shape[0] == 3 and video.shape[2:] == (25, 2) and len(frames) == video.shape[1]
    for label, start, end, _ in read_pku_labels(tmp_path / "raw" / "label" / "0291-L.txt"):
        assert (frames[start:end] == label).all() and frames[start - 1] == 0
    assert (frames > 0).sum() == 50 + 45 + 20
    # a clip is the video's rows [start, end), normalised: centred on the spine joint per frame
    label, start, end, _ = read_pku_labels(tmp_path / "raw" / "label" / "0291-L.txt")[0]
    clip = np.asarray(test.data[0])
    np.testing.assert_allclose(clip[:, :50, 1, 0], 0, atol=1e-5)
    d_raw = np.linalg.norm(video[:, start:end, 3, 0] - video[:, start:end, 20, 0], axis=0)
    d_clip = np.linalg.norm(clip[:, :50, 3, 0] - clip[:, :50, 20, 0], axis=0)
    np.testing.assert_allclose(d_clip, d_raw, rtol=1e-4)  # a rigid motion keeps distances


@pytest.mark.skipif(not (SHARED / "pkummd_v1").is_dir(), reason="needs ../shared/data/pkummd_v1")
def test_pku1_preparation_on_real_videos(tmp_path):
    from usdrl_bench.data.preparation.pku import prepare_pku, read_pku_labels

    summary = prepare_pku("pku1", SHARED / "pkummd_v1", tmp_path / "out", workers=2, progress=False)
    manifest = summary.manifest
    assert len(manifest["untrimmed"]["videos"]) == 10 and len(manifest["missing_videos"]) == 1076 - 10
    label_dir = SHARED / "pkummd_v1" / "label"
    train = ["0005-M", "0006-M", "0015-M", "0016-M", "0025-M", "0026-M", "0160-M"]
    test = ["0309-M", "0310-M", "0312-R"]
    assert summary.counts["xsub/train"] == sum(len(read_pku_labels(label_dir / f"{v}.txt")) for v in train)
    assert summary.counts["xsub/val"] == sum(len(read_pku_labels(label_dir / f"{v}.txt")) for v in test)
    assert not summary.skipped


def test_named_datasets_resolve_under_the_data_root(tmp_path, monkeypatch):
    from usdrl_bench.data.readers.agcn import save_agcn
    from usdrl_bench.data.readers.named import locate
    from usdrl_bench.data.synthetic.generator import load_synthetic
    from usdrl_bench.components import load_builtins
    from usdrl_bench.registry import DATASETS

    load_builtins()
    monkeypatch.setenv("USDRL_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        locate("ntu120_xset")
    message = str(info.value)
    assert "NTU-RGB-D-120-AGCN/xsetup" in message and "usdrl-bench data prepare ntu120" in message
    assert "nturgbd_skeletons_s018_to_s032.zip" in message and str(tmp_path) in message
    train, test = load_synthetic(None, "xsub", num_classes=3, samples_per_class_subject_camera=1)
    save_agcn(tmp_path / "NTU-RGB-D-60-AGCN" / "xview", train, test)
    assert locate("ntu60_xview") == tmp_path / "NTU-RGB-D-60-AGCN" / "xview"  # the registered locate(root)
    a, b = DATASETS.get("ntu60_xview")(str(locate("ntu60_xview")), "xview")  # the reader receives the path
    assert len(a) == len(train) and a.num_classes == 60
    np.testing.assert_array_equal(a.data, train.data)
    with pytest.raises(FileNotFoundError, match="MSRAction3D"):
        locate("msr_action3d")
    with pytest.raises(FileNotFoundError, match="NTU-2D/ntu60_hrnet.pkl"):
        locate("ntu60_2d_xsub", tmp_path / "other")


@pytest.mark.slow
def test_run_refuses_a_split_with_an_empty_side(tmp_path, capsys):
    from usdrl_bench.cli import main

    x = np.zeros((4, 20, 150), dtype=np.float32)
    x[:, :5] = 1.0
    np.savez(tmp_path / "NTU60_CV.npz", x_train=x, y_train=np.eye(60)[:4], x_test=x[:0], y_test=np.eye(60)[:0])
    protocol = Path(__file__).resolve().parents[1] / "protocols" / "table5_ablation.yaml"
    code = main(["run", str(protocol), "--dataset", f"ctrgcn_npz:{tmp_path}", "--split", "xview", "--rows", "R-DSTE",
                 "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")])
    assert code == 2 and "the test part of split xview is empty (4 train / 0 test samples)" in capsys.readouterr().err
