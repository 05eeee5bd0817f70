"""usdrl-bench: benchmarking and evaluation suite for self-supervised skeleton-based action
representation learning, built around USDRL (Weng et al., AAAI 2025)."""

__version__ = "0.1.0"
