"""The peer objectives under baselines/: losses against values computed by hand from the published
pseudo-code, forward shapes, an optimisation step, and plug-ins that import no private name of the suite."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from baselines.redundancy_reduction import (BarlowTwinsObjective, VICRegObjective, barlow_twins_loss, projector,
                                            vicreg_loss)
from usdrl_bench.encoders import create_encoder

ROOT = Path(__file__).resolve().parents[1]


def test_vicreg_loss_by_hand():
    # N 2, D 2: sim = mean of (0, 0, 4, 4) = 2; each view has one dimension of variance 2 (std > 1: no
    # hinge) and one of variance 0 (std sqrt(1e-4) = 0.01: hinge 0.99), so std = 0.99 / 2 / 2 * 2 = 0.495;
    # the covariances are diagonal: cov = 0
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    y = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    loss, logs = vicreg_loss(x, y)
    assert logs["sim"].item() == pytest.approx(2.0)
    assert logs["std"].item() == pytest.approx(0.495)
    assert logs["cov"].item() == pytest.approx(0.0)
    assert loss.item() == pytest.approx(25 * 2.0 + 25 * 0.495)
    # N 3, D 2, identical views with covariance matrix [[1, 1], [1, 1]]: off-diagonal squares 2 / D per view
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0]])
    loss, logs = vicreg_loss(z, z.clone())
    assert (logs["sim"].item(), logs["std"].item()) == (0.0, 0.0)
    assert logs["cov"].item() == pytest.approx(2.0) and loss.item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="N >= 2"):
        vicreg_loss(z[:1], z[:1])


def test_barlow_twins_loss_by_hand():
    # identical, perfectly correlated dimensions: c = [[1, 1], [1, 1]] / (1 + 1e-5): on-diagonal ~ 0,
    # off-diagonal 2 / (1 + 1e-5)^2
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    loss, logs = barlow_twins_loss(z, z.clone())
    k = 1 / (1 + 1e-5)
    assert logs["on_diag"].item() == pytest.approx(2 * (k - 1) ** 2, abs=1e-12)
    assert logs["off_diag"].item() == pytest.approx(2 * k ** 2)
    assert loss.item() == pytest.approx(2 * (k - 1) ** 2 + 0.0051 * 2 * k ** 2)
    # a constant dimension normalises to 0: c = [[k, k], [0, 0]] -> on (k - 1)^2 + 1, off k^2
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    loss, logs = barlow_twins_loss(z1, z, lambd=0.5)
    assert loss.item() == pytest.approx((k - 1) ** 2 + 1 + 0.5 * k ** 2)


def test_projector_shapes_follow_the_official_code():
    head = projector(8, (16, 16, 4), hidden_bias=False)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 16), (16, 16), (16, 4)]
    assert all(m.bias is None for m in linears)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head) == 2
    assert projector(8, (16, 4), hidden_bias=True)[0].bias is not None


@pytest.mark.slow
@pytest.mark.parametrize("cls,options", [(VICRegObjective, {}), (BarlowTwinsObjective, {"lambd": 0.01})])
def test_objectives_train_any_encoder(cls, options):
    torch.manual_seed(0)
    encoder = create_encoder("dste", "tiny")
    objective = cls(encoder, proj_dims=(32, 32, 16), **options)
    views = [torch.randn(8, 3, 16, 25, 2) for _ in range(cls.num_views)]
    loss, logs = objective(encoder, views)
    assert loss.ndim == 0 and torch.isfinite(loss) and set(logs) in ({"sim", "std", "cov"}, {"on_diag", "off_diag"})
    params = list(encoder.parameters()) + list(objective.parameters())
    optimiser = torch.optim.Adam(params, lr=1e-3)
    first = loss.item()
    for _ in range(15):
        optimiser.zero_grad()
        loss, _ = objective(encoder, views)
        loss.backward()
        optimiser.step()
    assert all(p.grad is not None for p in objective.head.parameters())
    assert loss.item() < first


def test_plugins_import_no_private_name_of_the_suite():
    for file in sorted((ROOT / "baselines").glob("*.py")):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("usdrl_bench"):
                assert not any(part.startswith("_") for part in node.module.split(".")), (file.name, node.module)
                assert not any(a.name.startswith("_") for a in node.names), (file.name, [a.name for a in node.names])
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("usdrl_bench"):
                        assert not any(part.startswith("_") for part in a.name.split(".")), (file.name, a.name)
