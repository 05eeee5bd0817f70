"""Official-checkpoint import: the suite's DSTE / STTR reproduce the official code's outputs
(reference values in ``shared/fixtures/official_usdrl``), sizes are inferred from shapes, bad state
dicts are rejected with the offending keys named, and the suite format round-trips."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from usdrl_bench.encoders import create_encoder
from usdrl_bench.encoders.checkpoint import (
    SUITE_FORMAT,
    CheckpointMismatchError,
    load_encoder,
    load_official_state_dict,
    save_encoder,
    to_official_state_dict,
)

log = logging.getLogger(__name__)

BACKBONES = ["dste", "sttr"]
TOL = 1e-6  # max abs difference accepted against the official outputs (measured: 1.8e-7 DSTE, 7.2e-7 STTR)


pytestmark = pytest.mark.usefixtures("one_thread")


def _load_fixture(official_fixtures, backbone):
    path = official_fixtures / f"official_{backbone}_h32.pth.tar"
    return path, torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("grad_enabled", [False, True], ids=["no_grad", "grad"])
def test_official_parity(official_fixtures, backbone, grad_enabled):
    path, _ = _load_fixture(official_fixtures, backbone)
    encoder, extra = load_official_state_dict(path)
    assert encoder.encoder_name == backbone and not encoder.training
    cfg = encoder.config
    assert (cfg.hidden_size, cfg.num_frames, cfg.num_joints, cfg.num_bodies, cfg.in_channels) == (32, 64, 25, 2, 3)
    x = torch.from_numpy(np.load(official_fixtures / "parity_input.npy"))
    with torch.set_grad_enabled(grad_enabled):  # the fused inference path and the autograd path
        z_t, z_s = encoder.forward_dense(x)
        y = encoder(x)
    got = {"dense_t": z_t, "dense_s": z_s, "features": y}
    for name, value in got.items():
        expected = np.load(official_fixtures / f"expected_{backbone}_{name}.npy")
        assert value.shape == expected.shape, name
        diff = float(np.abs(value.detach().numpy() - expected).max())
        log.info("parity %s %s: max abs diff %.3g", backbone, name, diff)
        assert diff <= TOL, f"{backbone} {name}: max abs diff {diff:.3g} > {TOL}"
    # the projector weights come back untouched, without the DataParallel prefix
    assert {k.split(".")[0] for k in extra} == {"i_proj", "s_proj", "t_proj"}
    assert extra["i_proj.6.weight"].shape == (128, 64)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_load_encoder_reads_official_files(official_fixtures, backbone):
    path, _ = _load_fixture(official_fixtures, backbone)
    encoder = load_encoder(path)
    assert encoder.encoder_name == backbone and not encoder.training
    x = torch.from_numpy(np.load(official_fixtures / "parity_input.npy"))
    with torch.no_grad():
        y = encoder(x).numpy()
    expected = np.load(official_fixtures / f"expected_{backbone}_features.npy")
    assert np.abs(y - expected).max() <= TOL


@pytest.mark.parametrize("backbone", BACKBONES)
def test_downstream_state_dict_is_accepted(official_fixtures, backbone):
    """Downstream models store ``backbone.*`` without ``module.`` and add ``fc.*``."""
    _, ckpt = _load_fixture(official_fixtures, backbone)
    sd = {k[len("module."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("module.backbone.")}
    sd["fc.weight"], sd["fc.bias"] = torch.zeros(60, 64), torch.zeros(60)
    encoder, extra = load_official_state_dict(sd)
    assert set(extra) == {"fc.weight", "fc.bias"}
    assert encoder.hidden_size == 32


@pytest.mark.parametrize("backbone", BACKBONES)
def test_corrupted_state_dict_names_missing_and_unexpected_keys(official_fixtures, backbone):
    _, ckpt = _load_fixture(official_fixtures, backbone)
    sd = dict(ckpt["state_dict"])
    removed = ("module.backbone.s_tr1.DSA.norm2.bias" if backbone == "dste"
               else "module.backbone.s_tr.layers.1.norm2.bias")
    del sd[removed]
    sd["module.backbone.t_tr.bogus.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_state_dict({"epoch": 1, "state_dict": sd})
    msg = str(err.value)
    assert removed[len("module."):] in msg and "missing keys (1)" in msg
    assert "backbone.t_tr.bogus.weight" in msg and "unexpected keys (1)" in msg
    assert err.value.missing == [removed[len("module."):]]
    assert err.value.unexpected == ["backbone.t_tr.bogus.weight"]


def test_wrong_shape_is_reported(official_fixtures):
    _, ckpt = _load_fixture(official_fixtures, "sttr")
    sd = dict(ckpt["state_dict"])
    sd["module.backbone.t_tr.layers.0.norm1.weight"] = torch.ones(31)
    pattern = r"t_tr\.layers\.0\.norm1\.weight checkpoint \(31,\) vs model \(32,\)"
    with pytest.raises(CheckpointMismatchError, match=pattern):
        load_official_state_dict(sd)


def test_dste_shared_attention_copies_must_agree(official_fixtures):
    _, ckpt = _load_fixture(official_fixtures, "dste")
    sd = dict(ckpt["state_dict"])
    # the official files really hold two identical copies
    assert torch.equal(sd["module.backbone.t_tr1.CA.attn.in_proj_weight"],
                       sd["module.backbone.t_tr1.DSA.attn.in_proj_weight"])
    sd["module.backbone.t_tr1.DSA.attn.out_proj.bias"] = sd["module.backbone.t_tr1.DSA.attn.out_proj.bias"] + 1.0
    with pytest.raises(CheckpointMismatchError, match=r"t_tr1\.CA\.attn\.out_proj\.bias != backbone\.t_tr1\.DSA"):
        load_official_state_dict(sd)


def test_not_an_official_checkpoint():
    with pytest.raises(ValueError, match="no 'backbone"):
        load_official_state_dict({"state_dict": {"encoder.weight": torch.zeros(2)}})


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("prefix", ["module.backbone.", "backbone."])
def test_sizes_are_inferred_from_shapes(backbone, prefix):
    """Export a model of another size to official keys and import it back: H, T, V, M, C and the layer
    count come from the tensor shapes alone, and the outputs are identical."""
    sizes = dict(hidden_size=24, num_frames=16, num_joints=20, num_bodies=1, num_layers=3)
    if backbone == "dste":
        sizes.update(mlp_ratio=3.0)
    else:
        sizes.update(ffn_size=40)
    original = create_encoder(backbone, None, **sizes).eval()
    official = to_official_state_dict(original, prefix=prefix)
    if backbone == "dste":
        assert prefix + "t_tr2.DSA.wt1.weight" in official
        assert official[prefix + "s_tr.DSA.wt1.weight"].shape == (20, 20)
    official["module.i_proj.0.weight" if prefix.startswith("module.") else "fc.weight"] = torch.zeros(5, 48)
    imported, extra = load_official_state_dict({"epoch": 0, "state_dict": official})
    assert len(extra) == 1
    assert imported.config == original.config
    x = torch.randn(3, 3, 16, 20, 1)
    with torch.no_grad():
        torch.testing.assert_close(imported(x), original(x), rtol=0, atol=0)


def test_split_of_spatial_tokens_can_be_overridden():
    original = create_encoder("sttr", "tiny", num_bodies=2, num_joints=20).eval()  # 40 tokens
    official = to_official_state_dict(original)
    assert load_official_state_dict(official).encoder.config.num_bodies == 2  # 40 = 2 × 20, a known layout
    enc = load_official_state_dict(official, num_bodies=4).encoder
    assert (enc.config.num_bodies, enc.config.num_joints) == (4, 10)
    with pytest.raises(ValueError, match="num_bodies 3"):
        load_official_state_dict(official, num_bodies=3, num_joints=20)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_suite_format_round_trip(tmp_path, backbone):
    original = create_encoder(backbone, "tiny", num_bodies=1, num_joints=20).eval()
    path = save_encoder(tmp_path / "sub" / "enc.pt", original, epochs=3, history=[{"loss": 1.5}])
    assert path.exists() and sorted(p.name for p in path.parent.iterdir()) == ["enc.pt"]  # no temp left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == SUITE_FORMAT and raw["encoder"] == backbone and raw["epochs"] == 3
    loaded = load_encoder(path)
    assert not loaded.training and type(loaded) is type(original) and loaded.config == original.config
    x = torch.randn(2, 3, 16, 20, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), original(x), rtol=0, atol=0)
        for a, b in zip(loaded.forward_dense(x), original.forward_dense(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_suite_format_mismatch_and_unknown_files(tmp_path):
    enc = create_encoder("dste", "tiny")
    path = save_encoder(tmp_path / "enc.pt", enc)
    raw = torch.load(path, weights_only=True)
    del raw["state_dict"]["spatial_pe"]
    raw["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(raw, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): spatial_pe[\s\S]*extra\.weight"):
        load_encoder(tmp_path / "bad.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a suite encoder checkpoint"):
        load_encoder(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_encoder(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="reserved"):
        save_encoder(tmp_path / "x.pt", enc, config={})
