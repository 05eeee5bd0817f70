"""Datasets: the :class:`SkeletonArrays` type, readers per format, the synthetic generator, augmentations."""

from usdrl_bench.data.arrays import SkeletonArrays

__all__ = ["SkeletonArrays"]
