"""Encoders: the common interface (parametrised over every registered encoder), configs and presets,
and the DSTE / shared blocks against hand-computed values."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from usdrl_bench.encoders import ENCODER_PRESETS, create_encoder, list_encoders, list_presets
from usdrl_bench.encoders._blocks import DropPath, SinusoidalPositionalEncoding, skeleton_to_tokens
from usdrl_bench.encoders.dste import DSTE, DSTEConfig, dense_shift, dense_shift_keep_mask
from usdrl_bench.registry import ENCODERS

# the suite's own encoders (a shipped baseline's, registered when another test module imported it first,
# has its own tests in test_baselines.py and need not take every shape here)
ALL_ENCODERS = [name for name in list_encoders() if ENCODERS.entry(name).obj.__module__.startswith("usdrl_bench.")]


pytestmark = pytest.mark.usefixtures("one_thread")

# (overrides, (C, T, V, M)): the tiny default (NTU-like) and an MSR-Action3D-like single-body layout
SHAPES = [
    pytest.param({}, (3, 16, 25, 2), id="ntu"),
    pytest.param({"num_bodies": 1, "num_joints": 20}, (3, 16, 20, 1), id="msr"),
]


def _input(shape: tuple[int, int, int, int], n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g)


def test_builtin_encoders_registered():
    assert {"dste", "sttr"} <= set(ALL_ENCODERS)
    assert list_encoders("ds*") == ["dste"]


@pytest.mark.parametrize("name", ALL_ENCODERS)
@pytest.mark.parametrize("overrides,shape", SHAPES)
def test_forward_shapes(name, overrides, shape):
    enc = create_encoder(name, "tiny", **overrides).eval()
    c, t, v, m = shape
    h = enc.hidden_size
    assert enc.encoder_name == name
    assert enc.embed_dim == 2 * h and enc.num_frames == t
    x = _input(shape, n=3)
    with torch.no_grad():
        z_t, z_s = enc.forward_dense(x)
        y_t, y_s, y_i = enc.forward_features(x)
        y = enc(x)
    assert z_t.shape == (3, t, h)
    assert z_s.shape == (3, m * v, h)
    assert y_t.shape == (3, h) and y_s.shape == (3, h) and y_i.shape == (3, 2 * h)
    assert y.shape == (3, 2 * h)
    # the pooled features are the token max, and forward is their concatenation
    torch.testing.assert_close(y_t, z_t.amax(1), rtol=0, atol=0)
    torch.testing.assert_close(y_s, z_s.amax(1), rtol=0, atol=0)
    torch.testing.assert_close(y, torch.cat([y_t, y_s], -1), rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL_ENCODERS)
def test_gradients_flow_to_every_parameter_and_the_input(name):
    enc = create_encoder(name, "tiny").train()
    x = _input((3, 16, 25, 2), n=4).requires_grad_(True)
    y_t, y_s, y_i = enc.forward_features(x)
    (y_i.square().sum() + y_t.sum() + y_s.sum()).backward()
    without = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not without, f"no gradient reached {without}"
    for n, p in enc.named_parameters():
        assert torch.isfinite(p.grad).all(), n
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL_ENCODERS)
def test_eval_mode_is_deterministic_and_per_sample(name):
    enc = create_encoder(name, "tiny").eval()
    x = _input((3, 16, 25, 2), n=4)
    with torch.no_grad():
        a, b = enc(x), enc(x)
        single = enc(x[2:3])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # no information crosses samples: encoding a sample alone gives its row of the batch result
    torch.testing.assert_close(single, a[2:3], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL_ENCODERS)
@pytest.mark.parametrize(
    "bad_shape",
    [(2, 3, 15, 25, 2), (2, 2, 16, 25, 2), (2, 3, 16, 20, 2), (2, 3, 16, 25, 1), (3, 16, 25, 2)],
    ids=["T", "C", "V", "M", "4d"],
)
def test_wrong_input_shape_raises_naming_shapes(name, bad_shape):
    enc = create_encoder(name, "tiny")
    with pytest.raises(ValueError) as err:
        enc(torch.zeros(bad_shape))
    assert str(tuple(bad_shape)) in str(err.value)
    assert "(N, 3, 16, 25, 2)" in str(err.value)


@pytest.mark.parametrize("name", ALL_ENCODERS)
def test_presets_and_config(name):
    assert {"paper", "small", "tiny"} <= set(list_presets(name))
    assert list_presets(name) == list(ENCODER_PRESETS[name])
    enc = create_encoder(name, "tiny")
    json.dumps(dataclasses.asdict(enc.config))  # serialisable as plain data
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.config.hidden_size = 3  # type: ignore[misc]
    # an override wins over the preset
    assert create_encoder(name, "tiny", hidden_size=8).hidden_size == 8
    paper = ENCODER_PRESETS[name]["paper"]
    assert paper["hidden_size"] == 1024 and paper["num_frames"] == 64


@pytest.mark.parametrize("name", ALL_ENCODERS)
def test_unknown_option_or_preset_raises(name):
    with pytest.raises(ValueError, match=r"hiden_size.*hidden_size") as err:
        create_encoder(name, "tiny", hiden_size=8)
    assert "Valid options:" in str(err.value) and "num_frames" in str(err.value)
    with pytest.raises(ValueError, match=r"tinny.*Did you mean: tiny"):
        create_encoder(name, "tinny")
    with pytest.raises(KeyError, match="Did you mean"):
        create_encoder(name + "x")
    with pytest.raises(ValueError, match="hidden_size 10 is not divisible by num_heads 4"):
        create_encoder(name, "tiny", hidden_size=10, num_heads=4)


@pytest.mark.parametrize(
    "name,expected_millions",
    [("dste", 57.14), ("sttr", 27.71)],  # backbone sizes at the paper preset, FACTS §7
)
def test_paper_preset_parameter_count(name, expected_millions):
    with torch.device("meta"):  # no memory, no init cost
        enc = create_encoder(name, "paper")
    n = sum(p.numel() for p in enc.parameters())
    assert round(n / 1e6, 2) == expected_millions
    assert ENCODERS.entry(name).meta["presets"]


def test_skeleton_to_tokens_layout():
    n, c, t, v, m = 2, 3, 4, 5, 2
    x = torch.arange(n * c * t * v * m, dtype=torch.float32).reshape(n, c, t, v, m)
    x_t, x_s = skeleton_to_tokens(x)
    assert x_t.shape == (n, t, m * v * c) and x_s.shape == (n, m * v, t * c)
    for i in range(n):
        for tt in range(t):
            expect = [x[i, cc, tt, vv, mm] for mm in range(m) for vv in range(v) for cc in range(c)]
            assert x_t[i, tt].tolist() == torch.stack(expect).tolist()
        for mm in range(m):
            for vv in range(v):  # tokens body-major; features frame-major then xyz
                expect = [x[i, cc, tt, vv, mm] for tt in range(t) for cc in range(c)]
                assert x_s[i, mm * v + vv].tolist() == torch.stack(expect).tolist()


def test_sinusoidal_encoding_values():
    pe = SinusoidalPositionalEncoding(dim=6, max_len=10)
    table = pe.pe[0]
    assert table.shape == (10, 6)
    for p in (0, 1, 7):
        for i in range(3):
            w = p / 10000 ** (2 * i / 6)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(w), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(w), abs=1e-6)
    x = torch.zeros(2, 4, 6)
    torch.testing.assert_close(pe(x), table[:4].expand(2, 4, 6))
    assert "pe" in pe.state_dict()  # persistent, like the official tpe.pe


def test_drop_path():
    dp = DropPath(0.5)
    x = torch.ones(4000, 3)
    dp.eval()
    assert torch.equal(dp(x), x)
    dp.train()
    torch.manual_seed(0)
    y = dp(x)
    rows = y[:, 0]
    assert set(rows.unique().tolist()) <= {0.0, 2.0}  # whole samples dropped, survivors rescaled by 1/keep
    assert torch.equal(y, rows[:, None].expand_as(y))
    assert abs(rows.mean().item() - 1.0) < 0.1
    with pytest.raises(ValueError):
        DropPath(1.0)


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_dense_shift_mask_positions(variant):
    length, gap, dim = 10, 4, 3
    keep = dense_shift_keep_mask(length, gap, variant)
    on_grid = [0, 4, 8]
    expected_keep = on_grid if variant == "official" else [i for i in range(length) if i not in on_grid]
    assert torch.nonzero(keep).flatten().tolist() == expected_keep
    # W2 outputs the constant 1, so the mixed sequence is F + 1: kept positions show F, others F + 1
    wt1, wt2 = torch.nn.Linear(length, length), torch.nn.Linear(length, length)
    with torch.no_grad():
        wt2.weight.zero_()
        wt2.bias.fill_(1.0)
    x = torch.randn(2, length, dim)
    with torch.no_grad():
        out = dense_shift(x, wt1, wt2, keep)
    for i in range(length):
        torch.testing.assert_close(out[:, i], x[:, i] + (0.0 if i in expected_keep else 1.0))


def test_dste_attention_is_shared_and_stored_once():
    enc = create_encoder("dste", "tiny")
    keys = list(enc.state_dict())
    assert sum(k.endswith("in_proj_weight") for k in keys) == 2 * enc.config.num_layers
    layer = enc.temporal_layers[0]
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in layer.ca.modules())
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in layer.dsa.modules())
    # the DenseShift token mixers are sized by each stream's token count
    assert layer.dsa.wt1.weight.shape == (16, 16)
    assert enc.spatial_layers[0].dsa.wt1.weight.shape == (50, 50)


def test_dste_paper_switches_change_the_function():
    base = create_encoder("dste", "tiny").eval()
    x = _input((3, 16, 25, 2), n=2)
    with torch.no_grad():
        ref = base(x)
    for option in ("dense_shift_mask", "dsa_block", "ca_block"):
        other = create_encoder("dste", "tiny", **{option: "paper"}).eval()
        other.load_state_dict(base.state_dict())  # same weights, different wiring
        with torch.no_grad():
            assert not torch.allclose(other(x), ref, atol=1e-4), option
    once = create_encoder("dste", "tiny", pos_every_layer=False).eval()
    once.load_state_dict(base.state_dict())
    with torch.no_grad():
        assert not torch.allclose(once(x), ref, atol=1e-4)
    with pytest.raises(ValueError, match="dense_shift_mask"):
        DSTEConfig(dense_shift_mask="papr")  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_dste_layer_mix_alpha(alpha):
    """A DST layer is exactly α·CA + (1-α)·DSA with no residual (α = 1: CA alone, α = 0: DSA alone)."""
    enc = create_encoder("dste", "tiny", alpha=alpha).eval()
    layer = enc.temporal_layers[0]
    x = torch.randn(2, 16, 16)
    with torch.no_grad():
        ca, dsa = layer.ca(x, layer.attn), layer.dsa(x, layer.attn)
        torch.testing.assert_close(layer(x), alpha * ca + (1 - alpha) * dsa)
    assert not torch.allclose(ca, dsa)


def test_dste_drop_path_only_in_training():
    enc = create_encoder("dste", "tiny", drop_path=0.5)
    x = _input((3, 16, 25, 2), n=8)
    enc.train()
    torch.manual_seed(1)
    a = enc(x)
    b = enc(x)
    assert not torch.allclose(a, b)
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x), rtol=0, atol=0)


def test_dste_direct_construction_defaults_to_official_code():
    cfg = DSTEConfig()
    assert (cfg.hidden_size, cfg.num_frames, cfg.num_joints, cfg.num_bodies) == (1024, 64, 25, 2)
    assert (cfg.alpha, cfg.gap, cfg.drop_path, cfg.mlp_hidden, cfg.max_len) == (0.5, 4, 0.1, 2048, 200)
    assert (cfg.temporal_input_size, cfg.spatial_input_size, cfg.num_spatial_tokens) == (150, 192, 50)
    assert isinstance(create_encoder("dste", "tiny"), DSTE)
    with pytest.raises(ValueError, match="max_len"):
        DSTEConfig(num_frames=300)


def test_dste_separate_attention_for_ca_and_dsa():
    """``shared_attention=False``: CA and DSA each own an attention module (two per layer and stream);
    with the DSA's set to a copy of the CA's the function is the shared model's, with another it is not."""
    shared = create_encoder("dste", "tiny").eval()
    separate = create_encoder("dste", "tiny", shared_attention=False).eval()
    keys = list(separate.state_dict())
    assert sum(k.endswith("in_proj_weight") for k in keys) == 4 * separate.config.num_layers
    state = dict(shared.state_dict())
    for k, v in shared.state_dict().items():  # the DSA's attention := the shared one
        if ".attn." in k:
            state[k.replace(".attn.", ".dsa_attn.")] = v.clone()
    separate.load_state_dict(state)
    x = _input((3, 16, 25, 2), n=2)
    with torch.no_grad():
        torch.testing.assert_close(separate(x), shared(x), rtol=0, atol=1e-6)
        separate.temporal_layers[0].dsa_attn.out_proj.weight.mul_(-1.0)
        assert not torch.allclose(separate(x), shared(x), atol=1e-4)
    # every attention module gets gradients: CA's through CA only, DSA's through both DSA branches
    separate.train()
    separate(x).square().sum().backward()
    layer = separate.temporal_layers[0]
    assert layer.attn.in_proj_weight.grad.abs().sum() > 0 and layer.dsa_attn.in_proj_weight.grad.abs().sum() > 0
    assert create_encoder("dste", "paper_eqs", num_layers=1, hidden_size=16).config.shared_attention is False


@pytest.mark.parametrize("name, options", [("dste", {}), ("dste", {"kernel_size": 3}), ("sttr", {})])
def test_causal_temporal_stream_cannot_see_future_frames(name, options):
    """``causal_temporal``: the temporal tokens of frames < k do not change when frames >= k do; without
    it they do. The spatial stream (a token per joint over all frames) is not causal."""
    torch.manual_seed(0)
    causal = create_encoder(name, "tiny", causal_temporal=True, **options).eval()
    plain = create_encoder(name, "tiny", **options).eval()
    plain.load_state_dict(causal.state_dict())  # same weights
    x = _input((3, 16, 25, 2), n=2)
    y = x.clone()
    y[:, :, 10:] += torch.randn_like(y[:, :, 10:])
    with torch.no_grad():
        t_x, s_x = causal.forward_dense(x)
        t_y, s_y = causal.forward_dense(y)
        torch.testing.assert_close(t_x[:, :10], t_y[:, :10], rtol=0, atol=1e-5)
        assert not torch.allclose(t_x[:, 10:], t_y[:, 10:], atol=1e-4)
        p_x, _ = plain.forward_dense(x)
        p_y, _ = plain.forward_dense(y)
        assert not torch.allclose(p_x[:, :10], p_y[:, :10], atol=1e-4)
    # trains: gradients reach every parameter
    causal.train()
    causal(x).square().sum().backward()
    assert all(p.grad is not None for p in causal.parameters() if p.requires_grad)
