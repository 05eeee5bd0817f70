"""Registries and protocol validation: unknown names, keys and types are errors naming file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from usdrl_bench.components import load_builtins
from usdrl_bench import registry
from usdrl_bench.protocols.schema import ProtocolError
from usdrl_bench.api import protocol_path
from usdrl_bench.protocols.spec import expand_cells, load_protocol, parse_dataset_override

ROOT = Path(__file__).resolve().parents[1]


def test_registry_register_get_and_did_you_mean():
    reg = registry.Registry("widget")

    @reg.register("alpha", description="first")
    def alpha():
        return 1

    assert reg.get("alpha") is alpha
    assert reg.names() == ["alpha"] and "alpha" in reg and len(reg) == 1
    assert reg.entry("alpha").description == "first"
    with pytest.raises(KeyError, match=r"Unknown widget 'alpah'\. Did you mean: alpha\? Available: alpha"):
        reg.get("alpah")
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(lambda: 2)


def test_builtin_registries_are_populated():
    load_builtins()
    assert {"dste", "sttr"} <= set(registry.ENCODERS.names())
    assert {"mgfd", "negative_contrastive"} <= set(registry.OBJECTIVES.names())
    assert {"synthetic", "ntu_raw", "agcn", "msr_action3d"} <= set(registry.DATASETS.names())
    assert {"linear", "knn"} <= set(registry.EVALUATIONS.names())
    assert registry.ENCODERS.names("dst*") == ["dste"]


def test_table5_protocol_loads_and_expands():
    protocol = load_protocol(ROOT / "protocols" / "table5_ablation.yaml")
    assert [r.paper_row for r in protocol.rows if r.paper_row] == [1, 2, 3, 4, 5, 6, 7]
    assert {r.id for r in protocol.rows if r.objective is None} == {"R-STTR", "R-DSTE"}
    cells = expand_cells(protocol, "demo", seeds=(0, 1))
    assert len(cells) == 2 * len(protocol.rows)
    row6 = next(c for c in cells if c.row.id == "6")
    assert row6.objective_options == {"multi_grained": False}
    row1 = next(c for c in cells if c.row.id == "1")
    raw = yaml.safe_load((ROOT / "protocols" / "include" / "presets.yaml").read_text())  # included by table 5
    queue = raw["presets"]["demo"]["objective_options"]["negative_contrastive"]["queue_size"]
    assert row1.objective_options["queue_size"] == queue  # preset-level objective options apply


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
name: t
version: 1
rows:
  - {id: a, label: A, encoder: dste, objective: mgfd}
presets:
  demo:
    dataset: {name: synthetic}
    encoder_preset: tiny
    pretrain: {epochs: 1, batch_size: 8}
    evaluations: {knn: {k: 1}}
"""


@pytest.mark.parametrize(
    "old,new,key,message",
    [
        ("epochs: 1,", "epochs: one,", "presets.demo.pretrain.epochs", "expected an integer"),
        ("batch_size: 8}", "batch_size: 8, btach: 3}", "presets.demo.pretrain.btach", "unknown key"),
        ("encoder: dste", "encoder: dsté", "rows[0].encoder", "Unknown encoder"),
        ("objective: mgfd}", "objective: mgfd, objective_options: {xcc: false}}", "rows[0].objective_options.xcc", "unknown option"),
        ("objective: mgfd}", "objective: mgfd, objective_options: {xc: maybe}}", "rows[0].objective_options.xc", "expected true or false"),
        ("{knn: {k: 1}}", "{knn: {k: 1}, linaer: {}}", "presets.demo.evaluations.linaer", "Did you mean: linear"),
        ("{name: synthetic}", "{name: synthetic, split: xsetup}", "presets.demo.dataset.split", "unknown split"),
        ("{name: synthetic}", "{name: ntu_raw, path: /nonexistent/ntu}", "presets.demo.dataset.path", "does not exist"),
        ("version: 1\n", "", "version", "required key is missing"),
        ("batch_size: 8}", "batch_size: 8, views: {out_frames: 32}}", "presets.demo.pretrain.views.out_frames",
         "unknown key"),
        ("batch_size: 8}", "batch_size: 8, views: {min_scale: 0}}", "presets.demo.pretrain.views.min_scale",
         "must be > 0"),
        ("batch_size: 8}", "batch_size: 8, views: {min_scale: 0.6, max_scale: 0.5}}", "presets.demo.pretrain.views",
         "needs min_scale <= max_scale"),
        ("batch_size: 8}", "batch_size: 8, views: {rotation: 200}}", "presets.demo.pretrain.views.rotation",
         "must be <= 180"),
        # every pretraining option is range-checked where the protocol loads
        ("epochs: 1,", "epochs: -1,", "presets.demo.pretrain.epochs", "must be >= 1, got -1"),
        ("epochs: 1,", "epochs: 0,", "presets.demo.pretrain.epochs", "must be >= 1, got 0"),
        ("epochs: 1,", "epochs: 2.5,", "presets.demo.pretrain.epochs", "expected an integer, got 2.5"),
        ("epochs: 1,", "epochs: true,", "presets.demo.pretrain.epochs", "expected an integer, got True"),
        ("batch_size: 8}", "batch_size: 0}", "presets.demo.pretrain.batch_size", "must be >= 1"),
        ("batch_size: 8}", "batch_size: 8, lr: -0.1}", "presets.demo.pretrain.lr", "must be > 0"),
        ("batch_size: 8}", "batch_size: 8, lr: .nan}", "presets.demo.pretrain.lr", "must be"),
        ("batch_size: 8}", "batch_size: 8, weight_decay: -1}", "presets.demo.pretrain.weight_decay", "must be >= 0"),
        ("batch_size: 8}", "batch_size: 8, momentum: 1.5}", "presets.demo.pretrain.momentum", "must be < 1"),
        ("batch_size: 8}", "batch_size: 8, milestones: [0]}", "presets.demo.pretrain.milestones[0]", "must be >= 1"),
        ("epochs: 1,", "epochs: 4,", "presets.demo.pretrain", None),  # control: valid
        ("batch_size: 8}", "batch_size: 8, epochs: 4, milestones: [3, 2]}", "presets.demo.pretrain", "milestones must increase"),
        ("batch_size: 8}", "batch_size: 8, views: {p_shear: 1.5}}", "presets.demo.pretrain.views.p_shear", "must be <= 1"),
        ("batch_size: 8}", "batch_size: 8, views: {num_views: 0}}", "presets.demo.pretrain.views.num_views", "must be >= 1"),
        # encoders, objectives, evaluations and datasets
        ("encoder: dste", "encoder: dste, encoder_options: {alpha: 1.5}", "rows[0].encoder_options.alpha", "must be <= 1"),
        ("encoder: dste", "encoder: dste, encoder_options: {hidden_size: 0}", "rows[0].encoder_options.hidden_size",
         "must be >= 1"),
        ("encoder: dste", "encoder: dste, encoder_options: {hiden_size: 8}", "rows[0].encoder_options.hiden_size",
         "unknown option"),
        ("objective: mgfd}", "objective: mgfd, objective_options: {xc_weight: -1}}",
         "rows[0].objective_options.xc_weight", "must be >= 0"),
        ("objective: mgfd}", "objective: negative_contrastive, objective_options: {temperature: 0}}",
         "rows[0].objective_options.temperature", "must be > 0"),
        ("{knn: {k: 1}}", "{knn: {k: 0}}", "presets.demo.evaluations.knn.k", "must be >= 1, got 0"),
        ("{name: synthetic}", "{name: synthetic, options: {samples_per_class_subject_camera: 0}}",
         "presets.demo.dataset.options.samples_per_class_subject_camera", "must be >= 1"),
    ],
)
def test_bad_protocols_name_file_and_key(tmp_path, old, new, key, message):
    assert old in BASE
    path = _write(tmp_path, BASE.replace(old, new))
    if message is None:  # the control case loads
        expand_cells(load_protocol(path), "demo")
        return
    with pytest.raises(ProtocolError) as info:
        protocol = load_protocol(path)
        expand_cells(protocol, "demo")
    text = str(info.value)
    assert str(path) in text and key in text and message in text, text


def test_dataset_override_spelling():
    spec = parse_dataset_override("msr_action3d:../shared/data/msr_action3d", "xsub")
    assert (spec.name, spec.path, spec.split) == ("msr_action3d", "../shared/data/msr_action3d", "xsub")
    assert parse_dataset_override("synthetic").path is None


def test_include_merges_under_the_file(tmp_path):
    (tmp_path / "common.yaml").write_text(textwrap.dedent("""\
        presets:
          demo:
            encoder_preset: tiny
            pretrain: {epochs: 3, batch_size: 8, lr: 0.01}
            evaluations: {knn: {k: 1}}
        """))
    path = _write(tmp_path, """\
        include: common.yaml
        name: t
        version: 1
        rows:
          - {id: a, label: A, encoder: dste, objective: mgfd}
        presets:
          demo:
            dataset: {name: synthetic}
            pretrain: {epochs: 1}
        """)
    preset = load_protocol(path).presets["demo"]
    # the file's epochs over the included ones; the included batch size and lr kept
    assert (preset.pretrain.epochs, preset.pretrain.batch_size, preset.pretrain.lr) == (1, 8, 0.01)
    assert preset.encoder_preset == "tiny" and preset.evaluations == {"knn": {"k": 1}}


def test_include_errors_name_the_file(tmp_path):
    path = _write(tmp_path, "include: missing.yaml\nname: t\n")
    with pytest.raises(ProtocolError, match=r"p\.yaml: include: included file not found: missing\.yaml"):
        load_protocol(path)
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ProtocolError, match="circular include"):
        load_protocol(tmp_path / "a.yaml")


def test_evaluation_options_merge_preset_dataset_encoder(tmp_path):
    path = _write(tmp_path, """\
        name: t
        version: 1
        rows:
          - {id: d, label: D, encoder: dste, objective: mgfd}
          - {id: s, label: S, encoder: sttr, objective: mgfd}
        presets:
          demo:
            datasets:
              - {id: a, name: synthetic, split: xsub}
              - {id: b, name: synthetic, split: xview, evaluations: {linear: {lr: 0.5, epochs: 7}}}
            encoder_preset: tiny
            pretrain: {epochs: 1, batch_size: 8}
            evaluations: {linear: {lr: 0.1, epochs: 3}}
            encoder_evaluations: {sttr: {linear: {lr: 0.03}}}
        """)
    cells = expand_cells(load_protocol(path), "demo")
    got = {(c.row.id, c.dataset.column): (c.evaluations["linear"]["lr"], c.evaluations["linear"]["epochs"]) for c in cells}
    assert got == {("d", "a"): (0.1, 3), ("s", "a"): (0.03, 3), ("d", "b"): (0.5, 7), ("s", "b"): (0.03, 7)}
    bad = path.read_text().replace("{sttr: {linear: {lr: 0.03}}}", "{sttr: {knn: {k: 3}}}")
    path.write_text(bad)
    with pytest.raises(ProtocolError, match=r"encoder_evaluations\.sttr\.knn: not an evaluation of this preset"):
        load_protocol(path)


def test_pretraining_schedule_per_dataset(tmp_path):
    """``datasets[i].pretrain`` overrides the preset's schedule for that column only (the official PKU-MMD
    II schedule in table1's paper preset), checked like the preset's own keys."""
    path = _write(tmp_path, """\
        name: t
        version: 1
        rows:
          - {id: d, label: D, encoder: dste, objective: mgfd}
        presets:
          demo:
            datasets:
              - {id: a, name: synthetic, split: xsub}
              - {id: b, name: synthetic, split: xview, pretrain: {batch_size: 512, epochs: 1201, milestones: [801]}}
            encoder_preset: tiny
            pretrain: {epochs: 451, batch_size: 356, milestones: [351]}
            evaluations: {linear: {epochs: 3}}
        """)
    cells = {c.dataset.column: c for c in expand_cells(load_protocol(path), "demo")}
    assert (cells["a"].schedule.batch_size, cells["a"].schedule.epochs, cells["a"].schedule.milestones) == (356, 451, (351,))
    assert (cells["b"].schedule.batch_size, cells["b"].schedule.epochs, cells["b"].schedule.milestones) == (512, 1201, (801,))
    assert cells["b"].schedule.lr == cells["a"].schedule.lr
    path.write_text(path.read_text().replace("epochs: 1201", "epoch: 1201"))
    with pytest.raises(ProtocolError, match=r"datasets\[1\]\.pretrain\.epoch: unknown key \(did you mean 'epochs'\?\)"):
        load_protocol(path)

    from usdrl_bench.protocols.spec import Cell

    table1 = load_protocol(protocol_path("table1_linear"))
    paper = table1.presets["paper"]
    shipped = {d.column: Cell(table1, "paper", paper, table1.rows[0], d, 0) for d in paper.all_datasets}
    pku = shipped["pku2_xsub"]
    assert (pku.schedule.batch_size, pku.schedule.epochs, pku.schedule.milestones) == (512, 1201, (801,))
    assert pku.evaluations["linear"]["train_crop"] == 0.5 and pku.evaluations["linear"]["lr"] == 0.01
    ntu = shipped["ntu60_xsub"]
    assert (ntu.schedule.batch_size, ntu.schedule.epochs, ntu.schedule.milestones) == (356, 451, (351,))
    assert ntu.evaluations["linear"].get("train_crop", 1.0) == 1.0
