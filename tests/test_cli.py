"""The CLI end to end on a tiny configuration: run -> records -> report, cache reuse, bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from usdrl_bench.components import load_builtins
from usdrl_bench.cli import main


@pytest.fixture
def tiny_text(tiny_protocol) -> str:
    """The tiny protocol with a short linear evaluation, its data standing in for NTU-60 xsub."""
    return tiny_protocol("tiny_ablation", paper_setting="ntu60_xsub",
                         evaluations="linear: {epochs: 5, batch_size: 32, lr: 0.1, milestones: [], eval_every: 5}, "
                                     "knn: {k: 1}")


@pytest.fixture
def tiny_path(tiny_text: str, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_text)
    return path


@pytest.mark.slow
def test_run_report_and_cache(tmp_path, tiny_path, capsys):
    results, reports = tmp_path / "results", tmp_path / "reports"
    args = ["run", str(tiny_path), "--results", str(results), "--reports", str(reports), "--device", "cpu"]
    assert main(args) == 0
    files = sorted((results / "records").rglob("*.json"))
    assert len(files) == 4  # 2 rows x 2 evaluations
    rows = [r for f in files for r in json.loads(f.read_text())["rows"]]
    metrics = {(r["row_id"], r["metric"]) for r in rows}
    assert ("7", "linear_top1") in metrics and ("R-DSTE", "knn1_top1") in metrics
    assert all(0.0 <= r["value"] <= 100.0 for r in rows)
    ckpts = sorted((results / "checkpoints").glob("*/encoder.pt"))
    assert len(ckpts) == 2
    mtimes = [c.stat().st_mtime_ns for c in ckpts]
    # a finished protocol trains and evaluates nothing again
    assert main(args) == 0
    assert [c.stat().st_mtime_ns for c in ckpts] == mtimes
    assert sorted((results / "records").rglob("*.json")) == files
    assert main(["report", "--results", str(results), "--out", str(reports)]) == 0
    md = next(reports.glob("tiny_ablation__demo.md")).read_text()
    assert "85.2 (" in md and "Preset **demo**" in md  # the paper's Table 5 row 7 value beside ours
    # 3 classes x 10 subjects x 3 cameras x 1 sample, odd subjects train
    assert "45 train / 45 test samples" in md
    assert {(r["train_samples"], r["test_samples"]) for r in rows} == {(45, 45)}
    # embed with the pretrained checkpoint
    x = np.random.default_rng(0).normal(size=(3, 3, 20, 25, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["embed", "--checkpoint", str(ckpts[0]), "--data", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "f.npy")]) == 0
    assert np.load(tmp_path / "f.npy").shape == (3, 32)


def test_validate_reports_file_and_key(tiny_text, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_text.replace("epochs: 1,", "epochs: one,"))
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert str(bad) in out.replace("\n", "") and "pretrain.epochs" in out


def test_a_binary_protocol_file_is_named_by_validate_and_run(tmp_path, capsys):
    """A file of binary bytes (the wrong file given) is named, with what is wrong, by both commands; it used to
    print only the codec's message ("'utf-8' codec can't decode byte 0x90 ...")."""
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(bytes(range(0x80, 0x100)) * 4)
    assert main(["validate", str(garbage)]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert str(garbage) in out and "not a text file" in out
    assert main(["run", str(garbage), "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert str(garbage) in err and "not a text file" in err and "codec" not in err


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("dste", "sttr", "mgfd", "negative_contrastive", "synthetic", "ntu_raw", "linear", "knn"):
        assert name in out


@pytest.mark.parametrize("backbone", ["dste", "sttr"])
def test_embed_official_checkpoint_reproduces_official_features(official_fixtures, tmp_path, backbone):
    """``usdrl-bench embed`` on an official-format checkpoint: pooled and dense features equal the official
    code's outputs (FACTS §9; reference values in ``shared/fixtures/official_usdrl``)."""
    ckpt = official_fixtures / f"official_{backbone}_h32.pth.tar"
    data = official_fixtures / "parity_input.npy"
    pooled, dense = tmp_path / "f.npy", tmp_path / "d.npz"
    assert main(["embed", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(pooled), "--device", "cpu"]) == 0
    assert main(["embed", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(dense), "--dense",
                 "--device", "cpu"]) == 0
    got = {"features": np.load(pooled)}
    with np.load(dense) as z:
        got["dense_t"], got["dense_s"] = z["temporal"], z["spatial"]
    for name, value in got.items():
        expected = np.load(official_fixtures / f"expected_{backbone}_{name}.npy")
        assert value.shape == expected.shape, name
        assert np.abs(value - expected).max() <= 1e-5, name


@pytest.mark.slow
def test_seeds_accept_spaces_and_commas(capsys):
    from usdrl_bench.cli import _ints

    assert _ints(["0", "1", "2"]) == (0, 1, 2) == _ints(["0,1,2"]) == _ints(["0,1", "2"])
    assert _ints(None) is None
    protocol = Path(__file__).resolve().parents[1] / "protocols" / "table5_ablation.yaml"
    assert main(["run", str(protocol), "--seeds", "0", "x", "--results", "/nonexistent/never-written"]) == 2
    assert "--seeds must be integers" in capsys.readouterr().err


SWEEP = """\
name: tiny_sweep
version: 1
paper_table: fig4_alpha
rows:
  - {id: a0, label: "alpha 0", encoder: dste, objective: mgfd, encoder_options: {alpha: 0.0}, x: 0.0}
  - {id: a1, label: "alpha 1", encoder: dste, objective: mgfd, encoder_options: {alpha: 1.0}, x: 1.0}
  - {id: skipped, label: "not in the demo", encoder: sttr, objective: mgfd}
  - {id: R, label: "random init", encoder: dste, objective: null}
presets:
  demo:
    rows: [a0, a1, R]
    datasets:
      - {id: col_xsub, name: synthetic, split: xsub, paper_setting: ntu60_xsub,
         options: {num_classes: 3, samples_per_class_subject_camera: 1}}
      - {id: col_xview, name: synthetic, split: xview, paper_setting: ntu60_xview,
         options: {num_classes: 3, samples_per_class_subject_camera: 1}, evaluations: {knn: {k: 3}}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      knn: {k: 1}
      embedding: {num_classes: 3, methods: [tsne], perplexity: 5}
"""


@pytest.mark.slow
def test_multi_dataset_sweep_and_embedding(tmp_path):
    """A preset with two dataset columns (per-dataset evaluation options), a row subset, a sweep over
    ``x`` and the embedding evaluation: records per column, the sweep curve and the embedding panels."""
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    results, reports = tmp_path / "results", tmp_path / "reports"
    assert main(["run", str(path), "--results", str(results), "--reports", str(reports), "--device", "cpu"]) == 0
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {r["row_id"] for r in rows} == {"a0", "a1", "R"}  # the preset's rows only
    assert {(r["column"], r["metric"]) for r in rows if r["evaluation"] == "knn"} == {
        ("col_xsub", "knn1_top1"), ("col_xview", "knn3_top1")}  # the xview column's own k
    emb = [r for r in rows if r["evaluation"] == "embedding"]
    assert {r["metric"] for r in emb} == {"silhouette_features", "silhouette_tsne"}
    assert all((results / r["artifact"]).is_file() for r in emb)
    assert {r["row_x"] for r in rows} == {0.0, 1.0, None}
    names = {p.name for p in reports.iterdir()}
    assert {"tiny_sweep__demo__sweep.png", "tiny_sweep__demo__embedding.png", "tiny_sweep__demo__embedding__col_xview.png",
            "tiny_sweep__demo__loss.pdf", "tiny_sweep__demo.tex"} <= names
    md = (reports / "tiny_sweep__demo.md").read_text()
    assert "`col_xsub`" in md and "`col_xview`" in md and "stands in for the paper's ntu60_xview" in md


STREAMS = """\
name: tiny_streams
version: 1
paper_table: "1"
rows:
  - {id: J, label: "joint", encoder: dste, objective: mgfd, stream: joint}
  - {id: M, label: "motion", encoder: dste, objective: mgfd, stream: motion}
  - {id: B, label: "bone", encoder: dste, objective: mgfd, stream: bone}
  - {id: 3s, label: "J+M+B", ensemble: {rows: [J, M, B], weights: [2, 1, 1]}}
presets:
  demo:
    dataset: {name: synthetic, split: xsub, paper_setting: ntu60_xsub,
              options: {num_classes: 3, samples_per_class_subject_camera: 1}}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 16}
    evaluations:
      linear: {epochs: 5, batch_size: 32, lr: 0.1, milestones: [], eval_every: 5}
"""


@pytest.mark.slow
def test_streams_and_ensemble(tmp_path):
    """Rows pretrained on their own stream and a weighted score ensemble of them, recomputed here from the
    member rows' saved test scores; asking for the ensemble alone also runs its members."""
    from usdrl_bench.data.loading import load_dataset
    from usdrl_bench.evaluate.ensemble import ensemble_top1

    path = tmp_path / "streams.yaml"
    path.write_text(STREAMS)
    results = tmp_path / "results"
    assert main(["run", str(path), "--rows", "3s", "--results", str(results), "--reports", str(tmp_path / "r"),
                 "--device", "cpu"]) == 0
    rows = {r["row_id"]: r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]
            if r["metric"] == "linear_top1"}
    assert set(rows) == {"J", "M", "B", "3s"}
    assert [rows[k]["stream"] for k in ("J", "M", "B")] == ["joint", "motion", "bone"]
    assert len({rows[k]["checkpoint_hash"] for k in ("J", "M", "B")}) == 3  # one model per stream
    ens = rows["3s"]
    assert ens["stream"] == "joint+motion+bone" and ens["encoder"] == "dste" and "fusion rule" in ens["note"]
    _, test = load_dataset("synthetic", None, "xsub", num_classes=3, samples_per_class_subject_camera=1)
    scores = [np.load(results / rows[k]["artifact"]) for k in ("J", "M", "B")]
    assert ens["value"] == pytest.approx(ensemble_top1(scores, test.labels, [2, 1, 1]))
    # the official number's counterpart: each stream's classifier at its best evaluation, fused
    best = {r["row_id"]: r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]
            if r["metric"] == "linear_top1_best_of_evals"}
    assert set(best) == {"J", "M", "B", "3s"}
    best_scores = [np.load((results / rows[k]["artifact"]).with_name("test_probs_best.npy")) for k in ("J", "M", "B")]
    for k, s in zip("JMB", best_scores):  # the saved best scores give the member's best-of-evaluations number
        assert 100 * np.mean(s.argmax(1) == test.labels) == pytest.approx(best[k]["value"])
    assert best["3s"]["value"] == pytest.approx(ensemble_top1(best_scores, test.labels, [2, 1, 1]))


@pytest.mark.parametrize("row, message", [
    ('{id: 3s, label: x, ensemble: {rows: [J, X]}}', "unknown or invalid member"),
    ('{id: 3s, label: x, encoder: dste, ensemble: {rows: [J]}}', "give no encoder"),
    ('{id: 3s, label: x, ensemble: {rows: [J, M], weights: [1]}}', "2 rows but 1 weights"),
    ('{id: 3s, label: x}', "rows[3].encoder"),
])
def test_bad_ensemble_rows(tmp_path, capsys, row, message):
    path = tmp_path / "bad.yaml"
    path.write_text(STREAMS.replace('{id: 3s, label: "J+M+B", ensemble: {rows: [J, M, B], weights: [2, 1, 1]}}', row))
    assert main(["validate", str(path)]) == 1
    assert message in capsys.readouterr().out.replace("\n", "")


@pytest.mark.slow
def test_changing_one_cell_retrains_only_that_cell(tmp_path, tiny_path, tiny_text):
    results = tmp_path / "results"
    args = ["run", str(tiny_path), "--results", str(results), "--reports", str(tmp_path / "r"), "--device", "cpu"]
    assert main(args) == 0
    before = {p.parent.name: p.stat().st_mtime_ns for p in (results / "checkpoints").glob("*/encoder.pt")}
    changed = tmp_path / "changed.yaml"
    changed.write_text(tiny_text.replace('objective: mgfd}', 'objective: mgfd, objective_options: {xc: false}}'))
    assert main(["run", str(changed)] + args[2:]) == 0
    after = {p.parent.name: p.stat().st_mtime_ns for p in (results / "checkpoints").glob("*/encoder.pt")}
    new = set(after) - set(before)
    assert len(new) == 1  # row 7's new objective option: one new checkpoint
    assert all(after[k] == v for k, v in before.items())  # the random-init cell (and the old row 7) untouched
    config = json.loads((results / "checkpoints" / new.pop() / "config.json").read_text())
    assert config["row"]["id"] == "7" and config["objective_options"] == {"xc": False}


def test_reader_code_identity_covers_only_what_the_reader_uses():
    """A dataset's cache identity hashes its reader's module and what that module uses, not the whole
    data package: a new reader for another format leaves checkpoints of synthetic data valid, while a
    change to the synthetic generator or to the preprocessing it calls invalidates them."""
    from usdrl_bench import registry
    from usdrl_bench.code_identity import module_closure
    from usdrl_bench.protocols.plan import dataset_identity
    from usdrl_bench.protocols.spec import DatasetSpec

    load_builtins()
    closure = module_closure("usdrl_bench.data.synthetic.generator")
    assert {"usdrl_bench.data.synthetic.generator", "usdrl_bench.data.preprocess", "usdrl_bench.data.arrays",
            "usdrl_bench.skeleton"} <= closure
    assert not closure & {"usdrl_bench.data.readers.ntu_raw", "usdrl_bench.data.readers.msr_action3d", "usdrl_bench.data.readers.agcn"}
    assert "usdrl_bench.data.readers.ntu_raw" in module_closure("usdrl_bench.data.readers.agcn")  # agcn parses NTU names
    a = dataset_identity(DatasetSpec(name="synthetic", split="xsub"))
    b = dataset_identity(DatasetSpec(name="msr_action3d", path="/x", split="xsub"))
    assert a["reader_code"] != b["reader_code"]


@pytest.mark.slow
def test_prepared_raw_release_feeds_run_by_name(tmp_path, tiny_path, capsys):
    """The whole path a user takes: raw .skeleton tree -> `data prepare` into the data root -> `run
    --dataset ntu60_xsub --data-root ...`; and the missing dataset's message before that."""
    from usdrl_bench.data.synthetic.raw import ntu_names, write_ntu_skeleton_tree

    root = tmp_path / "data"
    args = ["run", str(tiny_path), "--dataset", "ntu60_xsub", "--data-root", str(root), "--rows", "R-DSTE",
            "--results", str(tmp_path / "results"), "--reports", str(tmp_path / "reports"), "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "ntu60_xsub not found" in err and "usdrl-bench data prepare ntu60" in err
    write_ntu_skeleton_tree(tmp_path / "raw", ntu_names([1], [1, 2], [1, 3], [1], [1, 2, 3]), min_frames=12, max_frames=16)
    assert main(["data", "prepare", "ntu60", "--raw", str(tmp_path / "raw"), "--data-root", str(root), "--workers", "1"]) == 0
    assert (root / "NTU-RGB-D-60-AGCN" / "xsub" / "train_data_joint.npy").is_file()
    assert main(args) == 0
    rows = [r for f in (tmp_path / "results" / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    assert {r["dataset"] for r in rows} == {"ntu60_xsub"} and {(r["train_samples"], r["test_samples"]) for r in rows} == {(6, 6)}


@pytest.mark.slow
def test_parallel_pretraining_trains_each_model_once(tmp_path, tiny_path, capsys):
    """--jobs 2 pretrains the missing checkpoints in two worker processes before the evaluations; the
    records then say how long each took, and a second run trains nothing."""
    results = tmp_path / "results"
    args = ["run", str(tiny_path), "--results", str(results), "--reports", str(tmp_path / "reports"),
            "--device", "cpu", "--jobs", "2"]
    assert main(args) == 0
    assert "pretrained 1 model, 2 at a time" in capsys.readouterr().err  # the random-init row needs none
    rows = [r for f in (results / "records").rglob("*.json") for r in json.loads(f.read_text())["rows"]]
    trained = {r["row_id"]: r["pretrain_wall_time_s"] for r in rows}
    assert trained["7"] > 0 and trained["R-DSTE"] == 0
    ckpts = sorted((results / "checkpoints").glob("*/encoder.pt"))
    mtimes = [c.stat().st_mtime_ns for c in ckpts]
    assert main(args) == 0
    assert "pretrained" not in capsys.readouterr().err
    assert [c.stat().st_mtime_ns for c in ckpts] == mtimes
    assert main(args[:-1] + ["0"]) == 2  # --jobs 0
