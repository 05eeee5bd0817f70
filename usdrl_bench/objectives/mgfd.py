"""Multi-Grained Feature Decorrelation (MG-FD), the USDRL pretraining objective.

References:

- [0] Weng et al., "USDRL: Unified Skeleton-Based Dense Representation Learning with Multi-Grained
  Feature Decorrelation", AAAI 2025, Equations 7-13 and Table 5 (ablation of VAC, XC and multi-grained).
- [1] Official code, https://github.com/wengwanjiang/USDRL, ``pretrain.py`` (loss composition and weights)
  and ``model/loss.py`` (terms); see FACTS §7 and §8 (``docs/facts.md``).

The terms themselves are the pure functions of `usdrl_bench.objectives.terms`; this module wires the
encoder, the three domain projectors and the views into them.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Sequence

import torch
from torch import Tensor, nn

from usdrl_bench.distributed import gather_with_grad
from usdrl_bench.objectives.projector import Projector
from usdrl_bench.objectives.terms import (
    DOMAIN_WEIGHT,
    FORMS,
    OFFDIAG_WEIGHT,
    OFFICIAL_NUM_VIEWS,
    STD_WEIGHT,
    VARIANCE_EPS,
    VARIANCE_THRESHOLD,
    Form,
    combine_domains,
    pairwise_cross_correlation_loss,
    similarity_loss,
    vac_loss,
)
from usdrl_bench.objectives.base import Objective, register_objective
from usdrl_bench.ranges import NonNegativeFloat, PositiveInt

# Outer weights of the total loss, `ws` in the official `pretrain.py` (FACTS.md §7):
#: weight of the similarity (consistency) term.
SIM_WEIGHT = 5.0
#: weight of the summed variance + auto-covariance term (μ = 5 is applied inside, see terms.STD_WEIGHT).
VAC_WEIGHT = 1.0
#: λ, weight of the cross-correlation term summed over the view pairs (0 in the TPAMI extension).
XC_WEIGHT = 1e-3
#: Projection widths relative to the encoder hidden size H (official `model/DSTE.py`): the hidden layers
#: and the temporal/spatial outputs are 2H wide (2048 for H = 1024), the instance output twice that (4096).
PROJ_HIDDEN_MULT = 2
PROJ_OUT_MULT = 2
INSTANCE_OUT_MULT = 2
#: the channel groups of early-fused views, in order (the ``jmb`` stream of :func:`usdrl_bench.skeleton.to_stream`)
MODALITIES = ("joint", "motion", "bone")


def _check_weight(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"MGFD {name} must be a finite number >= 0, got {value!r}")


def _check_dim(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"MGFD {name} must be a positive int or None, got {value!r}")


def _loss_precision(device: torch.device):
    """Compute the loss in float32 even inside an autocast region (the official code ran it under fp16)."""
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


def _check_domain(name: str, zs: Sequence[Tensor]) -> None:
    if isinstance(zs, Tensor) or len(zs) < 2:
        raise ValueError(f"{name} must be a list of at least 2 per-view (N, D) tensors, got {type(zs).__name__}")
    shapes = [tuple(z.shape) for z in zs]
    if any(len(s) != 2 for s in shapes) or len(set(shapes)) != 1:
        raise ValueError(f"{name} must hold per-view tensors of one shape (N, D), got {shapes}")


@register_objective("mgfd", description="USDRL multi-grained feature decorrelation (similarity + VAC + Xcorr)")
class MGFD(Objective):
    """USDRL's Multi-Grained Feature Decorrelation objective; implements Equations 7-13 of [0] as [1] does.

    For each domain d ∈ {t (temporal), s (spatial), i (instance)} and K views z_1..z_K of shape (N, D_d):

    - sim_d = `similarity_loss` (official: views 0-2 to their centre and to view 3; Eq. 8),
    - vac_d = Σ_k `vac_loss`(z_k) (5 · variance + covariance per view; Eqs. 9, 10),
    - xcorr_d = Σ_{a<b} `cross_correlation_loss`(z_a, z_b) (all 6 pairs of 4 views; Eq. 11),

    each combined across domains as ``X_i + 0.5 (X_t + X_s)`` (Eq. 7), and
    ``total = 5 · sim + 1 · vac + 1e-3 · xcorr`` (official ``pretrain.py``). Defaults reproduce the official
    code; ``similarity_form``, ``variance_form`` and ``xc_form`` select the paper's equations instead
    (FACTS.md §8, rows 8, 9, 11). ``vac``, ``xc`` and ``multi_grained`` are the switches of Table 5.

    The objective owns the projectors ``t_proj``, ``s_proj`` (``H → 2H → 2H → 2H``) and ``i_proj``
    (``2H → 2H → 2H → 4H``), named and shaped like the official checkpoint keys. The encoder is *not* a
    submodule: it is passed to `forward`, and only its sizes are read here.

    Views and BatchNorm: the official model runs encoder and projectors once per view. The projectors'
    BatchNorm makes the loss depend on which samples share a batch, so they always see one view at a
    time here. The DSTE/STTR encoders have no batch-coupled layers (LayerNorm only), so
    ``concat_views=True`` runs the encoder once on all K views concatenated (faster; same result up to
    the DropPath draws) and splits its features before projecting. Keep it False for an encoder with
    BatchNorm, where concatenation would change the statistics.

    Args:
        encoder: module with ``hidden_size`` H, optional ``embed_dim`` (default 2H), ``forward(x) -> y_i``
            and, for ``multi_grained=True``, ``forward_features(x) -> (y_t (N, H), y_s (N, H), y_i (N, 2H))``.
        vac: include the variance + auto-covariance term.
        xc: include the cross-correlation term.
        multi_grained: use the temporal and spatial domains too; False = instance domain only (no
            ``t_proj``/``s_proj``).
        sim_weight: outer weight of the similarity term (official 5).
        vac_weight: outer weight of the VAC term (official 1).
        xc_weight: λ, outer weight of the Xcorr term (official 1e-3).
        domain_weight: τ of Eq. 7 (official 0.5).
        std_weight: μ, weight of the variance term inside VAC (official 5).
        offdiag_weight: off-diagonal weight inside the official Xcorr (0.005); only with
            ``xc_form="official"``.
        proj_hidden: width of the projectors' hidden layers (default 2H).
        proj_out: output width of the temporal and spatial projectors (default 2H); the instance projector
            outputs twice this (official 4H).
        similarity_form, variance_form, xc_form: ``"official"`` or ``"paper"`` (see the terms).
        kappa, eta: κ and η of Eq. 8, only with ``similarity_form="paper"`` (default 1 each).
        gamma: γ of the variance term (official 1).
        eps: ε of the variance term (official 1e-4, inside the square root).
        concat_views: run the encoder once on all views concatenated (see above).
        modal_consistency: weight of the multi-modal consistency of the journal extension's MPCT (0: off,
            the AAAI objective). The views must be the early fusion of joint, motion and bone (the ``jmb``
            stream: 3 channel groups along C). Each view is also encoded with only one modality's channels
            kept (the others zeroed: with a linear embedding, that modality's own embedding), and the loss
            adds ``modal_consistency / 3 · Σ_m [MG-FD(views of m) + 5 · Σ_d w_d · MSE(z_m, sg(z_fused))]``:
            intra-modal consistency (each modality's own MG-FD over its views) and inter-modal consistency
            (each modality's projections pulled to the fused ones, which receive no gradient from this
            term), with the domain weights of Eq. 7. This follows UmURL's intra- and inter-modal
            consistency; the journal's exact form is not public (its code has no multi-modal training,
            FACTS-foundation §2).

    Shapes:
        ``forward(encoder, [x_1..x_K])`` with each x_k ``(N, C, T, V, M)``, N >= 2 ->
        ``(scalar loss, {"sim", "vac", "xcorr", "total"} 0-d tensors)``; disabled terms are absent.

    Raises:
        ValueError: an unknown form, a negative or non-finite weight, a non-positive width, κ/η or a
            non-default ``offdiag_weight`` given to a form that has no such parameter, or an encoder
            without a positive ``hidden_size``.

    Example:

        >>> objective = MGFD(encoder)
        >>> loss, logs = objective(encoder, [v1, v2, v3, v4])
        >>> loss.backward()
    """

    #: Number of augmented views the trainer should make per sample (official: 4).
    num_views: int = OFFICIAL_NUM_VIEWS
    #: every term is computed from projections gathered in global order: the global batch's on any split
    uneven_shards = True

    def __init__(
        self,
        encoder: nn.Module,
        *,
        vac: bool = True,
        xc: bool = True,
        multi_grained: bool = True,
        sim_weight: NonNegativeFloat = SIM_WEIGHT,
        vac_weight: NonNegativeFloat = VAC_WEIGHT,
        xc_weight: NonNegativeFloat = XC_WEIGHT,
        domain_weight: NonNegativeFloat = DOMAIN_WEIGHT,
        std_weight: NonNegativeFloat = STD_WEIGHT,
        offdiag_weight: NonNegativeFloat = OFFDIAG_WEIGHT,
        proj_hidden: PositiveInt | None = None,
        proj_out: PositiveInt | None = None,
        similarity_form: Form = "official",
        variance_form: Form = "official",
        xc_form: Form = "official",
        kappa: NonNegativeFloat | None = None,
        eta: NonNegativeFloat | None = None,
        gamma: NonNegativeFloat = VARIANCE_THRESHOLD,
        eps: NonNegativeFloat = VARIANCE_EPS,
        concat_views: bool = False,
        modal_consistency: NonNegativeFloat = 0.0,
    ) -> None:
        super().__init__()
        for name, form in (("similarity_form", similarity_form), ("variance_form", variance_form), ("xc_form", xc_form)):
            if form not in FORMS:
                raise ValueError(f"MGFD {name} must be one of {FORMS}, got {form!r}")
        for name, value in (
            ("sim_weight", sim_weight),
            ("vac_weight", vac_weight),
            ("xc_weight", xc_weight),
            ("domain_weight", domain_weight),
            ("std_weight", std_weight),
            ("offdiag_weight", offdiag_weight),
            ("gamma", gamma),
            ("eps", eps),
            ("modal_consistency", modal_consistency),
        ):
            _check_weight(name, value)
        for name, value in (("kappa", kappa), ("eta", eta)):
            if value is not None:
                if similarity_form != "paper":
                    raise ValueError(f"MGFD {name} applies to similarity_form='paper' only (Eq. 8), not 'official'")
                _check_weight(name, value)
        if xc_form == "paper" and offdiag_weight != OFFDIAG_WEIGHT:
            raise ValueError(
                "MGFD offdiag_weight applies to xc_form='official' only; the paper's Eq. 11 is the off-diagonal sum alone"
            )
        _check_dim("proj_hidden", proj_hidden)
        _check_dim("proj_out", proj_out)
        hidden_size = getattr(encoder, "hidden_size", None)
        if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError(
                f"MGFD needs an encoder with a positive int `hidden_size`; {type(encoder).__name__} has {hidden_size!r}"
            )
        embed_dim = getattr(encoder, "embed_dim", 2 * hidden_size)

        self.vac, self.xc, self.multi_grained = bool(vac), bool(xc), bool(multi_grained)
        self.sim_weight, self.vac_weight, self.xc_weight = sim_weight, vac_weight, xc_weight
        self.domain_weight, self.std_weight, self.offdiag_weight = domain_weight, std_weight, offdiag_weight
        self.similarity_form, self.variance_form, self.xc_form = similarity_form, variance_form, xc_form
        self.kappa, self.eta, self.gamma, self.eps = kappa, eta, gamma, eps
        self.concat_views = bool(concat_views)
        self.modal_consistency = float(modal_consistency)

        hidden = proj_hidden or PROJ_HIDDEN_MULT * hidden_size
        out = proj_out or PROJ_OUT_MULT * hidden_size
        self.i_proj = Projector(embed_dim, hidden, INSTANCE_OUT_MULT * out)
        if self.multi_grained:
            self.t_proj = Projector(hidden_size, hidden, out)
            self.s_proj = Projector(hidden_size, hidden, out)
        else:
            self.t_proj = self.s_proj = None

    def extra_repr(self) -> str:
        return (
            f"vac={self.vac}, xc={self.xc}, multi_grained={self.multi_grained}, "
            f"weights(sim={self.sim_weight}, vac={self.vac_weight}, xc={self.xc_weight}, domain={self.domain_weight}), "
            f"forms(sim={self.similarity_form}, var={self.variance_form}, xc={self.xc_form})"
        )

    def _domain_terms(self, zs: Sequence[Tensor]) -> dict[str, Tensor]:
        terms = {"sim": similarity_loss(zs, form=self.similarity_form, kappa=self.kappa, eta=self.eta)}
        if self.vac:
            terms["vac"] = sum(
                vac_loss(z, std_weight=self.std_weight, gamma=self.gamma, eps=self.eps, variance_form=self.variance_form)
                for z in zs
            )
        if self.xc:
            terms["xcorr"] = pairwise_cross_correlation_loss(zs, offdiag_weight=self.offdiag_weight, form=self.xc_form)
        return terms

    def loss_from_projections(
        self,
        zi: Sequence[Tensor],
        zt: Sequence[Tensor] | None = None,
        zs: Sequence[Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """The pure loss composition on already projected views (Eqs. 7 and 12-13 as in ``pretrain.py``).

        Computed in float32 with autocast disabled.

        Args:
            zi: K instance-domain projections, each (N, D_i).
            zt: K temporal-domain projections, each (N, D_t); None when ``multi_grained=False``.
            zs: K spatial-domain projections, each (N, D_s); None when ``multi_grained=False``.

        Returns:
            ``{"sim", "vac", "xcorr", "total"}`` scalar tensors (with gradients); "sim", "vac", "xcorr" are
            the domain-combined, unweighted terms; disabled terms are absent.

        Raises:
            ValueError: zt/zs given or missing against ``multi_grained``, different view counts, shapes
                that differ between views, or as the terms.
        """
        _check_domain("zi", zi)
        if self.multi_grained:
            if zt is None or zs is None:
                raise ValueError("multi_grained=True needs zt and zs (temporal and spatial projections)")
            _check_domain("zt", zt)
            _check_domain("zs", zs)
            if not len(zi) == len(zt) == len(zs):
                raise ValueError(f"zi, zt, zs must hold the same number of views, got {len(zi)}, {len(zt)}, {len(zs)}")
        elif zt is not None or zs is not None:
            raise ValueError("multi_grained=False uses the instance domain only; pass zt=None and zs=None")

        with _loss_precision(zi[0].device):
            per_domain_i = self._domain_terms([z.float() for z in zi])
            if self.multi_grained:
                per_domain_t = self._domain_terms([z.float() for z in zt])
                per_domain_s = self._domain_terms([z.float() for z in zs])
                out = {
                    k: combine_domains(v, per_domain_t[k], per_domain_s[k], self.domain_weight)
                    for k, v in per_domain_i.items()
                }
            else:
                out = dict(per_domain_i)
            weights = {"sim": self.sim_weight, "vac": self.vac_weight, "xcorr": self.xc_weight}
            out["total"] = sum(weights[k] * v for k, v in out.items())
        return out

    def _encode(self, encoder: nn.Module, views: list[Tensor]) -> list:
        run = encoder.forward_features if self.multi_grained else encoder
        if not self.concat_views:
            return [run(x) for x in views]
        feats = run(torch.cat(views, dim=0))
        sizes = [x.shape[0] for x in views]
        if self.multi_grained:
            return list(zip(*(f.split(sizes, dim=0) for f in feats)))
        return list(feats.split(sizes, dim=0))

    def forward(self, encoder: nn.Module, views: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Encode and project each view, then compute the loss.

        Args:
            encoder: the encoder being trained (see the class docstring for its interface).
            views: K augmented views of the same N samples, each (N, C, T, V, M); the official form needs
                K = 4.

        Returns:
            ``(total, logs)``: the scalar loss to backpropagate and the detached terms as 0-d tensors on the
            loss's device (read them with ``float()`` off the training loop's hot path: reading is a host
            synchronisation on a GPU). Inside a process group the projections of all ranks are gathered
            first (:func:`usdrl_bench.distributed.gather_with_grad`), so the loss is that of the global batch.

        Raises:
            ValueError: fewer than 2 views or views of different shapes.
        """
        views = list(views)
        shapes = [tuple(x.shape) for x in views]
        if len(views) < 2 or len(set(shapes)) != 1:
            raise ValueError(f"MGFD needs at least 2 views of one shape (N, C, T, V, M), got shapes {shapes}")
        zi, zt, zs = self._project(encoder, views)
        terms = self.loss_from_projections(zi, zt, zs)
        if self.modal_consistency > 0:
            total = terms["total"]
            terms.update(self._modal_terms(encoder, views, zi, zt, zs))
            terms["total"] = total + self.modal_consistency * (terms["intra"] + terms["inter"])  # logged parts stay unweighted
        return terms["total"], {k: v.detach() for k, v in terms.items()}

    def _project(self, encoder: nn.Module, views: list[Tensor]):
        """Encode and project the views: ``(zi, zt, zs)`` lists (zt, zs None without multi_grained)."""
        feats = self._encode(encoder, views)
        # data-parallel: every batch statistic sees the global batch (projections gathered with gradients)
        if self.multi_grained:
            zt = [gather_with_grad(self.t_proj(y_t)) for y_t, _, _ in feats]
            zs = [gather_with_grad(self.s_proj(y_s)) for _, y_s, _ in feats]
            zi = [gather_with_grad(self.i_proj(y_i)) for _, _, y_i in feats]
            return zi, zt, zs
        return [gather_with_grad(self.i_proj(y_i)) for y_i in feats], None, None

    def _modal_terms(self, encoder: nn.Module, views: list[Tensor], zi, zt, zs) -> dict[str, Tensor]:
        """MPCT's intra- and inter-modal consistency (see ``modal_consistency``), averaged over the 3
        modalities of the early-fused views."""
        channels = views[0].shape[1]
        if channels % 3:
            raise ValueError(f"MGFD modal_consistency needs early-fused joint, motion and bone views (the jmb stream: "
                             f"3 channel groups), got C = {channels}")
        group = channels // 3
        fused = [zi] + ([zt, zs] if self.multi_grained else [])
        intra, inter = [], []
        for m in range(3):
            keep = torch.zeros(channels, device=views[0].device, dtype=views[0].dtype)
            keep[m * group:(m + 1) * group] = 1
            uni = [x * keep.view(1, -1, 1, 1, 1) for x in views]
            ui, ut, us = self._project(encoder, uni)
            intra.append(self.loss_from_projections(ui, ut, us)["total"])
            with _loss_precision(views[0].device):
                per_domain = [torch.stack([((a.float() - b.detach().float()) ** 2).mean() for a, b in zip(u, f)]).mean()
                              for u, f in zip([ui] + ([ut, us] if self.multi_grained else []), fused)]
                d = per_domain[0] if not self.multi_grained else combine_domains(*per_domain, self.domain_weight)
            inter.append(self.sim_weight * d)
        out = {"intra": torch.stack(intra).mean(), "inter": torch.stack(inter).mean()}
        out.update({f"inter_{name}": v for name, v in zip(MODALITIES, inter)})
        return out
