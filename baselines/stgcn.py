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
* head: average over (T, V), mean over the persons M: the 256-d representation (``embed_dim``);
* initialisation: the family's ``weights_init`` (:func:`family_init`), which its processors apply to every model
  they build.

Reproduced: all of the above for any registered layout (``layout`` "" picks it by joint count: 25 ntu25,
20 nwucla20, 17 coco17; ``graph_center`` -1 takes the family's centre where its ``Graph`` has the layout: NTU
joint 21 (index 20), NW-UCLA joint 3 (index 2, AimCLR's ``nw-ucla``), and the layout's centre joint elsewhere).
The partitions equal the official ``Graph(layout, 'spatial').A`` for ``ntu-rgb+d`` and ``nw-ucla``
(tests/test_official_peers.py). Simplified: nothing.

Official checkpoints: :func:`stgcn_from_official` builds the encoder from the family's ``net/st_gcn.py``
state dict (``data_bn``, ``st_gcn_networks.<i>.gcn.conv``, ``.tcn``, ``.residual``, ``edge_importance``,
the graph ``A``), its sizes read from the tensors; :func:`official_stgcn_name` is the key mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from usdrl_bench import EncoderConfig, SkeletonEncoder, create_encoder, get_layout, load_renamed, register_encoder

__all__ = ["STGCNConfig", "STGCN", "spatial_partition", "official_stgcn_name", "stgcn_from_official",
           "OFFICIAL_LAYOUTS", "family_init"]

#: layout chosen by joint count when ``layout`` is ""
LAYOUT_BY_JOINTS = {25: "ntu25", 20: "nwucla20", 17: "coco17"}
#: the graph centre the family's ``net/utils/graph.py`` uses where it differs from the layout's: NTU joint 21
#: (spine shoulder), NW-UCLA joint 3 (shoulder centre; AimCLR's ``nw-ucla`` layout)
FAMILY_CENTRE = {"ntu25": 20, "nwucla20": 2}
#: the family's ``Graph(layout=...)`` names -> the suite's layouts
OFFICIAL_LAYOUTS = {"ntu-rgb+d": "ntu25", "nw-ucla": "nwucla20"}


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


def family_init(module: nn.Module) -> nn.Module:
    """The family's ``weights_init`` (``processor/pretrain.py``, ``linear_evaluation.py``), which every processor
    applies to the whole model after building it: convolution and linear weights N(0, 0.02), their biases 0,
    BatchNorm weights N(1, 0.02), biases 0 (the global generator). Edge-importance masks keep their ones."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                m.weight.normal_(0.0, 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.normal_(1.0, 0.02)
                m.bias.zero_()
    return module


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
        family_init(self)  # what the family's processors do to a freshly built model

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


# --- the family's official checkpoints ----------------------------------------------------------------------------
def official_stgcn_name(key: str) -> str:
    """The official ``net/st_gcn.py`` name of a suite :class:`STGCN` state key (``blocks.3.gcn.weight`` ->
    ``st_gcn_networks.3.gcn.conv.weight``; ``data_bn``, ``edge_importance`` and ``A`` keep their names)."""
    m = re.match(r"^blocks\.(\d+)\.(gcn|tcn|residual)\.(.+)$", key)
    if m is None:
        return key
    block, part, rest = m.groups()
    return f"st_gcn_networks.{block}.{'gcn.conv' if part == 'gcn' else part}.{rest}"


#: the official ST-GCN ``Model`` arguments an official loader reads (besides the suite's ``num_bodies`` and
#: ``num_frames``, which the official model does not fix)
STGCN_OFFICIAL_ARGS = ("in_channels", "hidden_channels", "hidden_dim", "graph_args", "edge_importance_weighting",
                       "num_bodies", "num_frames")


def stgcn_from_official(state: Mapping[str, Tensor], args: Mapping[str, Any], *, dropout: float = 0.5,
                        what: str = "ST-GCN") -> tuple[STGCN, dict[str, str]]:
    """A suite :class:`STGCN` holding an official ``net/st_gcn.py`` state dict (keys without a prefix).

    Sizes come from the tensors (C and the hidden width from ``st_gcn_networks.0.gcn.conv.weight``, the output
    width from block 9, the temporal kernel, V and the partition count from ``A``); the official arguments
    ``in_channels``, ``hidden_channels``, ``hidden_dim`` are checked against them, ``graph_args`` names the
    layout (``ntu-rgb+d``, ``nw-ucla``; strategy ``spatial``), ``edge_importance_weighting`` False reads no masks.
    The file's graph ``A`` is loaded, as the official ``load_state_dict`` does. ``num_bodies`` (default 2 for 25
    joints, else 1) and ``num_frames`` (default 50, the family's input length) are the suite's; ``dropout`` is
    the training dropout (no effect on features).

    Returns:
        ``(encoder in eval mode, notes)``.
    Raises:
        ValueError: keys absent, ten blocks not found, an official argument that disagrees with the file, an
            unknown graph layout or strategy.
        CheckpointMismatchError: keys missing or shapes that differ.
    """
    need = ["st_gcn_networks.0.gcn.conv.weight", "A", "data_bn.weight"]
    absent = [k for k in need if k not in state]
    if absent:
        raise ValueError(f"{what}: no {absent} among the ST-GCN keys ({', '.join(sorted(state)[:6])}, ...)")
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"^st_gcn_networks\.(\d+)\.", k))})
    if blocks != list(range(10)):
        raise ValueError(f"{what}: the family's ST-GCN has 10 blocks (st_gcn_networks.0-9), found {blocks}")
    a = state["A"]
    k_parts, v = int(a.shape[0]), int(a.shape[1])
    w0 = state["st_gcn_networks.0.gcn.conv.weight"]
    found = {"in_channels": int(w0.shape[1]), "hidden_channels": int(w0.shape[0]) // k_parts,
             "hidden_dim": int(state["st_gcn_networks.9.tcn.2.weight"].shape[0])}
    for key, value in found.items():
        if key in args and int(args[key]) != value:
            raise ValueError(f"{what}: official argument {key}={args[key]} but the file's tensors give {value}")
    graph = dict(args.get("graph_args") or {})
    if graph.get("strategy", "spatial") != "spatial" or k_parts != 3:
        raise ValueError(f"{what}: only the 'spatial' partition (3 adjacency matrices) is built; the file has "
                         f"{k_parts}, graph_args {graph}")
    official_layout = graph.get("layout")
    if official_layout is not None and official_layout not in OFFICIAL_LAYOUTS:
        raise ValueError(f"{what}: graph layout {official_layout!r} is not one of {sorted(OFFICIAL_LAYOUTS)}")
    layout = OFFICIAL_LAYOUTS.get(official_layout, LAYOUT_BY_JOINTS.get(v, ""))
    weighting = any(k.startswith("edge_importance.") for k in state)
    if "edge_importance_weighting" in args and bool(args["edge_importance_weighting"]) != weighting:
        raise ValueError(f"{what}: edge_importance_weighting={args['edge_importance_weighting']} but the file "
                         f"{'holds' if weighting else 'holds no'} edge_importance masks")
    encoder = create_encoder(
        "stgcn", None, in_channels=found["in_channels"], num_joints=v,
        num_bodies=int(args.get("num_bodies", 2 if v == 25 else 1)), num_frames=int(args.get("num_frames", 50)),
        hidden_channels=found["hidden_channels"], hidden_size=found["hidden_dim"],
        temporal_kernel=int(state["st_gcn_networks.0.tcn.2.weight"].shape[2]), dropout=float(dropout),
        edge_importance=weighting, layout=layout)
    state = dict(state)
    if not weighting:  # the official model multiplies by 1
        state.update({f"edge_importance.{i}": torch.ones_like(a) for i in range(10)})
    own_a = encoder.A.clone()
    load_renamed(encoder, state, official_stgcn_name, what=what)
    notes = {"sizes": f"from the tensors: {found}, V {v}, temporal kernel {encoder.config.temporal_kernel}",
             "layout": f"{layout} ({'graph_args' if official_layout else 'by joint count'})"}
    if not torch.allclose(own_a, encoder.A, atol=1e-6):
        notes["graph"] = f"the file's A differs from the suite's {layout} partition; the file's is used, as the official load does"
    return encoder.eval(), notes
