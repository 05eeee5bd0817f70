"""Temporal action detection on untrimmed skeleton videos (PKU-MMD I, paper Table 4)."""

# a package imports its own members: the ``detection`` evaluation registers when imported
from usdrl_bench.detection import evaluation  # noqa: F401, E402
