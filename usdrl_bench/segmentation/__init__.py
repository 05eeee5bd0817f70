"""Temporal action segmentation (the journal extension's dense task): DeST's metrics, frame-label files
and the ``segmentation`` evaluation (frame-wise head on dense features over whole untrimmed videos)."""
