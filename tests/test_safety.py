"""Nothing from a dataset or results folder runs code when loaded, no path built from data or protocol text
leaves its folder, and an unreadable cached file is moved aside and recomputed, not fatal."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from usdrl_bench.cli import main
from usdrl_bench.data.readers.agcn import read_label_pickle
from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.safe_pickle import load_pickle
from usdrl_bench.io import ensure_inside, is_safe_name


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a harmless stand-in for code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def safety_tiny(tiny_protocol) -> str:
    """The tiny protocol with row 7 only."""
    return tiny_protocol("safety_tiny", ("7",))


def test_a_label_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "train_label.pkl"
    path.write_bytes(pickle.dumps((["S001C001P001R001A001"], [_WritesMarker(marker)])))
    with pytest.raises(DataFormatError, match=r"train_label\.pkl.*refusing to load .*open"):
        read_label_pickle(path)
    assert not marker.exists()


def test_plain_dataset_pickles_still_load(tmp_path):
    path = tmp_path / "ann.pkl"
    obj = {"split": {"xsub_train": ["a"]}, "annotations": [{"keypoint": np.zeros((1, 5, 17, 3), np.float32),
                                                            "label": np.int64(3), "frame_dir": "a"}]}
    path.write_bytes(pickle.dumps(obj, protocol=4))
    loaded = load_pickle(path)
    assert loaded["annotations"][0]["keypoint"].shape == (1, 5, 17, 3) and loaded["annotations"][0]["label"] == 3
    path.write_bytes(b"not a pickle")
    with pytest.raises(DataFormatError, match="not a readable pickle"):
        load_pickle(path)


def test_a_planted_pretraining_state_runs_nothing_and_is_moved_aside(tmp_path, caplog):
    from usdrl_bench.data.synthetic.generator import generate_synthetic
    from usdrl_bench.encoders import create_encoder
    from usdrl_bench.objectives import create_objective
    from usdrl_bench.train.spec import PretrainSpec
    from usdrl_bench.train.pretrain import ENCODER_FILE, PretrainTarget, STATE_FILE, TrainingOptions, pretrain

    marker = tmp_path / "marker"
    work = tmp_path / "ckpt"
    work.mkdir()
    torch.save({"epoch": 1, "encoder": _WritesMarker(marker)}, work / STATE_FILE)
    train = generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)
    encoder = create_encoder("sttr", "tiny")
    result = pretrain(encoder, create_objective("mgfd", encoder), train, PretrainSpec(epochs=1, batch_size=8),
                      PretrainTarget(work, 0, torch.device("cpu")), TrainingOptions(tensorboard=False))
    assert not marker.exists()
    assert result.resumed_from_epoch == 0 and (work / ENCODER_FILE).exists()
    assert len(list(work.glob(f"{STATE_FILE}.unreadable-*"))) == 1
    assert "is unreadable" in caplog.text


@pytest.mark.slow
def test_a_truncated_cached_checkpoint_is_retrained(safety_tiny, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(safety_tiny)
    results = tmp_path / "results"
    args = ["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "rep"), "--jobs", "1"]
    assert main(args) == 0
    (ckpt,) = results.glob("checkpoints/*/encoder.pt")
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # a disk that filled up, a copy cut short
    for record in (results / "records").rglob("*.json"):
        record.unlink()  # the evaluation needs the checkpoint again
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "is unreadable" in err and "trained again" in err
    assert torch.load(ckpt, weights_only=True)["epochs"] == 1  # a whole checkpoint again
    assert len(list(ckpt.parent.glob("encoder.pt.unreadable-*"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("field, value, key", [
    ("row", "../../evil", "rows[0].id"),
    ("row", ".hidden", "rows[0].id"),
    ("name", "../outside", "name"),
    ("preset", "de/mo", "presets.de/mo"),
])
def test_protocol_names_cannot_leave_the_results_folder(safety_tiny, tmp_path, capsys, field, value, key):
    text = safety_tiny
    if field == "row":
        text = text.replace('id: "7"', f'id: "{value}"')
    elif field == "name":
        text = text.replace("name: safety_tiny", f'name: "{value}"')
    else:
        text = text.replace("  demo:", f'  "{value}":')
    (tmp_path / "p.yaml").write_text(text)
    code = main(["run", str(tmp_path / "p.yaml"), "--results", str(tmp_path / "results"), "--preset", value if field == "preset" else "demo"])
    assert code == 2
    err = capsys.readouterr().err
    assert "p.yaml" in err and key in err and "file name" in err
    assert not (tmp_path / "results").exists() and not (tmp_path.parent / "evil").exists()


def test_path_helpers():
    assert is_safe_name("S001C001P001R001A001") and is_safe_name("0002-L") and is_safe_name("3s-DSTE")
    for bad in ("..", "../x", "a/b", ".git", "", "a..b", None, 7):
        assert not is_safe_name(bad)
    root = Path("/tmp/results")
    assert ensure_inside(root / "a" / "b.json", root) == root / "a" / "b.json"
    with pytest.raises(ValueError, match="outside"):
        ensure_inside(root / ".." / "x.json", root)


def test_a_split_file_naming_paths_is_refused(tmp_path):
    from usdrl_bench.data.preparation.pku import read_split_file

    path = tmp_path / "cross-subject.txt"
    path.write_text("Training videos:\n0002-L, ../../../outside\nValidataion videos:\n0003-M\n")
    with pytest.raises(DataFormatError, match=r"cross-subject\.txt:2: video name '\.\./\.\./\.\./outside'"):
        read_split_file(path)
    path.write_text("Training videos:\n0002-L, 0002-M\nValidataion videos:\n0003-M\n")
    assert read_split_file(path) == (["0002-L", "0002-M"], ["0003-M"])


def _agcn_folder(root: Path, poison: str) -> Path:
    """A small AGCN-layout dataset (synthetic samples) with one poisoned training sample."""
    from usdrl_bench.data.readers.agcn import save_agcn
    from usdrl_bench.data.synthetic.generator import generate_synthetic

    train = generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)
    test = generate_synthetic(seed=1, num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=2)
    data = np.array(train.data)
    labels = np.array(train.labels)
    if poison == "nan":
        data[5, 0, 3, 4, 0] = np.nan
    if poison == "label":
        labels[4] = 60  # NTU names: 60 classes, labels 0..59
    train = type(train)(**{**train.__dict__, "data": data, "labels": labels})
    save_agcn(root / "xsub", train, test)
    return root


@pytest.mark.slow
def test_non_finite_coordinates_are_refused_naming_the_sample(safety_tiny, tmp_path, capsys):
    folder = _agcn_folder(tmp_path / "data", "nan")
    (tmp_path / "p.yaml").write_text(safety_tiny)
    code = main(["run", str(tmp_path / "p.yaml"), "--dataset", f"agcn:{folder}", "--split", "xsub",
                 "--results", str(tmp_path / "results"), "--jobs", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "training part), sample 5" in err and "non-finite" in err
    assert not list((tmp_path / "results").rglob("*.json"))  # no record was written from NaN features


def test_agcn_reader_refuses_a_label_outside_the_class_range_naming_the_sample(tmp_path):
    """NTU names give 60 classes; label 60 is not an extra, 61st class but an error naming the label
    file and the sample."""
    from usdrl_bench.data.readers.agcn import load_agcn

    folder = _agcn_folder(tmp_path / "data", "label")
    with pytest.raises(ValueError, match=r"train_label\.pkl: sample 4 \(S\d{3}C\d{3}P\d{3}R\d{3}A\d{3}.*\) has label 60, "
                                         r"outside \[0, 60\)"):
        load_agcn(folder, "xsub")
    clean = _agcn_folder(tmp_path / "clean", "none")
    train, _ = load_agcn(clean, "xsub")
    assert train.num_classes == 60


def test_labels_outside_the_class_range_are_refused():
    from usdrl_bench.data.loading import check_arrays
    from usdrl_bench.data.synthetic.generator import generate_synthetic

    arrays = generate_synthetic(num_classes=3, num_subjects=2, num_cameras=2, samples_per_class_subject_camera=1)
    labels = np.array(arrays.labels)
    labels[2] = 3
    bad = type(arrays)(**{**arrays.__dict__, "labels": labels})
    with pytest.raises(ValueError, match=r"sample 2 .*label 3 is outside \[0, 3\)"):
        check_arrays(bad, "training")
    check_arrays(arrays, "training")  # the untouched set passes


@pytest.mark.slow
def test_report_skips_a_bad_record_names_it_and_fails_at_the_end(safety_tiny, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(safety_tiny)
    results = tmp_path / "results"
    assert main(["run", str(tmp_path / "p.yaml"), "--results", str(results), "--reports", str(tmp_path / "rep"),
                 "--jobs", "1"]) == 0
    bad = results / "records" / "safety_tiny" / "demo" / "broken.json"
    bad.write_text('{"rows": [')  # a record cut short
    capsys.readouterr()
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "rep2")]) == 1
    captured = capsys.readouterr()
    assert "broken.json" in captured.err and "1 unreadable record file(s) skipped" in captured.err
    assert "DSTE, MG-FD with XC" in captured.out  # the other records are reported
    assert list((tmp_path / "rep2").glob("safety_tiny__demo*.md"))


@pytest.mark.slow
def test_evaluation_option_ranges_are_checked_before_any_work(tiny_protocol, tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(tiny_protocol("safety_tiny", ("7",), evaluations="knn: {k: 0}"))
    assert main(["validate", str(tmp_path / "p.yaml")]) == 1
    assert "presets.demo.evaluations.knn.k: must be >= 1, got 0" in capsys.readouterr().out
    (tmp_path / "q.yaml").write_text(tiny_protocol("safety_tiny", ("7",), evaluations="linear: {epochs: 10, milestones: [0]}"))
    assert main(["run", str(tmp_path / "q.yaml"), "--results", str(tmp_path / "results")]) == 2
    assert "presets.demo.evaluations.linear.milestones[0]: must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("evaluation, message", [
    ("semi: {ratios: [0.01, 1.5]}", "semi.ratios[1]: must be <= 1.0, got 1.5"),
    ("semi: {ratios: []}", "semi.ratios: needs at least 1 item(s), got []"),
    ("semi: {subset: balanced}", "semi.subset: expected one of 'random', 'stratified', got 'balanced'"),
    ("semi: {repeats: 0}", "semi.repeats: must be >= 1, got 0"),
    ("semi: {train_crop: [0.9, 0.5]}", "semi: train_crop must be [min_scale, max_scale] with min <= max"),
    ("embedding: {num_classes: 1}", "embedding.num_classes: must be >= 2, got 1"),
    ("embedding: {methods: [pca]}", "embedding.methods[0]: expected one of 'tsne', 'umap', got 'pca'"),
    ("detection: {data: {name: synthetic_untrimmed}, theta: 0}", "detection.theta: must be > 0.0, got 0"),
    ("detection: {data: {name: synthetic_untrimmed}, head: mlp}", "detection.head: expected one of 'linear', 'finetune', got 'mlp'"),
    ("detection: {data: {name: synthetic_untrimmed}, window: 0}", "detection.window: must be >= 1, got 0"),
    ("detection: {theta: 0.5}", "detection: data must be a mapping with the videos' reader name"),
    ("segmentation: {data: {name: synthetic_untrimmed}, thresholds: [0.5, 0]}", "segmentation.thresholds[1]: must be > 0.0, got 0"),
    ("linear: {train_crop: 0}", "linear.train_crop: must be > 0.0, got 0"),
    ("linear: {feature_norm: layer}", "linear.feature_norm: expected one of 'none', 'batchnorm', got 'layer'"),
    ("early: {ratios: [0.5, 0.501]}", "early: ratios must differ in whole percent"),
])
def test_every_evaluation_checks_its_option_ranges_at_load(tiny_protocol, tmp_path, capsys, evaluation, message):
    name = evaluation.split(":")[0]
    (tmp_path / "p.yaml").write_text(tiny_protocol("safety_tiny", ("7",), evaluations=evaluation))
    assert main(["validate", str(tmp_path / "p.yaml")]) == 1
    out = capsys.readouterr().out
    assert f"presets.demo.evaluations.{name}" in out and message in out, out


@pytest.mark.parametrize("line, message", [
    ("3,50,40,0.9", "0 <= start <= end"),
    ("3,-5,40,0.9", "0 <= start <= end"),
    ("0,5,40,0.9", "label 0 is not in 1..51"),
    ("52,5,40,0.9", "label 52 is not in 1..51"),
    ("3,5,40,nan", "NaN or infinity"),
    ("3.5,5,40,0.9", "label 3.5"),
])
def test_score_detection_validates_proposal_lines(tmp_path, capsys, line, message):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir()
    pred.mkdir()
    (gt / "v1.txt").write_text("3,10,40,1\n")
    (pred / "v1.txt").write_text(f"3,12,41,0.5\n{line}\n")
    assert main(["score-detection", "--gt", str(gt), "--pred", str(pred)]) == 2
    err = capsys.readouterr().err
    assert "v1.txt:2:" in err and message in err


def test_score_detection_refuses_zero_actions(tmp_path, capsys):
    for d in ("gt", "pred"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "v1.txt").write_text("3,10,40,1\n")
    assert main(["score-detection", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"),
                 "--num-actions", "0"]) == 2
    assert "num_actions must be a positive number" in capsys.readouterr().err


def test_embed_checks_its_output_before_any_work(tmp_path, capsys, official_fixtures, monkeypatch):
    import usdrl_bench.api as api

    def fail(*args, **kwargs):
        raise AssertionError("the encoder was loaded although the output cannot be written")

    monkeypatch.setattr(api, "load_encoder", fail)
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["embed", "--checkpoint", str(official_fixtures / "official_dste_h32.pth.tar"), "--data",
                 str(official_fixtures / "parity_input.npy"), "--out", str(blocker / "features.npy")])
    assert code == 2
    assert "cannot write there" in capsys.readouterr().err


@pytest.mark.slow
def test_workers_end_when_the_main_process_is_killed(tmp_path):
    """The pretraining workers' initialiser asks for SIGTERM on the parent's death: a main process killed
    with -9 leaves no worker behind."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "main.py"
    script.write_text(
        "import multiprocessing, sys, time\n"
        "from usdrl_bench.io import die_with_parent\n"
        "def work():\n    die_with_parent()\n    time.sleep(120)\n"
        "if __name__ == '__main__':\n"
        "    p = multiprocessing.get_context('fork').Process(target=work)\n    p.start()\n"
        "    print(p.pid, flush=True)\n    time.sleep(120)\n")
    main_proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(main_proc.stdout.readline())
    time.sleep(0.5)
    os.kill(main_proc.pid, signal.SIGKILL)
    main_proc.wait()

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False
        return "\\nState:\\tZ" not in state  # a zombie has exited

    deadline = time.time() + 10
    while alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    assert not alive(worker)


@pytest.mark.slow
def test_an_unexpected_failure_is_one_line_and_the_traceback_needs_v(safety_tiny, tmp_path, capsys, monkeypatch):
    import usdrl_bench.protocols.training as runner

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "results" / "checkpoints" / "x" / "state.pt"))

    (tmp_path / "p.yaml").write_text(safety_tiny)
    monkeypatch.setattr(runner, "pretrain", disk_full)
    args = ["run", str(tmp_path / "p.yaml"), "--results", str(tmp_path / "results"), "--jobs", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "state.pt" in err and "Traceback" not in err
    with pytest.raises(OSError, match="No space left"):
        main(["-v", *args])


def test_a_full_disk_is_named_with_the_path_and_leaves_the_old_file(tmp_path, monkeypatch):
    """Whether the writer raises OSError(ENOSPC) or, as torch.save's zip writer does, a RuntimeError on a
    nearly full disk, the error is ENOSPC naming the file; the previous file and no temporary remain."""
    import errno
    import shutil
    from collections import namedtuple

    from usdrl_bench import io

    target = tmp_path / "state.pt"
    target.write_bytes(b"old")

    def enospc(p):
        p.write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        io.atomic_write(target, enospc)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert "no space left on the device while writing" in str(info.value) and str(target) in str(info.value)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["state.pt"]

    def torch_like(p):
        raise RuntimeError("[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file data/0: file write failed")

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10 << 30, 10 << 30, 1 << 20))  # 1 MiB left
    with pytest.raises(OSError) as info:
        io.atomic_write(target, torch_like)
    assert info.value.errno == errno.ENOSPC and "PytorchStreamWriter failed" in str(info.value)
    assert "1 MiB free" in str(info.value)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10 << 30, 1 << 30, 9 << 30))  # plenty: not the disk
    with pytest.raises(RuntimeError, match="PytorchStreamWriter"):
        io.atomic_write(target, torch_like)
    assert target.read_bytes() == b"old"


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_stops_every_pretraining_quietly_with_its_state_saved(tiny_protocol, tmp_path, jobs):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) during pretraining: each running
    pretraining saves its state inside its epoch and stops, idle workers say nothing, and the run says it once
    and exits 130; no traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import torch

    path = tmp_path / "p.yaml"
    path.write_text(tiny_protocol("ctrl_c", ("7", "5"), pretrain="epochs: 400, batch_size: 8"))
    results = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "-m", "usdrl_bench", "run", str(path), "--results", str(results),
                             "--jobs", str(jobs), "--no-tensorboard", "--log-every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:  # until the pretraining(s) have logged steps
        logs = list(results.glob("checkpoints/*/train_log.csv"))
        if len(logs) >= jobs and all(len(p.read_text().splitlines()) > 3 for p in logs):
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"no pretraining started: {proc.communicate()[1][-2000:]}")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert sum("interrupted" in line for line in err.splitlines()) == 1, err[-3000:]
    states = list(results.glob("checkpoints/*/state.pt"))
    assert len(states) == jobs and not list(results.glob("checkpoints/*/encoder.pt"))
    for state in states:
        saved = torch.load(state, weights_only=True)
        assert saved["epoch"] * 100 + saved["step"] > 0  # inside the run, not at its start
