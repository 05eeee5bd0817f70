"""Tests of usdrl_bench.objectives: terms against hand-computed values, an independent numpy reference,
invariants, the official loss fixture, the MGFD and negative-contrastive objectives."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from usdrl_bench.objectives import MGFD, NegativeContrastive, Projector, create_objective, objective_options
from usdrl_bench.objectives.terms import (
    combine_domains,
    covariance_loss,
    cross_correlation_loss,
    cross_correlation_matrix,
    pairwise_cross_correlation_loss,
    similarity_loss,
    vac_loss,
    variance_loss,
)
from usdrl_bench.registry import OBJECTIVES

SHAPE = (3, 8, 5, 2)  # C, T, V, M of the stand-in skeletons


class TinyEncoder(nn.Module):
    """Stand-in with the encoder interface: forward_features -> (y_t (N,H), y_s (N,H), y_i (N,2H))."""

    def __init__(self, hidden_size: int = 8, shape=SHAPE, batchnorm: bool = False) -> None:
        super().__init__()
        self.hidden_size, self.embed_dim = hidden_size, 2 * hidden_size
        flat = math.prod(shape)
        norm = (lambda: nn.BatchNorm1d(hidden_size)) if batchnorm else nn.Identity
        self.t = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden_size), norm(), nn.Tanh())
        self.s = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden_size), norm(), nn.Tanh())

    def forward_features(self, x):
        y_t, y_s = self.t(x), self.s(x)
        return y_t, y_s, torch.cat([y_t, y_s], dim=-1)

    def forward(self, x):
        return self.forward_features(x)[2]


def make_views(n: int = 16, k: int = 4, noise: float = 0.1, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, *SHAPE, generator=g)
    return [base + noise * torch.randn(base.shape, generator=g) for _ in range(k)]


def random_projections(k: int = 4, n: int = 12, d: int = 6, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, d, generator=g)
    return [base + 0.5 * torch.randn(n, d, generator=g) for _ in range(k)]


# --- independent float64 numpy reference of the official model/loss.py ------------------------------


def np_mse(a, b):
    return float(np.mean((a - b) ** 2))


def np_similarity(zs):
    c = (zs[0] + zs[1] + zs[2]) / 3.0
    return sum(np_mse(z, zs[3]) for z in zs[:3]) + sum(np_mse(z, c) for z in zs[:3])


def np_vac(z):
    n, d = z.shape
    std = np.sqrt(z.var(axis=0, ddof=1) + 1e-4)
    var_term = np.mean(np.maximum(0.0, 1.0 - std))
    zc = z - z.mean(axis=0)
    cov = zc.T @ zc / (n - 1)
    cov_term = (np.sum(cov**2) - np.sum(np.diag(cov) ** 2)) / d
    return 5.0 * var_term + cov_term


def np_xcorr(a, b):
    n = a.shape[0]
    an = (a - a.mean(0)) / a.std(0, ddof=1)
    bn = (b - b.mean(0)) / b.std(0, ddof=1)
    c = an.T @ bn / n
    off = np.sum(c**2) - np.sum(np.diag(c) ** 2)
    return float(np.sum((np.diag(c) - 1.0) ** 2) + 0.005 * off)


# --- similarity (Eq. 8) ------------------------------------------------------------------------------


def test_similarity_official_by_hand():
    z0, z1, z2, z3 = (torch.tensor([v], dtype=torch.float32) for v in ([0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [2.0, 2.0]))
    # centre c = (2, 0); MSE to z3: (4+4)/2 + (0+4)/2 + (4+4)/2 = 10; MSE to c: 4/2 + 0 + 4/2 = 4
    assert similarity_loss([z0, z1, z2, z3]).item() == pytest.approx(14.0)


def test_similarity_official_matches_numpy_reference():
    zs = random_projections()
    expected = np_similarity([z.double().numpy() for z in zs])
    assert similarity_loss(zs).item() == pytest.approx(expected, rel=1e-5)


def test_similarity_official_gradient_by_hand():
    # With M = N*D elements and c the centre: dL/dz0 = 2/M [(z0 - z3) + (z0 - c)] (the path through c
    # cancels because Σ_a (z_a - c) = 0, so detaching c would not change it) and dL/dz3 = -2/M Σ_a (z_a - z3).
    zs = [z.clone().requires_grad_(True) for z in random_projections()]
    similarity_loss(zs).backward()
    z0, z1, z2, z3 = (z.detach() for z in zs)
    m = z0.numel()
    c = (z0 + z1 + z2) / 3
    torch.testing.assert_close(zs[0].grad, 2 / m * ((z0 - z3) + (z0 - c)))
    torch.testing.assert_close(zs[3].grad, -2 / m * ((z0 - z3) + (z1 - z3) + (z2 - z3)))


def test_similarity_paper_by_hand():
    z1, z2 = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])
    # z̄ = (1.5, 2); ||z_a - z̄|| = 2.5 for both; cos(z1, z2) = 0, so each ordered pair adds 1
    # (1/2) * [(2*2.5 + 3*1) + (2*2.5 + 3*1)] = 8
    assert similarity_loss([z1, z2], form="paper", kappa=2.0, eta=3.0).item() == pytest.approx(8.0)
    assert similarity_loss([z1, z2], form="paper").item() == pytest.approx(3.5)  # κ = η = 1


@pytest.mark.parametrize("form,k", [("official", 4), ("paper", 2), ("paper", 3)])
def test_similarity_is_zero_for_identical_views(form, k):
    z = torch.randn(5, 7)
    assert similarity_loss([z.clone() for _ in range(k)], form=form).item() == pytest.approx(0.0, abs=1e-6)


def test_similarity_bad_arguments():
    zs = random_projections()
    with pytest.raises(ValueError, match="exactly 4"):
        similarity_loss(zs[:3])
    with pytest.raises(ValueError, match="at least 2"):
        similarity_loss(zs[:1], form="paper")
    with pytest.raises(ValueError, match="kappa"):
        similarity_loss(zs, kappa=2.0)
    with pytest.raises(ValueError, match="form"):
        similarity_loss(zs, form="mse")
    with pytest.raises(ValueError, match=r"\(12, 6\).*\(12, 5\)"):
        similarity_loss([zs[0], zs[1], zs[2], zs[3][:, :5]])


# --- variance, covariance, VAC (Eqs. 9, 10) ------------------------------------------------------------

# Z = 0.25 * [[1, 2], [3, 0], [5, 4]]: column means (0.75, 0.5); centred 0.25 * [[-2, 0], [0, -2], [2, 2]];
# unbiased variances 0.0625 * 8 / 2 = 0.25 each; covariance 0.0625 * (0 + 0 + 4) / 2 = 0.125.
Z = 0.25 * torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]])
COV_01 = 0.125


def test_variance_official_by_hand():
    assert variance_loss(Z).item() == pytest.approx(1.0 - math.sqrt(0.25 + 1e-4), rel=1e-6)
    assert variance_loss(Z, gamma=0.4).item() == 0.0  # std 0.5 is above the threshold
    assert variance_loss(4 * Z).item() == 0.0  # std 2


def test_variance_paper_by_hand():
    # ReLU(1 - sqrt(0.25) + 1e-4)
    assert variance_loss(Z, form="paper").item() == pytest.approx(0.5 + 1e-4, rel=1e-6)
    assert variance_loss(Z, gamma=2.0, eps=0.1, form="paper").item() == pytest.approx(1.6, rel=1e-6)


def test_covariance_by_hand():
    # two off-diagonal entries of 0.125, squared and summed, divided by D = 2
    assert covariance_loss(Z).item() == pytest.approx(2 * COV_01**2 / 2, rel=1e-6)


def test_covariance_is_zero_for_decorrelated_features():
    z = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]) * 3.0 + 7.0
    assert covariance_loss(z).item() == pytest.approx(0.0, abs=1e-10)


def test_vac_by_hand_and_against_numpy():
    expected = 5.0 * (1.0 - math.sqrt(0.25 + 1e-4)) + COV_01**2
    assert vac_loss(Z).item() == pytest.approx(expected, rel=1e-6)
    assert vac_loss(Z, std_weight=0.0).item() == pytest.approx(COV_01**2, rel=1e-6)
    z = random_projections(k=1, n=10, d=5, seed=3)[0] * 0.3
    assert vac_loss(z).item() == pytest.approx(np_vac(z.double().numpy()), rel=1e-5)


def test_batch_statistics_need_two_samples():
    with pytest.raises(ValueError, match=r"\(1, 2\)"):
        variance_loss(Z[:1])
    with pytest.raises(ValueError, match="2-D"):
        covariance_loss(Z.flatten())


# --- cross-correlation (Eq. 11) ------------------------------------------------------------------------

# B = [[0, 1], [2, 1], [1, 4]]: standardised Z is [[-1, 0], [0, -1], [1, 1]] (std 0.5);
# B has means (1, 2), centred [[-1, -1], [1, -1], [0, 2]], unbiased std (1, sqrt(3)).
# C = Zᵀ B / 3 = [[1/3, 1/sqrt(3)], [-1/3, 1/sqrt(3)]].
B = torch.tensor([[0.0, 1.0], [2.0, 1.0], [1.0, 4.0]])
R3 = 1.0 / math.sqrt(3.0)


def test_cross_correlation_matrix_by_hand():
    expected = torch.tensor([[1 / 3, R3], [-1 / 3, R3]])
    torch.testing.assert_close(cross_correlation_matrix(Z, B), expected)


def test_cross_correlation_official_by_hand():
    on = (1 / 3 - 1) ** 2 + (R3 - 1) ** 2
    off = R3**2 + (1 / 3) ** 2
    assert cross_correlation_loss(Z, B).item() == pytest.approx(on + 0.005 * off, rel=1e-6)
    assert cross_correlation_loss(Z, B, offdiag_weight=1.0).item() == pytest.approx(on + off, rel=1e-6)


def test_cross_correlation_paper_by_hand():
    assert cross_correlation_loss(Z, B, form="paper").item() == pytest.approx(R3**2 + 1 / 9, rel=1e-6)


@pytest.mark.parametrize("form", ["official", "paper"])
def test_cross_correlation_is_symmetric(form):
    a, b = random_projections(k=2, n=9, d=5, seed=1)
    assert cross_correlation_loss(a, b, form=form).item() == pytest.approx(
        cross_correlation_loss(b, a, form=form).item(), rel=1e-6
    )


def test_cross_correlation_of_identical_whitened_inputs():
    # Orthogonal ±1 columns with zero mean: standardised, pairwise uncorrelated. With the official unbiased
    # std the diagonal of C is (N-1)/N, not 1, so the loss is D / N², not 0; the paper form is exactly 0.
    h = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]])
    n, d = h.shape
    torch.testing.assert_close(cross_correlation_matrix(h, h), torch.eye(d) * (n - 1) / n)
    assert cross_correlation_loss(h, h).item() == pytest.approx(d / n**2, rel=1e-6)
    assert cross_correlation_loss(h, h, form="paper").item() == pytest.approx(0.0, abs=1e-12)


def test_cross_correlation_matches_numpy_reference():
    zs = random_projections(k=4, n=11, d=6, seed=2)
    expected = sum(np_xcorr(a.double().numpy(), b.double().numpy()) for a, b in itertools.combinations(zs, 2))
    assert pairwise_cross_correlation_loss(zs).item() == pytest.approx(expected, rel=1e-5)


def test_cross_correlation_bad_arguments():
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 2\)"):
        cross_correlation_loss(Z, B[:2])
    with pytest.raises(ValueError, match="form"):
        cross_correlation_loss(Z, B, form="barlow")
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_cross_correlation_loss([Z])


def test_combine_domains():
    i, t, s = torch.tensor(1.0), torch.tensor(2.0), torch.tensor(4.0)
    assert combine_domains(i, t, s).item() == pytest.approx(1.0 + 0.5 * 6.0)
    assert combine_domains(i, t, s, domain_weight=0.25).item() == pytest.approx(2.5)
    assert combine_domains(i).item() == 1.0
    with pytest.raises(ValueError, match="both"):
        combine_domains(i, t, None)


# --- projector -----------------------------------------------------------------------------------------


def test_projector_layout_matches_official_keys():
    p = Projector(8, 16, 32)
    shapes = {k: tuple(v.shape) for k, v in p.state_dict().items()}
    assert {k.split(".")[0] for k in shapes} == {"0", "1", "3", "4", "6"}
    assert shapes["0.weight"] == (16, 8) and shapes["3.weight"] == (16, 16) and shapes["6.weight"] == (32, 16)
    assert shapes["1.running_mean"] == (16,) and "4.num_batches_tracked" in shapes
    assert all(float(p[i].bias.detach().abs().sum()) == 0.0 for i in (0, 3, 6))
    assert float(p[6].weight.detach().std()) == pytest.approx(0.02, rel=0.3)
    assert p(torch.randn(5, 8)).shape == (5, 32)
    with pytest.raises(ValueError, match="hidden_dim"):
        Projector(8, 0, 4)


# --- MGFD ----------------------------------------------------------------------------------------------


def fixture_projections(path):
    data = np.load(path / "loss_inputs.npz")
    get = lambda p: [torch.from_numpy(data[f"{p}{k}"]) for k in range(4)]  # noqa: E731
    return get("zi"), get("zt"), get("zs")


def test_mgfd_reproduces_official_loss_fixture(official_fixtures):
    zi, zt, zs = fixture_projections(official_fixtures)
    expected = json.loads((official_fixtures / "loss_expected.json").read_text())
    assert zi[0].shape == (16, 64) and zt[0].shape == (16, 32)
    objective = MGFD(TinyEncoder(hidden_size=16))
    out = objective.loss_from_projections(zi, zt, zs)
    assert set(out) == {"sim", "vac", "xcorr", "total"}
    for key in ("sim", "vac", "xcorr", "total"):
        assert out[key].item() == pytest.approx(expected[key], rel=1e-6), key


def test_mgfd_switches_change_the_terms(official_fixtures):
    zi, zt, zs = fixture_projections(official_fixtures)
    full = MGFD(TinyEncoder(16)).loss_from_projections(zi, zt, zs)

    no_vac = MGFD(TinyEncoder(16), vac=False).loss_from_projections(zi, zt, zs)
    assert set(no_vac) == {"sim", "xcorr", "total"}
    assert no_vac["total"].item() == pytest.approx(5 * full["sim"].item() + 1e-3 * full["xcorr"].item(), rel=1e-6)

    no_xc = MGFD(TinyEncoder(16), xc=False).loss_from_projections(zi, zt, zs)
    assert set(no_xc) == {"sim", "vac", "total"}
    assert no_xc["total"].item() == pytest.approx(5 * full["sim"].item() + full["vac"].item(), rel=1e-6)

    single = MGFD(TinyEncoder(16), multi_grained=False)
    assert single.t_proj is None and single.s_proj is None
    assert all(k.startswith("i_proj.") for k in single.state_dict())
    inst = single.loss_from_projections(zi)
    assert inst["sim"].item() == pytest.approx(similarity_loss(zi).item(), rel=1e-6)
    assert inst["xcorr"].item() == pytest.approx(pairwise_cross_correlation_loss(zi).item(), rel=1e-6)
    assert inst["vac"].item() == pytest.approx(sum(vac_loss(z) for z in zi).item(), rel=1e-6)
    with pytest.raises(ValueError, match="multi_grained=False"):
        single.loss_from_projections(zi, zt, zs)
    with pytest.raises(ValueError, match="needs zt and zs"):
        MGFD(TinyEncoder(16)).loss_from_projections(zi)


def test_mgfd_domain_combination_and_weights():
    zi, zt, zs = random_projections(d=8, seed=5), random_projections(d=4, seed=6), random_projections(d=4, seed=7)
    objective = MGFD(TinyEncoder(2), sim_weight=2.0, vac_weight=3.0, xc_weight=0.5, domain_weight=0.25)
    out = objective.loss_from_projections(zi, zt, zs)
    sim = similarity_loss(zi) + 0.25 * (similarity_loss(zt) + similarity_loss(zs))
    assert out["sim"].item() == pytest.approx(sim.item(), rel=1e-6)
    expected_total = 2.0 * out["sim"] + 3.0 * out["vac"] + 0.5 * out["xcorr"]
    assert out["total"].item() == pytest.approx(expected_total.item(), rel=1e-6)


def test_mgfd_paper_forms_differ_from_official():
    # scaled down so that the variance hinge is active (std < γ = 1) in every dimension
    zi, zt, zs = ([0.3 * z for z in random_projections(d=d, seed=seed)] for d, seed in ((8, 5), (4, 6), (4, 7)))
    official = MGFD(TinyEncoder(2)).loss_from_projections(zi, zt, zs)
    paper = MGFD(
        TinyEncoder(2), similarity_form="paper", variance_form="paper", xc_form="paper", kappa=1.0, eta=0.5
    ).loss_from_projections(zi, zt, zs)
    assert torch.isfinite(paper["total"])
    for key in ("sim", "xcorr"):
        assert paper[key].item() != pytest.approx(official[key].item(), rel=1e-3)
    # with every dimension under the hinge, ε outside the root (paper) gives slightly more than inside
    assert paper["vac"].item() > official["vac"].item()


def test_mgfd_projector_sizes():
    enc = TinyEncoder(hidden_size=8)
    objective = MGFD(enc)
    assert (objective.t_proj.in_dim, objective.t_proj.hidden_dim, objective.t_proj.out_dim) == (8, 16, 16)
    assert (objective.i_proj.in_dim, objective.i_proj.hidden_dim, objective.i_proj.out_dim) == (16, 16, 32)
    custom = MGFD(enc, proj_hidden=12, proj_out=6)
    assert (custom.s_proj.hidden_dim, custom.s_proj.out_dim, custom.i_proj.out_dim) == (12, 6, 12)
    assert MGFD.num_views == 4


@pytest.mark.parametrize(
    "options,match",
    [
        ({"sim_weight": -1.0}, "sim_weight"),
        ({"xc_weight": float("nan")}, "xc_weight"),
        ({"similarity_form": "cosine"}, "similarity_form"),
        ({"variance_form": "vicreg"}, "variance_form"),
        ({"proj_out": 0}, "proj_out"),
        ({"kappa": 2.0}, "kappa"),
        ({"xc_form": "paper", "offdiag_weight": 0.01}, "offdiag_weight"),
    ],
)
def test_mgfd_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        MGFD(TinyEncoder(), **options)


def test_mgfd_needs_hidden_size():
    with pytest.raises(ValueError, match="hidden_size"):
        MGFD(nn.Linear(2, 2))


def test_mgfd_forward_returns_loss_and_logs():
    enc = TinyEncoder()
    objective = MGFD(enc)
    loss, logs = objective(enc, make_views())
    assert loss.dim() == 0 and loss.requires_grad
    # logs stay on the device as detached 0-d tensors: reading them is the trainer's choice (no sync per step)
    assert set(logs) == {"sim", "vac", "xcorr", "total"}
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in logs.values())
    assert float(logs["total"]) == pytest.approx(loss.item())
    loss.backward()
    assert enc.t[1].weight.grad is not None and objective.i_proj[0].weight.grad is not None
    with pytest.raises(ValueError, match="shape"):
        objective(enc, [make_views()[0], make_views(n=8)[0]])


def test_mgfd_concatenated_encoder_call_equals_per_view_call():
    # A BN-free encoder gives the same loss whether it sees the views one at a time or concatenated,
    # because the projectors always normalise each view separately.
    enc = TinyEncoder()
    views = make_views()
    torch.manual_seed(0)
    per_view = MGFD(enc)
    joint = MGFD(enc, concat_views=True)
    joint.load_state_dict(per_view.state_dict())
    torch.testing.assert_close(per_view(enc, views)[0], joint(enc, views)[0])


def test_mgfd_projects_each_view_separately():
    # Why per-view projection matters: BatchNorm over the 4 views at once gives other projections.
    enc = TinyEncoder()
    objective = MGFD(enc)
    views = make_views(noise=1.0)
    y = [enc(x) for x in views]
    per_view = torch.cat([objective.i_proj(v) for v in y])
    together = objective.i_proj(torch.cat(y))
    assert not torch.allclose(per_view, together, atol=1e-3)
    # forward = the pure composition on per-view projections (official: the model runs once per view)
    feats = [enc.forward_features(x) for x in views]
    zt = [objective.t_proj(f[0]) for f in feats]
    zs = [objective.s_proj(f[1]) for f in feats]
    zi = [objective.i_proj(f[2]) for f in feats]
    expected = objective.loss_from_projections(zi, zt, zs)["total"]
    for concat in (False, True):
        objective.concat_views = concat
        torch.testing.assert_close(objective(enc, views)[0], expected)


def test_mgfd_loss_decreases_with_adam():
    torch.manual_seed(0)
    enc = TinyEncoder()
    objective = MGFD(enc)
    params = list(enc.parameters()) + list(objective.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    views = make_views(n=32)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss, _ = objective(enc, views)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


# --- factory / registry ----------------------------------------------------------------------------------


def test_registry_and_create_objective():
    assert "mgfd" in OBJECTIVES and "negative_contrastive" in OBJECTIVES
    enc = TinyEncoder()
    objective = create_objective("mgfd", enc, xc=False, sim_weight=1.0)
    assert isinstance(objective, MGFD) and not objective.xc and objective.sim_weight == 1.0
    assert isinstance(create_objective("negative_contrastive", enc, queue_size=8), NegativeContrastive)
    assert objective_options("mgfd")["xc_weight"] == 1e-3
    with pytest.raises(ValueError, match=r"'xc_wieght'.*valid options: .*xc_weight"):
        create_objective("mgfd", enc, xc_wieght=1.0)
    with pytest.raises(KeyError, match="Did you mean: mgfd"):
        create_objective("mgdf", enc)


# --- negative contrastive --------------------------------------------------------------------------------


def test_contrastive_queue_pointer_advances_and_wraps():
    enc = TinyEncoder()
    objective = NegativeContrastive(enc, queue_size=10, proj_dim=4)
    keys = [torch.nn.functional.normalize(torch.randn(4, 4), dim=1) for _ in range(3)]
    objective.enqueue(keys[0])
    assert int(objective.queue_ptr) == 4
    objective.enqueue(keys[1])
    assert int(objective.queue_ptr) == 8
    objective.enqueue(keys[2])  # slots 8, 9, 0, 1
    assert int(objective.queue_ptr) == 2
    torch.testing.assert_close(objective.queue[8:10], keys[2][:2])
    torch.testing.assert_close(objective.queue[0:2], keys[2][2:])
    torch.testing.assert_close(objective.queue[2:4], keys[0][2:])
    torch.testing.assert_close(objective.queue[4:8], keys[1])

    big = torch.randn(13, 4)  # more keys than slots: the last 10 are kept, pointer moves by 13 mod 10
    objective.enqueue(big)
    assert int(objective.queue_ptr) == 5
    slots = [(2 + i) % 10 for i in range(3, 13)]
    torch.testing.assert_close(objective.queue[slots], big[3:])


def test_contrastive_forward_updates_queue_and_key_encoder():
    enc = TinyEncoder()
    objective = NegativeContrastive(enc, queue_size=24, momentum=0.9, proj_dim=4)
    assert all(not p.requires_grad for p in objective.key_encoder.parameters())
    with torch.no_grad():  # make query and key encoders differ so the EMA is visible
        for p in enc.parameters():
            p.add_(0.5)
    before = [p.clone() for p in objective.key_encoder.parameters()]
    views = make_views(n=16, k=2)
    loss, logs = objective(enc, views)
    loss.backward()
    assert int(objective.queue_ptr) == 16
    for p_q, p_k, p_old in zip(enc.parameters(), objective.key_encoder.parameters(), before):
        torch.testing.assert_close(p_k, 0.9 * p_old + 0.1 * p_q.detach())
        assert p_k.grad is None
    assert all(p.grad is None for p in objective.key_head.parameters())
    assert enc.t[1].weight.grad is not None and objective.head[0].weight.grad is not None
    assert set(logs) == {"infonce", "accuracy", "total"}
    # the new keys are in the queue
    with torch.no_grad():
        keys = torch.nn.functional.normalize(objective.key_head(objective.key_encoder(views[1])), dim=1)
    torch.testing.assert_close(objective.queue[:16], keys)

    objective.eval()
    queue, ptr = objective.queue.clone(), int(objective.queue_ptr)
    params = [p.clone() for p in objective.key_encoder.parameters()]
    objective(enc, views)
    assert int(objective.queue_ptr) == ptr and torch.equal(objective.queue, queue)
    assert all(torch.equal(a, b) for a, b in zip(params, objective.key_encoder.parameters()))


def test_contrastive_state_dict_round_trip():
    enc = TinyEncoder()
    objective = NegativeContrastive(enc, queue_size=20, proj_dim=4)
    objective(enc, make_views(n=6, k=2))
    state = objective.state_dict()
    assert "queue" in state and "queue_ptr" in state and any(k.startswith("key_encoder.") for k in state)
    fresh = NegativeContrastive(TinyEncoder(), queue_size=20, proj_dim=4)
    fresh.load_state_dict(state)
    assert int(fresh.queue_ptr) == 6 and torch.equal(fresh.queue, objective.queue)


def test_contrastive_loss_decreases():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    pool = torch.randn(256, *SHAPE, generator=g)
    enc = TinyEncoder(hidden_size=16)
    objective = NegativeContrastive(enc, queue_size=72, momentum=0.9, temperature=0.2, proj_dim=16)
    optimizer = torch.optim.Adam(list(enc.parameters()) + list(objective.parameters()), lr=3e-3)
    losses = []
    for step in range(40):
        idx = torch.randint(0, pool.shape[0], (32,), generator=g)
        x = pool[idx]
        views = [x + 0.1 * torch.randn(x.shape, generator=g) for _ in range(2)]
        optimizer.zero_grad()
        loss, _ = objective(enc, views)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # the first steps contrast against the random initial queue (easy negatives); compare against the
    # steps just after real keys have filled it (72 slots, 32 keys per step)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[3:8]), losses


@pytest.mark.parametrize(
    "options,match",
    [
        ({"queue_size": 0}, "queue_size"),
        ({"queue_size": -5}, "queue_size"),
        ({"temperature": 0.0}, "temperature"),
        ({"momentum": 1.5}, "momentum"),
        ({"proj_dim": 0}, "proj_dim"),
    ],
)
def test_contrastive_bad_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        NegativeContrastive(TinyEncoder(), **options)


def test_contrastive_needs_two_views():
    enc = TinyEncoder()
    objective = NegativeContrastive(enc, queue_size=8)
    with pytest.raises(ValueError, match="2 views"):
        objective(enc, make_views(k=1))


def test_mgfd_modal_consistency_on_early_fused_views():
    """MPCT: with ``modal_consistency`` the loss adds each modality's MG-FD (intra) and the pull of its
    projections to the fused ones (inter); a modality that carries the whole input (the others zero) has
    no inter-modal gap; the views must hold 3 channel groups."""
    from usdrl_bench.encoders import create_encoder
    from usdrl_bench.skeleton import NTU25, to_stream

    torch.manual_seed(0)
    encoder = create_encoder("sttr", "tiny", in_channels=9)
    objective = create_objective("mgfd", encoder, modal_consistency=1.0)
    joints = torch.randn(6, 3, 16, 25, 2)
    views = [to_stream(joints + 0.05 * torch.randn_like(joints), "jmb", NTU25) for _ in range(4)]
    assert views[0].shape == (6, 9, 16, 25, 2)
    loss, logs = objective(encoder, views)
    assert {"intra", "inter", "inter_joint", "inter_motion", "inter_bone", "sim", "vac"} <= set(logs)
    base = create_objective("mgfd", encoder)
    base.load_state_dict(objective.state_dict())
    plain, _ = base(encoder, views)
    assert torch.allclose(loss, plain + logs["intra"] + logs["inter"], rtol=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in encoder.parameters())
    joint_only = [torch.cat([v[:, :3], torch.zeros_like(v[:, 3:])], dim=1) for v in views]
    with torch.no_grad():
        objective.eval()
        _, logs = objective(encoder, joint_only)
    assert float(logs["inter_joint"]) < 1e-10 < float(logs["inter_motion"])
    with pytest.raises(ValueError, match="3 channel groups"):
        objective(create_encoder("sttr", "tiny", in_channels=4), [torch.randn(4, 4, 16, 25, 2)] * 4)
