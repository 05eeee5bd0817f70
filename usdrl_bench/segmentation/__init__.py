"""Temporal action segmentation (the journal extension's dense task): DeST's metrics, frame-label files
and the ``segmentation`` evaluation (frame-wise head on dense features over whole untrimmed videos)."""

# a package imports its own members: the ``segmentation`` evaluation registers when imported
from usdrl_bench.segmentation import evaluation  # noqa: F401, E402
