"""Temporal action detection on untrimmed skeleton videos (PKU-MMD I, paper Table 4)."""
