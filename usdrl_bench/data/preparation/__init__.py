"""Preparation pipelines: raw releases -> the prepared layout the named datasets read.

``prepare`` (the parallel, resumable pipeline behind ``usdrl-bench data prepare`` and its manifest),
``ntu_prepare`` (NTU RGB+D 60/120), ``pku`` (PKU-MMD I/II: text formats, clips and untrimmed videos),
``uav`` (UAV-Human), and the official preprocessing they apply: ``preprocess`` (2s-AGCN's
``pre_normalization``, which UmURL and USDRL use) and ``ctrgcn`` (CTR-GCN / SGN's denoising and
translation).
"""
