"""The USDRL projection head: a 3-layer MLP with BatchNorm, as in the official ``model/DSTE.py``.

References:

- [0] Weng et al., USDRL, AAAI 2025, "Implementation Details": "two linear layers, each followed by batch
  normalization and a ReLU activation, and a third linear layer".
- [1] Official code, https://github.com/wengwanjiang/USDRL, ``model/DSTE.py`` (``i_proj``, ``s_proj``,
  ``t_proj``; the same in ``model/STTR.py``).
"""

from __future__ import annotations

from torch import nn

#: Standard deviation of the truncated-normal init of Linear weights (official ``USDRL._init_weights``).
LINEAR_INIT_STD = 0.02


class Projector(nn.Sequential):
    """Linear → BatchNorm1d → ReLU → Linear → BatchNorm1d → ReLU → Linear.

    An ``nn.Sequential``, so the state-dict keys are ``0.*, 1.*, 3.*, 4.*, 6.*`` (BatchNorm running
    statistics included), exactly those of the official ``{i,s,t}_proj`` (FACTS.md §9). Official sizes for
    encoder hidden size H: temporal and spatial ``H → 2H → 2H → 2H``, instance ``2H → 2H → 2H → 4H``.
    Linear weights are initialised truncated-normal (std 0.02) with zero bias, as the official
    ``_init_weights``; BatchNorm keeps PyTorch's default init (the official code does not touch it).

    BatchNorm couples the samples of a batch, so call it once per view (the official model projects each
    view separately), never on several views concatenated.

    Args:
        in_dim: input width D_in.
        hidden_dim: width of the two hidden layers.
        out_dim: output width D_out.

    Shapes:
        ``(N, in_dim) -> (N, out_dim)``; N >= 2 in training mode (batch statistics).

    Raises:
        ValueError: a width is not a positive integer.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Projector {name} must be a positive int, got {value!r}")
        super().__init__(
            nn.Linear(in_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=LINEAR_INIT_STD)
                nn.init.zeros_(module.bias)
