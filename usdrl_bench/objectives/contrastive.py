"""Negative-based contrastive baseline: InfoNCE with a momentum key encoder and a queue of negatives.

This is the "negative contrastive" row of the paper's ablation (Table 5, rows 1 and 4): the MoCo-style
objective that skeleton methods such as CrosSCLR and AimCLR build on, against which USDRL's
negative-free feature decorrelation is compared. The paper does not state its settings; the defaults
here are the MoCo v2 / AimCLR ones (queue 32768, momentum 0.999, temperature 0.07, 128-d MLP head), and
every one of them is configurable.

References:

- [0] Weng et al., USDRL, AAAI 2025, Table 5 ("negative contrastive").
- [1] He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020;
  Chen et al., "Improved Baselines with Momentum Contrastive Learning" (MoCo v2), 2020.
- [2] Li et al., "3D Human Action Representation Learning via Cross-View Consistency Pursuit"
  (CrosSCLR), CVPR 2021; Guo et al., "Contrastive Learning from Extremely Augmented Skeleton
  Sequences" (AimCLR), AAAI 2022.
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from usdrl_bench.distributed import batch_mean, gather
from usdrl_bench.objectives.base import Objective, register_objective
from usdrl_bench.ranges import PositiveFloat, PositiveInt, Probability

# MoCo v2 / AimCLR defaults (the paper gives none for its negative-contrastive baseline):
#: τ, softmax temperature of InfoNCE.
TEMPERATURE = 0.07
#: Number of negative keys kept in the queue.
QUEUE_SIZE = 32768
#: m, momentum of the key-encoder exponential moving average.
MOMENTUM = 0.999
#: Output width of the projection head.
PROJ_DIM = 128


def _loss_precision(device: torch.device):
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()


def info_nce_logits(query: Tensor, key: Tensor, negatives: Tensor, temperature: float) -> Tensor:
    """InfoNCE logits ``[q·k, q·n_1, ..., q·n_K] / τ``; the positive is column 0 (Eq. of [1]).

    Args:
        query: (N, D) L2-normalised queries.
        key: (N, D) L2-normalised positive keys.
        negatives: (K, D) L2-normalised negative keys.
        temperature: τ > 0.

    Returns:
        (N, 1 + K) logits.

    Raises:
        ValueError: mismatched shapes.
    """
    if query.dim() != 2 or query.shape != key.shape or negatives.dim() != 2 or negatives.shape[1] != query.shape[1]:
        raise ValueError(
            f"expected query and key (N, D) and negatives (K, D), got {tuple(query.shape)}, "
            f"{tuple(key.shape)}, {tuple(negatives.shape)}"
        )
    positive = (query * key).sum(dim=1, keepdim=True)
    negative = query @ negatives.T
    return torch.cat([positive, negative], dim=1) / temperature


@register_objective("negative_contrastive", description="MoCo-style InfoNCE with momentum encoder and negative queue")
class NegativeContrastive(Objective):
    """InfoNCE with a momentum key encoder and a queue of negatives (the paper's negative-based baseline).

    A query ``q = normalize(head(encoder(views[0])))`` is contrasted with its key
    ``k = normalize(key_head(key_encoder(views[1])))`` against the ``queue_size`` keys of earlier batches:
    ``loss = CE([q·k, q·queue] / τ, 0)``. In training mode every forward first moves the key encoder and
    head towards the query ones, ``θ_k ← m θ_k + (1 - m) θ_q``, then enqueues the new keys (with
    wrap-around, so the queue size need not be a multiple of the batch size). In eval mode neither the
    key encoder nor the queue changes. Views beyond the first two are ignored.

    The key encoder and head are deep copies made at construction, with ``requires_grad=False``; they,
    the queue and its pointer live in this module's ``state_dict``, so checkpoint/resume restores them.
    Under DistributedDataParallel the keys of all ranks are gathered before they are enqueued, in global
    sample order, so every rank holds the queue of one process; each rank's loss is its share of the mean
    over the global batch (:func:`usdrl_bench.distributed.batch_mean`), so shards of different sizes train
    the model of one process. There is no shuffled BatchNorm: DSTE and STTR contain no BatchNorm.

    Args:
        encoder: module with ``embed_dim`` (output width of ``forward(x) -> (N, embed_dim)``).
        temperature: τ (default 0.07).
        queue_size: number of negatives K (default 32768).
        momentum: m of the key-encoder EMA, in [0, 1] (default 0.999).
        proj_dim: output width of the projection head (default 128).
        mlp: MoCo v2 head ``Linear(E, E) → ReLU → Linear(E, proj_dim)``; False = one Linear layer.

    Shapes:
        ``forward(encoder, [x_1, x_2, ...])`` with each x ``(N, C, T, V, M)`` ->
        ``(scalar loss, {"infonce", "accuracy", "total"})``.

    Raises:
        ValueError: non-positive temperature, queue size or proj_dim; momentum outside [0, 1]; an encoder
            without a positive int ``embed_dim``.
    """

    #: Number of augmented views used per sample (query and key).
    num_views: int = 2
    #: the loss is a global-batch mean and the queue takes the keys in global order on any shard sizes
    uneven_shards = True

    def __init__(
        self,
        encoder: nn.Module,
        *,
        temperature: PositiveFloat = TEMPERATURE,
        queue_size: PositiveInt = QUEUE_SIZE,
        momentum: Probability = MOMENTUM,
        proj_dim: PositiveInt = PROJ_DIM,
        mlp: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size <= 0:
            raise ValueError(f"negative_contrastive queue_size must be a positive int, got {queue_size!r}")
        if isinstance(proj_dim, bool) or not isinstance(proj_dim, int) or proj_dim <= 0:
            raise ValueError(f"negative_contrastive proj_dim must be a positive int, got {proj_dim!r}")
        if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"negative_contrastive temperature must be a finite number > 0, got {temperature!r}")
        if not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"negative_contrastive momentum must be in [0, 1], got {momentum!r}")
        embed_dim = getattr(encoder, "embed_dim", None)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim <= 0:
            raise ValueError(
                f"negative_contrastive needs an encoder with a positive int `embed_dim`; "
                f"{type(encoder).__name__} has {embed_dim!r}"
            )
        self.temperature, self.queue_size, self.momentum, self.proj_dim = float(temperature), queue_size, float(momentum), proj_dim

        if mlp:
            self.head = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, proj_dim))
        else:
            self.head = nn.Linear(embed_dim, proj_dim)
        self.key_encoder = copy.deepcopy(encoder).requires_grad_(False)
        self.key_head = copy.deepcopy(self.head).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, queue_size={self.queue_size}, momentum={self.momentum}, proj_dim={self.proj_dim}"

    @torch.no_grad()
    def momentum_update(self, encoder: nn.Module) -> None:
        """``θ_k ← m θ_k + (1 - m) θ_q`` for the key encoder and key head.

        Raises:
            ValueError: ``encoder`` does not have the parameter shapes of the key encoder it was copied to.
        """
        for query_module, key_module in ((encoder, self.key_encoder), (self.head, self.key_head)):
            query_params, key_params = list(query_module.parameters()), list(key_module.parameters())
            if [p.shape for p in query_params] != [p.shape for p in key_params]:
                raise ValueError(
                    f"the encoder passed to negative_contrastive ({type(encoder).__name__}) does not match the "
                    "key encoder made from the encoder given at construction"
                )
            for p_q, p_k in zip(query_params, key_params):
                p_k.mul_(self.momentum).add_(p_q.detach().to(p_k.dtype), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (N, proj_dim) into the queue at the pointer, wrapping around its end.

        When N > queue_size only the last queue_size keys are kept. The pointer advances by N modulo
        queue_size. Under an initialised process group the keys of all ranks are gathered first, in global
        sample order (:func:`usdrl_bench.distributed.gather`, shards of any sizes).
        """
        keys = gather(keys.detach().to(self.queue.dtype))
        n = keys.shape[0]
        if n == 0:
            return
        keep = min(n, self.queue_size)
        # pointer arithmetic on the device: no host synchronisation
        slots = (self.queue_ptr + torch.arange(n - keep, n, device=self.queue_ptr.device)) % self.queue_size
        self.queue.index_copy_(0, slots.to(self.queue.device), keys[-keep:].to(self.queue.device))
        self.queue_ptr.copy_((self.queue_ptr + n) % self.queue_size)

    def forward(self, encoder: nn.Module, views: Sequence[Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """InfoNCE of view 0 (query) against view 1 (key) and the queue.

        Args:
            encoder: the query encoder being trained.
            views: at least 2 augmented views of the same N samples, each (N, C, T, V, M).

        Returns:
            ``(loss, logs)``: the scalar loss and ``{"infonce", "accuracy", "total"}`` as detached 0-d
            tensors (no host synchronisation), where accuracy is the fraction of queries whose positive has
            the largest logit.

        Raises:
            ValueError: fewer than 2 views, or views of different shapes.
        """
        views = list(views)
        shapes = [tuple(x.shape) for x in views]
        if len(views) < 2 or shapes[0] != shapes[1]:
            raise ValueError(f"negative_contrastive needs 2 views of one shape (N, C, T, V, M), got shapes {shapes}")
        query = self.head(encoder(views[0]))
        with torch.no_grad():
            if self.training:
                self.momentum_update(encoder)
            key = self.key_head(self.key_encoder(views[1]))
        with _loss_precision(query.device):
            query = F.normalize(query.float(), dim=1)
            key = F.normalize(key.float(), dim=1)
            # a copy: the queue is updated in place below, after the graph has used it
            logits = info_nce_logits(query, key, self.queue.clone().float(), self.temperature)
            target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
            # the mean over the global batch (in a data-parallel run, this rank's share of it)
            loss = batch_mean(F.cross_entropy(logits, target, reduction="none"))
        if self.training:
            self.enqueue(key)
        accuracy = batch_mean((logits.detach().argmax(dim=1) == 0).float())
        value = loss.detach()
        return loss, {"infonce": value, "accuracy": accuracy, "total": value}
