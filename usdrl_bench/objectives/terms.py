"""Feature-decorrelation loss terms of USDRL, one pure function per equation.

Every term takes projected embeddings ``z`` of shape ``(N, D)`` (N samples of one view, D projection
dimensions) and returns a scalar tensor. Each has two forms:

- ``"official"`` (the default): what ``model/loss.py`` of the official code computes (wengwanjiang/USDRL
  at 7e83bb6). The published numbers and checkpoints come from this form.
- ``"paper"``: the equation as printed in the paper. The differences are listed in
  FACTS §8 (``docs/facts.md``), rows 7-12, and repeated in each docstring.

References:

- [0] Weng et al., "USDRL: Unified Skeleton-Based Dense Representation Learning with Multi-Grained
  Feature Decorrelation", AAAI 2025 (Equations 7-13).
- [1] Official code, https://github.com/wengwanjiang/USDRL, ``model/loss.py`` and ``pretrain.py``.
- [2] Bardes, Ponce, LeCun, "VICReg", ICLR 2022 (variance and covariance terms).
- [3] Zbontar et al., "Barlow Twins", ICML 2021 (cross-correlation term).

Example:

    >>> z = torch.randn(32, 64)
    >>> vac_loss(z)                       # official 5 * variance + covariance
    >>> cross_correlation_loss(z, z + 0.1 * torch.randn_like(z))
"""

from __future__ import annotations

import itertools
import math
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Form = Literal["official", "paper"]
FORMS: tuple[str, ...] = ("official", "paper")

# Constants hard-coded in the official `model/loss.py` (FACTS.md §7, "Hard-coded constants").
#: γ, the target standard deviation of the variance term (Eq. 9; `v_ac`: ``relu(1 - std)``).
VARIANCE_THRESHOLD = 1.0
#: ε of the variance term; official: inside the square root, ``sqrt(var + 1e-4)``.
VARIANCE_EPS = 1e-4
#: μ, the weight of the variance term; official: applied inside `v_ac` (``5 * std_loss + cov_loss``).
STD_WEIGHT = 5.0
#: Weight of the off-diagonal sum in the official (Barlow Twins) cross-correlation (`xcorr_loss`).
OFFDIAG_WEIGHT = 0.005
#: τ of Eq. 7, the weight of the temporal and spatial domains (`pretrain.py`: ``i + 0.5 * (t + s)``).
DOMAIN_WEIGHT = 0.5
#: κ and η of Eq. 8; the paper gives no values, so both default to 1 in the paper form.
PAPER_KAPPA = 1.0
PAPER_ETA = 1.0
#: Number of views the official similarity term is written for (3 centre views + anchor view 4).
OFFICIAL_NUM_VIEWS = 4


def _check_form(form: str, name: str = "form") -> None:
    if form not in FORMS:
        raise ValueError(f"{name} must be one of {FORMS}, got {form!r}")


def _check_embedding(z: Tensor, name: str = "z", min_batch: int = 1) -> None:
    if not isinstance(z, Tensor) or z.dim() != 2:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{name} must be a 2-D tensor of shape (N, D), got {shape}")
    if z.shape[0] < min_batch:
        raise ValueError(
            f"{name} needs at least {min_batch} samples along dim 0 (batch statistics), got shape {tuple(z.shape)}"
        )


def _check_views(views: Sequence[Tensor], min_batch: int = 1) -> None:
    if isinstance(views, Tensor) or len(views) == 0:
        raise ValueError("views must be a non-empty sequence of (N, D) tensors, one per view")
    for k, z in enumerate(views):
        _check_embedding(z, f"views[{k}]", min_batch=min_batch)
    shapes = [tuple(z.shape) for z in views]
    if len(set(shapes)) != 1:
        raise ValueError(f"all views must have the same shape (N, D), got {shapes}")


def _off_diagonal(m: Tensor) -> Tensor:
    """The off-diagonal entries of a square ``(D, D)`` matrix, flattened to ``(D*D - D,)``.

    By a reshape, as the official ``off_diagonal`` (no boolean-mask indexing, hence no ``nonzero`` and no
    host synchronisation): dropping the last element of the flattened matrix and viewing the rest as
    ``(D - 1, D + 1)`` puts every diagonal entry in column 0.
    """
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def product_offdiag_sq_sum(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """``(Σ_{i≠j} (aᵀb)_ij², diag(aᵀb))`` for ``a``, ``b`` of shape ``(N, D)``, without forming ``aᵀb``
    when ``N < D``.

    With fewer samples than dimensions (the paper's batch 356 against D = 4096 instance dimensions) the
    squared Frobenius norm is taken from the two ``(N, N)`` Gram matrices,
    ``||aᵀb||_F² = Σ_{n,m} (a aᵀ)_{nm} (b bᵀ)_{nm}``, in ``O(N² D)`` instead of ``O(N D²)`` time and
    ``O(N²)`` instead of ``O(D²)`` memory; the diagonal is ``Σ_n a_{ni} b_{ni}``. Mathematically identical
    to the official ``D x D`` computation (float rounding differs). There the off-diagonal mass cannot be
    small: ``aᵀb`` has rank <= N, so ``||aᵀb||_F² >= (tr aᵀb)² / N``, and the subtraction of the
    diagonal loses no precision. With ``N >= D`` the ``D x D`` matrix is formed and its off-diagonal taken
    by :func:`_off_diagonal`, as the official code does.

    Returns:
        (scalar off-diagonal sum of squares, ``(D,)`` diagonal).
    """
    n, d = a.shape
    if n < d:
        diag = (a * b).sum(dim=0)
        gram = (a @ a.T) * (b @ b.T) if a is not b else (a @ a.T).pow(2)
        return gram.sum() - diag.pow(2).sum(), diag
    m = a.T @ b
    return _off_diagonal(m).pow(2).sum(), torch.diagonal(m)


def similarity_loss(
    views: Sequence[Tensor],
    form: Form = "official",
    kappa: float | None = None,
    eta: float | None = None,
) -> Tensor:
    """Intra-sample consistency between the K views of each sample; implements Equation 8 of [0].

    ``form="official"`` (default, `similarity` in [1]): with c = (z0 + z1 + z2) / 3 (not detached),
    ``MSE(z0, z3) + MSE(z1, z3) + MSE(z2, z3) + MSE(z0, c) + MSE(z1, c) + MSE(z2, c)``, where MSE is the
    mean of squared differences over all N*D elements (``nn.MSELoss``). Views 0-2 are pulled to their
    centre and to view 3, the anchor. There is no invariance (cosine) term, and no κ, η.

    ``form="paper"``: Equation 8 as printed,
    ``(1/K) Σ_a [κ ||z_a - z̄||_2 + η Σ_{b≠a} tr(I - ẑ_aᵀ ẑ_b)]``. Reading chosen here: z_a is one
    sample's D-vector (a column), so ``ẑ_aᵀ ẑ_b`` is the scalar cosine similarity and the trace term is
    ``1 - cos(z_a, z_b)``; ``||·||_2`` is the plain (not squared) Euclidean norm, although the text calls
    the similarity term an MSE; z̄ is the mean over all K views; the sum over b runs over ordered pairs
    (each unordered pair counted twice); the per-sample value is averaged over the N samples.

    Args:
        views: K tensors of shape (N, D), the projections of K views of the same N samples. The official
            form needs exactly K = 4, the paper form K >= 2.
        form: ``"official"`` or ``"paper"``.
        kappa: κ, weight of the similarity part (paper form only; default 1, the paper gives no value).
        eta: η, weight of the invariance part (paper form only; default 1).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: unknown form; wrong number of views; views not 2-D or of different shapes; κ or η
            given with the official form.
    """
    _check_form(form)
    _check_views(views)
    if form == "official":
        if kappa is not None or eta is not None:
            raise ValueError("kappa and eta belong to the paper form of Eq. 8; the official form has no such weights")
        if len(views) != OFFICIAL_NUM_VIEWS:
            raise ValueError(
                f"the official similarity term needs exactly {OFFICIAL_NUM_VIEWS} views "
                f"(3 centre views + 1 anchor), got {len(views)}"
            )
        *centre_views, anchor = views
        centre = torch.stack(centre_views).mean(dim=0)
        intra = sum(F.mse_loss(z, anchor) for z in centre_views)
        inter = sum(F.mse_loss(z, centre) for z in centre_views)
        return intra + inter

    kappa = PAPER_KAPPA if kappa is None else kappa
    eta = PAPER_ETA if eta is None else eta
    if len(views) < 2:
        raise ValueError(f"the paper similarity term (Eq. 8) needs at least 2 views, got {len(views)}")
    stacked = torch.stack(list(views))  # (K, N, D)
    K = stacked.shape[0]
    mean_view = stacked.mean(dim=0, keepdim=True)
    distance = (stacked - mean_view).norm(dim=-1)  # (K, N)
    unit = F.normalize(stacked, dim=-1)
    cosine = torch.einsum("and,bnd->abn", unit, unit)  # (K, K, N)
    # Σ_a Σ_{b≠a} (1 - cos): the sum over all pairs minus the K diagonal ones (no boolean-mask indexing)
    invariance = (1.0 - cosine).sum(dim=(0, 1)) - (1.0 - torch.diagonal(cosine, dim1=0, dim2=1)).sum(dim=-1)  # (N,)
    per_sample = (kappa * distance.sum(dim=0) + eta * invariance) / K
    return per_sample.mean()


def variance_loss(
    z: Tensor,
    gamma: float = VARIANCE_THRESHOLD,
    eps: float = VARIANCE_EPS,
    form: Form = "official",
) -> Tensor:
    """Variance term, a hinge on the per-dimension standard deviation; implements Equation 9 of [0].

    ``form="official"`` (default, `v_ac` in [1], as in VICReg [2]):
    ``mean_j ReLU(γ - sqrt(Var(z[:, j]) + ε))`` with the unbiased variance, γ = 1, ε = 1e-4.

    ``form="paper"``: ``mean_j ReLU(γ - sqrt(Var(z[:, j])) + ε)``, ε outside the root, as printed. Its
    gradient is infinite where a dimension has zero variance.

    Args:
        z: (N, D) projections of one view; N >= 2.
        gamma: γ, the target standard deviation (official 1).
        eps: ε (official 1e-4).
        form: ``"official"`` or ``"paper"``.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: unknown form, or ``z`` is not 2-D with at least 2 rows.
    """
    _check_form(form)
    _check_embedding(z, min_batch=2)
    var = z.var(dim=0, unbiased=True)
    if form == "official":
        return F.relu(gamma - torch.sqrt(var + eps)).mean()
    return F.relu(gamma - torch.sqrt(var) + eps).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Auto-covariance term; implements Equation 10 of [0] (same in the official code [1] and VICReg [2]).

    ``Σ_{i≠j} Cov(z)_{ij}² / D`` with ``Cov(z) = (z - mean)ᵀ (z - mean) / (N - 1)``.

    Args:
        z: (N, D) projections of one view; N >= 2.

    Returns:
        Scalar tensor; 0 when the dimensions are uncorrelated over the batch.

    Raises:
        ValueError: ``z`` is not 2-D with at least 2 rows.
    """
    _check_embedding(z, min_batch=2)
    N, D = z.shape
    centred = (z - z.mean(dim=0)) / math.sqrt(N - 1)  # Cov(z) = centredᵀ centred
    off_diag, _ = product_offdiag_sq_sum(centred, centred)
    return off_diag / D


def vac_loss(
    z: Tensor,
    std_weight: float = STD_WEIGHT,
    gamma: float = VARIANCE_THRESHOLD,
    eps: float = VARIANCE_EPS,
    variance_form: Form = "official",
) -> Tensor:
    """Variance + auto-covariance of one view, ``μ V(z) + AC(z)``: the unary part of Equation 12 of [0].

    Official `v_ac` [1] is ``5 * variance + covariance``: μ = 5 sits inside the term, and the outer weight
    of the summed VAC in the total loss is 1.

    Args:
        z: (N, D) projections of one view; N >= 2.
        std_weight: μ (official 5).
        gamma: γ of the variance term (official 1).
        eps: ε of the variance term (official 1e-4).
        variance_form: ``"official"`` or ``"paper"`` form of the variance term (see `variance_loss`).

    Returns:
        Scalar tensor.

    Raises:
        ValueError: as `variance_loss` and `covariance_loss`.
    """
    return std_weight * variance_loss(z, gamma=gamma, eps=eps, form=variance_form) + covariance_loss(z)


def cross_correlation_matrix(a: Tensor, b: Tensor) -> Tensor:
    """``(D, D)`` cross-correlation of two views as in the official `xcorr_loss` [1].

    Each view is standardised per dimension with its batch mean and *unbiased* standard deviation, with
    no ε, then ``C = âᵀ b̂ / N``. Because of the unbiased std, ``diag(C)`` of identical inputs is
    ``(N - 1) / N``, not 1 (Barlow Twins [3] standardises with the biased BatchNorm statistics). A
    dimension that is constant over the batch gives NaN, as in the official code.

    Args:
        a: (N, D) projections of one view.
        b: (N, D) projections of another view of the same samples.

    Raises:
        ValueError: shapes differ, are not 2-D, or N < 2.
    """
    _check_embedding(a, "a", min_batch=2)
    _check_embedding(b, "b", min_batch=2)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    N = a.shape[0]
    a_std = (a - a.mean(dim=0)) / a.std(dim=0, unbiased=True)
    b_std = (b - b.mean(dim=0)) / b.std(dim=0, unbiased=True)
    return a_std.T @ b_std / N


def cross_correlation_loss(
    a: Tensor,
    b: Tensor,
    offdiag_weight: float = OFFDIAG_WEIGHT,
    form: Form = "official",
) -> Tensor:
    """Cross-correlation (Xcorr) term between two views; implements Equation 11 of [0].

    ``form="official"`` (default, `xcorr_loss` in [1], the Barlow Twins loss [3]):
    ``Σ_i (C_ii - 1)² + offdiag_weight * Σ_{i≠j} C_ij²`` with C from `cross_correlation_matrix` and
    offdiag_weight = 0.005.

    ``form="paper"``: ``Σ_{i≠j} C_ij²``, the off-diagonal sum only, as printed (same C);
    ``offdiag_weight`` is not used.

    The term is symmetric in ``a`` and ``b`` (C(b, a) = C(a, b)ᵀ).

    Args:
        a: (N, D) projections of one view; N >= 2.
        b: (N, D) projections of another view of the same samples.
        offdiag_weight: weight of the off-diagonal sum (official form only; official 0.005).
        form: ``"official"`` or ``"paper"``.

    Returns:
        Scalar tensor.

    Raises:
        ValueError: unknown form; shapes differ, are not 2-D, or N < 2.
    """
    _check_form(form)
    _check_embedding(a, "a", min_batch=2)
    _check_embedding(b, "b", min_batch=2)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape (N, D), got {tuple(a.shape)} and {tuple(b.shape)}")
    # C = âᵀ b̂ / N as in cross_correlation_matrix, without forming it when N < D
    N = a.shape[0]
    scale = math.sqrt(N)
    a_std = (a - a.mean(dim=0)) / (a.std(dim=0, unbiased=True) * scale)
    b_std = (b - b.mean(dim=0)) / (b.std(dim=0, unbiased=True) * scale)
    off_diag, diag = product_offdiag_sq_sum(a_std, b_std)
    if form == "paper":
        return off_diag
    on_diag = (diag - 1.0).pow(2).sum()
    return on_diag + offdiag_weight * off_diag


def pairwise_cross_correlation_loss(
    views: Sequence[Tensor],
    offdiag_weight: float = OFFDIAG_WEIGHT,
    form: Form = "official",
) -> Tensor:
    """``Σ_{a<b} XC(z_a, z_b)`` over all K(K-1)/2 view pairs: the pairwise part of Equation 12 of [0].

    Official `cal_xc` [1] sums the 6 pairs of 4 views.

    Args:
        views: K >= 2 tensors of shape (N, D).
        offdiag_weight, form: as in `cross_correlation_loss`.

    Raises:
        ValueError: fewer than 2 views, or as `cross_correlation_loss`.
    """
    _check_views(views, min_batch=2)
    if len(views) < 2:
        raise ValueError(f"the cross-correlation term needs at least 2 views, got {len(views)}")
    return sum(
        cross_correlation_loss(a, b, offdiag_weight=offdiag_weight, form=form)
        for a, b in itertools.combinations(views, 2)
    )


def combine_domains(
    instance: Tensor,
    temporal: Tensor | None = None,
    spatial: Tensor | None = None,
    domain_weight: float = DOMAIN_WEIGHT,
) -> Tensor:
    """Multi-grained combination ``L(i) + τ (L(t) + L(s))``; implements Equation 7 of [0].

    The official code [1] applies it to each of the similarity, VAC and Xcorr terms separately with
    τ = 0.5; by linearity that equals Eq. 7 applied to their weighted sum.

    Args:
        instance: scalar loss of the instance domain.
        temporal: scalar loss of the temporal domain, or None (single-grained: instance only).
        spatial: scalar loss of the spatial domain, or None together with ``temporal``.
        domain_weight: τ (official 0.5).

    Raises:
        ValueError: exactly one of ``temporal`` and ``spatial`` is None.
    """
    if (temporal is None) != (spatial is None):
        raise ValueError("temporal and spatial must both be given (multi-grained) or both be None (instance only)")
    if temporal is None:
        return instance
    return instance + domain_weight * (temporal + spatial)
