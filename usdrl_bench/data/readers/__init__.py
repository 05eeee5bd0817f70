"""Readers: one module per on-disk format, each registering its datasets (``usdrl-bench list``).

``ntu_raw`` (NTU RGB+D ``.skeleton`` files), ``agcn`` (the 2s-AGCN ``.npy`` + label pickle layout that
``data prepare`` writes), ``formats`` (CTR-GCN ``.npz``, pyskl / mmaction2 pickles, PKU-MMD pickles),
``two_d`` (pyskl 2-D keypoints), ``nwucla`` (CTR-GCN's NW-UCLA JSON), ``msr_action3d`` (the skeleton text
files), and ``named``: the prepared benchmarks addressed by name under the data root (``ntu60_xsub`` ...).
Every reader returns ``(train, test)`` :class:`~usdrl_bench.data.arrays.SkeletonArrays`.
"""

# a package imports its own members: each reader module registers its datasets when imported
from usdrl_bench.data.readers import agcn, formats, msr_action3d, named, ntu_raw, nwucla, two_d  # noqa: F401, E402
