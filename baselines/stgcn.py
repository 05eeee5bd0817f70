"""ST-GCN as the SkeletonCLR / CrosSCLR / AimCLR family uses it (registered as encoder ``stgcn``).

Source: Yan, Xiong and Lin, "Spatial Temporal Graph Convolutional Networks for Skeleton-Based Action
Recognition" (AAAI 2018), in the form of github.com/Levigty/AimCLR at 6cd73767 (``net/st_gcn.py``,
``net/utils/graph.py``, ``net/utils/tgcn.py``), which SkeletonCLR and CrosSCLR share:

* graph: the layout's bones as undirected edges plus self-loops, ``max_hop`` 1, the **spatial partition**
  (K = 3 adjacency matrices: root, centripetal, centrifugal by hop distance to the centre joint), each
  column-normalised (``normalize_digraph``);
* ``data_bn``: BatchNorm1d over the V·C values of each person and frame, (N·M, V·C, T);
* 10 blocks at 1/4 of ST-GCN's width (``hidden_channels`` 16): 3->16 (no residual), 16, 16, 16, 16->32
  (temporal stride 2), 32, 32, 32->64 (stride 2), 64, 64->256 (``hidden_dim``); each block a graph
  convolution (``Conv2d(in, out*K, 1)`` then ``einsum(nkctv,kvw->nctw)`` with ``A * edge_importance``,
  learnable, initialised to ones), then BN-ReLU-Conv(9x1, stride)-BN-Dropout(0.5) (no dropout in the first
  block), a residual (identity or strided 1x1 conv + BN) and ReLU;
* head: average over (T, V), mean over the persons M: the 256-d representation (``embed_dim``).

Reproduced: all of the above for any registered layout (``layout`` "" picks it by joint count: 25 ntu25,
20 nwucla20, 17 coco17; ``graph_center`` -1 takes the family's centre on NTU, joint 21 (index 20), and the
layout's centre joint elsewhere). Simplified: nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from usdrl_bench import EncoderConfig, SkeletonEncoder, get_layout, register_encoder

__all__ = ["STGCNConfig", "STGCN", "spatial_partition"]

#: layout chosen by joint count when ``layout`` is ""
LAYOUT_BY_JOINTS = {25: "ntu25", 20: "nwucla20", 17: "coco17"}
#: the graph centre the family uses where it differs from the layout's: NTU joint 21 (spine shoulder)
FAMILY_CENTRE = {"ntu25": 20}


def spatial_partition(num_joints: int, edges: list[tuple[int, int]], center: int) -> np.ndarray:
    """ST-GCN's ``Graph(strategy='spatial', max_hop=1)`` adjacency ``(3, V, V)``: [self-loops, neighbours at
    the same or a smaller hop distance to ``center`` ("root + close"), neighbours farther away
    ("further")], each entry taken from the column-normalised adjacency (``A @ diag(1 / column sums)``).
    As the official code, hop distances beyond ``max_hop`` are infinite, so two joints both farther than one
    hop from the centre compare equal ("root").

    Raises:
        ValueError: an edge joint or ``center`` outside ``[0, V)``.
    """
    v = num_joints
    if not 0 <= center < v or any(not (0 <= a < v and 0 <= b < v) for a, b in edges):
        raise ValueError(f"spatial_partition: joint index outside [0, {v}) in edges or centre {center}")
    adjacency = np.eye(v)
    for a, b in edges:
        adjacency[a, b] = adjacency[b, a] = 1
    hop = np.full((v, v), np.inf)
    reach = [np.linalg.matrix_power(adjacency, d) for d in range(2)]  # max_hop 1
    for d in (1, 0):
        hop[reach[d] > 0] = d
    normalised = (hop <= 1).astype(float)
    normalised = normalised @ np.diag(1.0 / normalised.sum(axis=0))
    parts = []
    for h in (0, 1):
        root, close, further = np.zeros((v, v)), np.zeros((v, v)), np.zeros((v, v))
        for i in range(v):
            for j in range(v):
                if hop[j, i] != h:
                    continue
                if hop[j, center] == hop[i, center]:
                    root[j, i] = normalised[j, i]
                elif hop[j, center] > hop[i, center]:
                    close[j, i] = normalised[j, i]
                else:
                    further[j, i] = normalised[j, i]
        parts += [root] if h == 0 else [root + close, further]
    return np.stack(parts).astype(np.float32)


@dataclass(frozen=True)
class STGCNConfig(EncoderConfig):
    """Attributes (beyond :class:`usdrl_bench.EncoderConfig`; ``hidden_size`` is the output width, 256):
    ``hidden_channels`` (16: 1/4 of ST-GCN), ``temporal_kernel`` (9), ``dropout`` (0.5, blocks 2-10),
    ``edge_importance`` (learnable edge weights), ``layout`` ("" = by joint count), ``graph_center`` (-1 =
    NTU's joint 21, else the layout's centre)."""

    hidden_size: int = 256
    num_frames: int = 50
    hidden_channels: int = 16
    temporal_kernel: int = 9
    dropout: float = 0.5
    edge_importance: bool = True
    layout: str = ""
    graph_center: int = -1


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, kernel: int, stride: int, dropout: float, residual: bool) -> None:
        super().__init__()
        self.k = k
        self.gcn = nn.Conv2d(c_in, c_out * k, kernel_size=1)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, (kernel, 1), (stride, 1), ((kernel - 1) // 2, 0)),
            nn.BatchNorm2d(c_out), nn.Dropout(dropout, inplace=True))
        if not residual:
            self.residual = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, a: Tensor) -> Tensor:
        res = self.residual(x) if self.residual is not None else 0
        y = self.gcn(x)
        n, kc, t, v = y.shape
        y = torch.einsum("nkctv,kvw->nctw", y.view(n, self.k, kc // self.k, t, v), a)
        return self.relu(self.tcn(y) + res)


@register_encoder("stgcn", STGCNConfig, presets={
    "paper": dict(num_frames=50, hidden_channels=16, hidden_size=256),
    "small": dict(num_frames=32, hidden_channels=16, hidden_size=128),
    "tiny": dict(num_frames=16, hidden_channels=4, hidden_size=16),
}, description="ST-GCN at 1/4 width (SkeletonCLR / AimCLR family), 256-d pooled feature")
class STGCN(SkeletonEncoder):
    """ST-GCN: ``(N, C, T, V, M) -> (N, hidden_size)`` (module docstring). ``forward_map`` gives the last
    block's map ``(N·M, hidden_size, T', V)`` (AimCLR's attention-guided drop works on it)."""

    def __init__(self, config: STGCNConfig) -> None:
        super().__init__(config)
        self.embed_dim = config.hidden_size
        layout = get_layout(config.layout or LAYOUT_BY_JOINTS.get(config.num_joints, ""))
        if layout.num_joints != config.num_joints:
            raise ValueError(f"stgcn: layout {layout.name} has {layout.num_joints} joints, the data {config.num_joints}")
        center = config.graph_center if config.graph_center >= 0 else FAMILY_CENTRE.get(layout.name, layout.center)
        a = torch.from_numpy(spatial_partition(config.num_joints, list(layout.bones), center))
        self.register_buffer("A", a)
        h, c = config.hidden_channels, config.in_channels
        plan = [(c, h, 1, False), (h, h, 1, True), (h, h, 1, True), (h, h, 1, True), (h, 2 * h, 2, True),
                (2 * h, 2 * h, 1, True), (2 * h, 2 * h, 1, True), (2 * h, 4 * h, 2, True), (4 * h, 4 * h, 1, True),
                (4 * h, config.hidden_size, 1, True)]
        self.data_bn = nn.BatchNorm1d(c * config.num_joints)
        self.blocks = nn.ModuleList(
            _Block(ci, co, a.shape[0], config.temporal_kernel, s, 0.0 if i == 0 else config.dropout, res)
            for i, (ci, co, s, res) in enumerate(plan))
        self.edge_importance = nn.ParameterList(
            nn.Parameter(torch.ones_like(a), requires_grad=config.edge_importance) for _ in plan)

    def forward_map(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M) -> (N·M, hidden_size, T', V)``, before pooling (T' = ceil(T / 4))."""
        self.check_input(x)
        n, c, t, v, m = x.shape
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)  # (N·M, V·C, T), as ST-GCN's data_bn
        x = self.data_bn(x).view(n * m, v, c, t).permute(0, 2, 3, 1)  # (N·M, C, T, V)
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.A * importance)
        return x

    def pool(self, feature_map: Tensor, num_bodies: int) -> Tensor:
        """``(N·M, D, T', V) -> (N, D)``: average over (T', V), then over the persons."""
        nm, d = feature_map.shape[:2]
        return feature_map.mean(dim=(2, 3)).view(nm // num_bodies, num_bodies, d).mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, T, V, M) -> (N, hidden_size)``."""
        return self.pool(self.forward_map(x), x.shape[-1])

    def forward_features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """No temporal and spatial token streams: the pooled feature three times."""
        y = self.forward(x)
        return y, y, y
