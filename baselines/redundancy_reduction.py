"""VICReg and Barlow Twins as pretraining objectives for any registered encoder.

* **VICReg** (Bardes, Ponce and LeCun, ICLR 2022; facebookresearch/vicreg ``main_vicreg.py``): invariance
  (MSE between the two views' projections), variance (hinge on each dimension's standard deviation,
  ``sqrt(var + 1e-4)``, below 1) and covariance (squared off-diagonal covariances over ``D``) terms, weights
  25 / 25 / 1; projector ``[Linear-BN-ReLU] x 2 + Linear(bias=False)``.
* **Barlow Twins** (Zbontar et al., ICML 2021; facebookresearch/barlowtwins ``main.py``): the cross-correlation
  matrix of the batch-normalised projections (``BatchNorm1d(affine=False)``, over the batch) driven to the
  identity, ``sum (1 - c_ii)^2 + lambd * sum_{i != j} c_ij^2`` with ``lambd = 0.0051``; projector
  ``[Linear(bias=False)-BN-ReLU] x 2 + Linear(bias=False)``.

Reproduced: the losses as the official code computes them, and their projector shapes. Simplified: the
projector widths default to 2048 (8192 in the ImageNet code: set ``proj_dims``), the optimiser is the
protocol's (the official LARS schedules are not reproduced), and VICReg's invariance term is computed on
the gathered global batch, so a data-parallel run equals one process (the official code computes it on
each GPU's local batch before gathering; on one process the two agree).

Registered as methods ``vicreg`` and ``barlow_twins`` on DSTE (the suite's encoder; no skeleton paper pairs
these losses with it): ``paper`` is the official loss and projector (8192 widths) with USDRL's schedule (the
LARS ImageNet schedules are not reproduced), ``cpu`` the leaderboard's CPU size.

Both use only the public contract (``usdrl_bench.Objective``, ``register_objective``) and
``usdrl_bench.distributed.gather_with_grad``. Use them with ``plugins: [baselines.redundancy_reduction]`` and
``objective: vicreg_official`` or ``objective: barlow_twins``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usdrl_bench import Objective, register_method, register_objective
from usdrl_bench.distributed import gather_with_grad

__all__ = ["vicreg_loss", "barlow_twins_loss", "VICRegObjective", "BarlowTwinsObjective", "projector"]


def _off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of a square matrix, flattened."""
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def vicreg_loss(x: Tensor, y: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0,
                cov_coeff: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """VICReg's loss of two views' projections ``x``, ``y`` of shape ``(N, D)`` (``main_vicreg.py``).

    Returns:
        ``(loss, {"sim", "std", "cov"})`` with ``loss = sim_coeff * sim + std_coeff * std + cov_coeff * cov``.
    Raises:
        ValueError: shapes differ, or fewer than 2 samples (no variance).
    """
    if x.shape != y.shape or x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"vicreg_loss: x and y must both be (N >= 2, D); got {tuple(x.shape)} and {tuple(y.shape)}")
    n, d = x.shape
    sim = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 1e-4)
    std_y = torch.sqrt(y.var(dim=0) + 1e-4)
    std = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov = _off_diagonal(cov_x).pow(2).sum() / d + _off_diagonal(cov_y).pow(2).sum() / d
    loss = sim_coeff * sim + std_coeff * std + cov_coeff * cov
    return loss, {"sim": sim.detach(), "std": std.detach(), "cov": cov.detach()}


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.0051, eps: float = 1e-5) -> tuple[Tensor, dict[str, Tensor]]:
    """Barlow Twins' loss of two views' projections ``(N, D)`` (``main.py``): ``c = bn(z1)^T bn(z2) / N``
    with ``bn`` a batch normalisation without affine parameters (biased variance, ``eps`` 1e-5), then
    ``sum_i (c_ii - 1)^2 + lambd * sum_{i != j} c_ij^2``.

    Returns:
        ``(loss, {"on_diag", "off_diag"})``.
    Raises:
        ValueError: shapes differ, or fewer than 2 samples.
    """
    if z1.shape != z2.shape or z1.ndim != 2 or z1.shape[0] < 2:
        raise ValueError(f"barlow_twins_loss: z1 and z2 must both be (N >= 2, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")

    def bn(z: Tensor) -> Tensor:
        return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)

    c = bn(z1).T @ bn(z2) / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag, {"on_diag": on_diag.detach(), "off_diag": off_diag.detach()}


def projector(in_dim: int, dims: Sequence[int], *, hidden_bias: bool) -> nn.Sequential:
    """``[Linear-BN-ReLU] x (len(dims) - 1) + Linear(bias=False)`` from ``in_dim`` through ``dims``."""
    if not dims:
        raise ValueError("projector: dims must name at least one width")
    layers: list[nn.Module] = []
    width = in_dim
    for out in dims[:-1]:
        layers += [nn.Linear(width, out, bias=hidden_bias), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
        width = out
    layers.append(nn.Linear(width, dims[-1], bias=False))
    return nn.Sequential(*layers)


@register_objective("vicreg_official")
class VICRegObjective(Objective):
    """VICReg (ICLR 2022) on the instance features of two views (module docstring)."""

    num_views = 2
    uneven_shards = True  # every term is computed on the gathered global batch

    def __init__(self, encoder, *, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0,
                 proj_dims: tuple[int, ...] = (2048, 2048, 2048)) -> None:
        super().__init__(encoder)
        self.head = projector(encoder.embed_dim, tuple(proj_dims), hidden_bias=True)
        self.coeffs = (float(sim_coeff), float(std_coeff), float(cov_coeff))

    def forward(self, encoder, views):
        x, y = (gather_with_grad(self.head(encoder(v))) for v in views[:2])
        return vicreg_loss(x, y, *self.coeffs)


@register_objective("barlow_twins")
class BarlowTwinsObjective(Objective):
    """Barlow Twins (ICML 2021) on the instance features of two views (module docstring)."""

    num_views = 2
    uneven_shards = True  # the cross-correlation is computed on the gathered global batch

    def __init__(self, encoder, *, lambd: float = 0.0051, proj_dims: tuple[int, ...] = (2048, 2048, 2048)) -> None:
        super().__init__(encoder)
        self.head = projector(encoder.embed_dim, tuple(proj_dims), hidden_bias=False)
        self.lambd = float(lambd)

    def forward(self, encoder, views):
        z1, z2 = (gather_with_grad(self.head(encoder(v))) for v in views[:2])
        return barlow_twins_loss(z1, z2, self.lambd)


def _presets(widths: int, **loss_options) -> dict:
    return {
        "paper": {"encoder_preset": "paper", "objective_options": {"proj_dims": [widths] * 3, **loss_options},
                  "pretrain": {"optimizer": "adam", "lr": 5e-4, "weight_decay": 1e-5, "batch_size": 356, "epochs": 451,
                               "milestones": [351], "gamma": 0.1, "schedule": "step"}},
        # about 8 minutes of one core on NW-UCLA (2.3 s an epoch at hidden 32, two views)
        "cpu": {"encoder_preset": "small", "encoder_options": {"hidden_size": 32},
                "objective_options": {"proj_dims": [512, 512, 512], **loss_options},
                "pretrain": {"epochs": 200, "milestones": [160]}},
    }


register_method("vicreg", encoder="dste", objective="vicreg_official",
                paper="Bardes, Ponce and LeCun, VICReg: Variance-Invariance-Covariance Regularization for "
                      "Self-Supervised Learning, ICLR 2022",
                repository="github.com/facebookresearch/vicreg", commit="4e12602f",
                description="VICReg's loss on DSTE (official loss and projector, USDRL's schedule)",
                presets=_presets(8192))
register_method("barlow_twins", encoder="dste", objective="barlow_twins",
                paper="Zbontar et al., Barlow Twins: Self-Supervised Learning via Redundancy Reduction, ICML 2021",
                repository="github.com/facebookresearch/barlowtwins", commit="8e8d284c",
                description="Barlow Twins' loss on DSTE (official loss and projector, USDRL's schedule)",
                presets=_presets(8192))
