"""The peers against their official code (SkeletonCLR, AimCLR, MAMP, CMD).

The references in tests/fixtures/official_peers/ were made by each method's own code at a recorded commit
(``generate.py`` beside them says how, with its shims): a checkpoint as the official training code saves it, the
features its linear evaluation classifies, and one optimisation step of its pretraining objective (logits, loss,
gradients, updated weights, queues) from non-trivial weights and given views, queues and masks. Here the suite
reads the same checkpoint through ``usdrl_bench.load_encoder(..., method=...)`` / ``load_official``, and must
give the same numbers; and what it writes with ``export_official`` must be the official file, key for key.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import usdrl_bench
from usdrl_bench import CheckpointMismatchError, create_encoder, get_layout, to_stream
from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.methods.official import official_method
from usdrl_bench.train.pretrain import PretrainTarget, TrainingOptions, build_optimizer, pretrain
from usdrl_bench.train.spec import PretrainSpec

FIXTURES = Path(__file__).parent / "fixtures" / "official_peers"
METHODS = ["skeletonclr", "aimclr", "mamp", "cmd"]
#: the optimiser of each official pretraining loop (processor / main_pretrain / pretrain_moco_cmd)
OPTIMISERS = {
    "skeletonclr": PretrainSpec(epochs=1, batch_size=4, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
    "aimclr": PretrainSpec(epochs=1, batch_size=4, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4),
    "mamp": PretrainSpec(epochs=1, batch_size=4, optimizer="adamw", lr=1e-3, betas=[0.9, 0.95], weight_decay=0.05,
                         no_decay_1d=True),
    "cmd": PretrainSpec(epochs=1, batch_size=4, optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4),
}


def _fixture(method: str) -> tuple[dict, dict, Path]:
    folder = FIXTURES / method
    meta = json.loads((folder / "meta.json").read_text())
    return torch.load(folder / "reference.pt", weights_only=True), meta, folder / "official_pretrain.pt"


def _close(ours: torch.Tensor, theirs: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    ours, theirs = ours.detach().float(), theirs.detach().float()
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs official {tuple(theirs.shape)}"
    assert torch.allclose(ours, theirs, rtol=rtol, atol=atol), \
        f"{what}: max |diff| {(ours - theirs).abs().max():.3g} (official max |value| {theirs.abs().max():.3g})"


def test_fixtures_record_their_official_commits():
    for method in METHODS:
        _, meta, _ = _fixture(method)
        repository, commit = official_method(method).repository, official_method(method).commit
        assert meta["repository"] == repository and meta["commit"].startswith(commit), (method, meta["commit"], commit)


# --- 1. official checkpoints give the official features --------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_official_checkpoint_gives_the_official_features(method):
    ref, meta, path = _fixture(method)
    encoder = usdrl_bench.load_encoder(path, method=method, **meta["official_args"])
    assert not encoder.training
    features = usdrl_bench.embed(encoder, ref["x"].numpy())
    _close(torch.from_numpy(features), ref["features"], f"{method} features")


def test_stgcn_partitions_equal_the_official_graphs():
    ref, _, _ = _fixture("aimclr")
    for official, layout in (("ntu-rgb+d", "ntu25"), ("nw-ucla", "nwucla20")):
        encoder = create_encoder("stgcn", None, num_joints=get_layout(layout).num_joints, num_bodies=1)
        assert torch.equal(encoder.A, ref["A"][official]), official


# --- 2. one optimisation step of the objective equals the official one -----------------------------------------
def _official_grads(fmt, encoder, objective) -> dict[str, torch.Tensor]:
    """The gradients under the official names: each parameter's gradient put in its place, then exported."""
    params = [p for m in (encoder, objective) for p in m.parameters()]
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.copy_(p.grad if p.grad is not None else torch.full_like(p, float("nan")))
    state = fmt.export(encoder, objective.state_dict())
    with torch.no_grad():
        for p, value in zip(params, saved):
            p.copy_(value)
    return state.get("model", state.get("state_dict", state))


def _flat(exported) -> dict[str, torch.Tensor]:
    return exported.get("model", exported.get("state_dict", exported))


def _views(method: str, ref: dict) -> list[torch.Tensor]:
    if method == "cmd":  # the official model derives motion and bone from each view (its NTU bone list)
        return [to_stream(v, m, get_layout("ntu25")) for v in ref["views"] for m in ("joint", "motion", "bone")]
    return list(ref["views"])


CASES = [("skeletonclr", "step"), ("aimclr", "step"), ("aimclr", "mining"), ("mamp", "step"), ("cmd", "step")]


@pytest.mark.parametrize("method,phase", CASES)
def test_one_step_equals_the_official_step(method, phase, monkeypatch):
    ref, meta, path = _fixture(method)
    step = ref[phase]
    model = usdrl_bench.load_official(path, method, **meta["pretrain_args"])
    encoder, objective = model.encoder.train(), model.objective.train()
    if phase == "mining":  # the official processor mines from epoch mining_epoch + 1
        objective.start_epoch(objective.mining_epoch, objective.mining_epoch + 1)
        assert objective.mining
    if method == "mamp":  # the masking's uniform noise, as the official torch.rand gave it
        noise, real = ref["noise"], torch.rand
        monkeypatch.setattr(torch, "rand", lambda *s, **k: noise.clone() if tuple(s) == tuple(noise.shape) else real(*s, **k))
    params = [p for m in (encoder, objective) for p in m.parameters() if p.requires_grad]
    optimizer, _ = build_optimizer(params, OPTIMISERS[method], torch.device("cpu"))
    loss, _ = objective(encoder, _views(method, ref))
    _close(loss, step["loss"], f"{method} {phase} loss", rtol=1e-5)
    optimizer.zero_grad()
    loss.backward()
    fmt = official_method(method).official_format
    grads = _official_grads(fmt, encoder, objective)
    # every parameter the official step trained has a gradient here, and nothing else has one
    trained = {k for k, g in grads.items() if torch.is_floating_point(g) and not torch.isnan(g).all()
               and k in step["after"] and k not in ("queue", "queue_motion", "queue_bone")}
    assert set(step["grads"]) <= trained, sorted(set(step["grads"]) - trained)
    # a bias before a training-mode BatchNorm has a zero true gradient: float noise, judged against the largest
    scale = max(g.abs().max().item() for g in step["grads"].values())
    for key, theirs in step["grads"].items():
        _close(grads[key], theirs, f"{method} {phase} gradient {key}", rtol=1e-4, atol=1e-4 * scale)
    optimizer.step()
    after = _flat(fmt.export(encoder, objective.state_dict()))
    assert set(after) == set(step["after"]), sorted(set(after) ^ set(step["after"]))
    lr = OPTIMISERS[method].lr
    for key, theirs in step["after"].items():
        ours = after[key]
        if key in step["grads"] and OPTIMISERS[method].optimizer == "adamw":
            # Adam's first step moves each weight by about lr * sign(gradient): where the official gradient is
            # float noise (a key bias: softmax ignores it), the sign is the noise's; those entries may differ by
            # up to 2 lr, every other entry matches
            noise = step["grads"][key].abs() <= 1e-4 * scale
            assert ((ours - theirs).abs()[noise] <= 2.1 * lr).all(), f"{method} {key}: a noise-gradient entry moved > 2 lr"
            ours, theirs = ours[~noise], theirs[~noise]
        if torch.is_floating_point(theirs):
            _close(ours, theirs, f"{method} {phase} after the step: {key}", rtol=1e-4, atol=1e-6)
        else:
            assert torch.equal(after[key], theirs), f"{method} {phase} after the step: {key}"


def test_moco_logits_equal_the_official_logits():
    """The logits themselves, where the official forward returns them: SkeletonCLR's and AimCLR's ``[l_pos,
    l_neg] / T`` against the given queue, and AimCLR's mined positive set; CMD's three modalities."""
    from baselines.moco import moco_logits

    for method, phase in (("skeletonclr", "step"), ("aimclr", "step"), ("aimclr", "mining")):
        ref, meta, path = _fixture(method)
        model = usdrl_bench.load_official(path, method, **meta["pretrain_args"])
        encoder, objective = model.encoder.train(), model.objective.train()
        query_view = ref["views"][0 if method == "skeletonclr" else 1]
        key_view = ref["views"][1 if method == "skeletonclr" else 2]
        query = objective.project(encoder(query_view))
        key = objective.keys(encoder, key_view)
        logits = moco_logits(query, key, objective.queue.snapshot(), objective.temperature)
        _close(logits, ref[phase]["logits"], f"{method} {phase} logits", rtol=1e-4, atol=1e-4)
    ref, meta, path = _fixture("cmd")
    model = usdrl_bench.load_official(path, "cmd", **meta["pretrain_args"])
    encoder, objective = model.encoder.train(), model.objective.train()
    views = _views("cmd", ref)
    for i, modality in enumerate(("joint", "motion", "bone")):
        query_encoder = encoder if modality == "joint" else objective.query_encoders[modality]
        query = torch.nn.functional.normalize(objective.heads[modality](query_encoder(views[i])), dim=1)
        with torch.no_grad():
            from baselines.moco import momentum_update
            momentum_update(query_encoder, objective.key_encoders[modality], objective.momentum)
            momentum_update(objective.heads[modality], objective.key_heads[modality], objective.momentum)
            key = torch.nn.functional.normalize(objective.key_heads[modality](objective.key_encoders[modality](views[3 + i])), dim=1)
        logits = moco_logits(query, key, objective.queues[modality].snapshot(), objective.temperature)
        _close(logits, ref["step"]["logits"][modality], f"cmd {modality} logits", rtol=1e-4, atol=1e-4)


def test_aimclr_mining_and_d3m_equal_the_official_ones():
    """The mined positive set (the union of each query's nearest queue entry) and the D3M targets: the official
    ``softmax(logits_e)`` and ``softmax(logits_ed)`` of the extreme and dropped extreme views."""
    from baselines.moco import moco_logits
    from baselines.skeletonclr import energy_drop, mined_positives

    ref, meta, path = _fixture("aimclr")
    model = usdrl_bench.load_official(path, "aimclr", **meta["pretrain_args"])
    encoder, objective = model.encoder.train(), model.objective.train()
    extreme, query_view, key_view = ref["views"]
    query = objective.project(encoder(query_view))
    feature_map = encoder.forward_map(extreme)
    q_e = objective.project(encoder.pool(feature_map, 2))
    q_ed = objective.project(encoder.pool(energy_drop(feature_map, objective.keep_prob), 2))
    key = objective.keys(encoder, key_view)
    queue = objective.queue.snapshot()
    logits = [moco_logits(q, key, queue, objective.temperature) for q in (query, q_e, q_ed)]
    assert torch.equal(mined_positives(logits, objective.topk), ref["mining"]["positives"])
    _close(torch.softmax(logits[1], dim=1), ref["step"]["softmax_e"], "aimclr softmax(logits_e)", atol=1e-6)
    _close(torch.softmax(logits[2], dim=1), ref["step"]["softmax_ed"], "aimclr softmax(logits_ed)", atol=1e-6)


def test_cmd_distillation_equals_the_official_six_terms():
    """CMD's six cross-modal KL terms with the given queues: the objective's ``cmd`` log is their batch mean."""
    ref, meta, path = _fixture("cmd")
    model = usdrl_bench.load_official(path, "cmd", **meta["pretrain_args"])
    encoder, objective = model.encoder.train(), model.objective.train()
    _, logs = objective(encoder, _views("cmd", ref))
    _close(logs["cmd"], ref["step"]["loss_cmd"], "cmd distillation", rtol=1e-5)


def test_mamp_mask_equals_the_official_mask():
    from baselines.mamp import motion_aware_mask, patchify

    ref, _, _ = _fixture("mamp")
    view = ref["views"][0]
    _, mask = motion_aware_mask(patchify(view, 4), 25, 0.9, 0.8, ref["noise"])
    assert torch.equal(mask, ref["step"]["mask"])


# --- 3. export: the official file, key for key, and back --------------------------------------------------------
@pytest.mark.parametrize("method", METHODS)
def test_export_writes_the_official_file(method, tmp_path):
    ref, meta, path = _fixture(method)
    model = usdrl_bench.load_official(path, method, **meta["pretrain_args"])
    fmt = official_method(method).official_format
    out = usdrl_bench.methods.official.export_official(model.encoder, model.objective.state_dict(), method,
                                                       tmp_path / "exported.pt")
    original = _flat(torch.load(path, weights_only=True, map_location="cpu") if method != "mamp" else
                     torch.load(path, weights_only=False, map_location="cpu"))
    exported_obj = torch.load(out, weights_only=True, map_location="cpu") if method != "mamp" else \
        torch.load(out, weights_only=False, map_location="cpu")
    exported = _flat(exported_obj)
    assert set(exported) == set(original), sorted(set(exported) ^ set(original))
    for key, value in original.items():
        assert exported[key].shape == value.shape and exported[key].dtype == value.dtype, key
        assert torch.equal(exported[key], value), key
    if method == "mamp":
        assert isinstance(exported_obj["args"], argparse.Namespace) and set(exported_obj) == set(
            torch.load(path, weights_only=False))
    again = usdrl_bench.load_encoder(out, method=method, **meta["official_args"])
    features = usdrl_bench.embed(again, ref["x"].numpy())
    _close(torch.from_numpy(features), ref["features"], f"{method} features after the round trip")
    del fmt


def _tiny_run(method: str, tmp_path: Path) -> Path:
    """A one-epoch suite pretraining of ``method`` on 8 random NTU-shaped samples; its checkpoint folder."""
    encoders = {"skeletonclr": ("stgcn", dict(hidden_channels=4, hidden_size=16, num_frames=16)),
                "aimclr": ("stgcn", dict(hidden_channels=4, hidden_size=16, num_frames=16)),
                "mamp": ("mamp_vit", dict(hidden_size=16, num_heads=2, num_layers=1, num_frames=16)),
                "cmd": ("bigru", dict(hidden_size=8, num_layers=2, num_frames=16))}
    objectives = {"skeletonclr": dict(queue_size=8), "aimclr": dict(queue_size=8, mining_epoch=1),
                  "mamp": dict(decoder_dim=8, decoder_depth=1, decoder_heads=2, min_length=8),
                  "cmd": dict(queue_size=8, topk=4)}
    name, options = encoders[method]
    encoder = create_encoder(name, None, num_joints=25, num_bodies=2, **options)
    from usdrl_bench.registry import OBJECTIVES

    objective = OBJECTIVES.get(official_method(method).objective)(encoder, **objectives[method])
    g = torch.Generator().manual_seed(0)
    data = torch.randn((8, 3, 20, 25, 2), generator=g).numpy()
    meta = pd.DataFrame({k: np.full(8, -1) for k in ("subject", "camera", "setup", "repetition")})
    train = SkeletonArrays(data=data, labels=np.arange(8) % 2, num_frames=np.full(8, 20), meta=meta,
                           names=[f"s{i}" for i in range(8)], num_classes=2, layout="ntu25", source="test")
    result = pretrain(encoder, objective, train, PretrainSpec(epochs=1, batch_size=4, lr=1e-3),
                      PretrainTarget(tmp_path, 0, torch.device("cpu")), TrainingOptions(tensorboard=False))
    return Path(result.checkpoint).parent


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_suite_checkpoint_exports_and_loads_back(method, tmp_path):
    folder = _tiny_run(method, tmp_path / "run")
    out = usdrl_bench.export_official(folder, method, tmp_path / "official.pt")
    suite = usdrl_bench.load_encoder(folder / "encoder.pt")
    back = usdrl_bench.load_official(out, method, num_frames=suite.config.num_frames)
    x = torch.randn((3, 3, suite.config.num_frames, 25, 2), generator=torch.Generator().manual_seed(1)).numpy()
    assert np.allclose(usdrl_bench.embed(back.encoder, x), usdrl_bench.embed(suite, x), rtol=1e-5, atol=1e-6)
    objective_state = torch.load(folder / "objective.pt", weights_only=True)
    assert back.objective is not None
    for key, value in objective_state.items():
        assert torch.equal(back.objective.state_dict()[key], value), key


# --- refusals ---------------------------------------------------------------------------------------------------
def test_a_file_of_another_method_is_refused_with_its_keys():
    _, _, path = _fixture("cmd")
    with pytest.raises(ValueError, match="mamp.*'model'"):
        usdrl_bench.load_encoder(path, method="mamp")
    with pytest.raises(ValueError, match="no 'encoder_q.\\*' keys"):
        usdrl_bench.load_encoder(path, method="aimclr")
    _, _, path = _fixture("skeletonclr")
    with pytest.raises(ValueError, match="expected CMD's"):
        usdrl_bench.load_encoder(path, method="cmd")
    _, _, path = _fixture("mamp")  # its argparse.Namespace is allow-listed for MAMP's format only
    with pytest.raises(ValueError, match="refused without running it.*argparse.Namespace"):
        usdrl_bench.load_encoder(path, method="aimclr")


def test_official_arguments_are_checked_against_the_file():
    _, meta, path = _fixture("skeletonclr")
    with pytest.raises(ValueError, match="hidden_channels=16 but the file's tensors give 4"):
        usdrl_bench.load_encoder(path, method="skeletonclr", **{**meta["official_args"], "hidden_channels": 16})
    with pytest.raises(TypeError, match="unknown official argument.*hiden_dim"):
        usdrl_bench.load_encoder(path, method="skeletonclr", hiden_dim=24)
    # arguments that do not shape the encoder are accepted and ignored
    usdrl_bench.load_encoder(path, method="skeletonclr", num_class=120, dropout=0.1, pretrain=False)


def test_a_file_holding_other_objects_is_refused_without_running_them(tmp_path):
    _, _, path = _fixture("mamp")
    obj = torch.load(path, weights_only=False)
    obj["args"] = pd.Timestamp("2026-01-01")  # an object outside the allow-list
    torch.save(obj, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="refused without running it"):
        usdrl_bench.load_encoder(tmp_path / "odd.pth", method="mamp")


def test_a_missing_key_is_named(tmp_path):
    _, meta, path = _fixture("cmd")
    obj = torch.load(path, weights_only=True)
    del obj["state_dict"]["encoder_q.encoder.gru.weight_hh_l1_reverse"]
    fmt = official_method("cmd").official_format
    with pytest.raises(CheckpointMismatchError, match="encoder.gru.weight_hh_l1_reverse"):
        fmt.load(obj, meta["official_args"])
    torch.save(obj, tmp_path / "broken.pth")  # through the public loader: the file and the key are named
    with pytest.raises(CheckpointMismatchError, match=r"(?s)broken.pth \(method cmd\): cmd encoder_q does not fit:.*weight_hh_l1_reverse"):
        usdrl_bench.load_encoder(tmp_path / "broken.pth", method="cmd", **meta["official_args"])


def test_a_method_without_an_official_format_says_which_have_one():
    with pytest.raises(ValueError, match="registers no official checkpoint format.*aimclr"):
        usdrl_bench.load_encoder(FIXTURES / "mamp" / "official_pretrain.pt", method="vicreg")
