"""Frozen-encoder feature extraction, shared by every evaluation (extract once, probe many ways).

Input preparation follows the official downstream code (FACTS §6): the whole valid sequence
(``num_frames``) is resized to the encoder's T by linear interpolation (``align_corners=False``), no
augmentation; the encoder is in ``eval()`` mode (BatchNorm statistics frozen, DropPath off).
"""

from __future__ import annotations

import time

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from usdrl_bench.data.arrays import SkeletonArrays
from usdrl_bench.data.augment import centre_crop_resize, observed_frames, resize_valid
from usdrl_bench.io import save_npy_atomic
from usdrl_bench.skeleton import Layout, get_layout, to_stream


def valid_frame_counts(x: np.ndarray) -> np.ndarray:
    """Valid frames per sample of an ``(N, C, T, V, M)`` array: 1 + index of the last frame with any
    non-zero value (at least 1). Used when an array comes without frame counts (``usdrl-bench embed``)."""
    nonzero = np.abs(np.asarray(x)).reshape(x.shape[0], x.shape[1], x.shape[2], -1).max(axis=(1, 3)) > 0  # (N, T)
    last = x.shape[2] - np.argmax(nonzero[:, ::-1], axis=1)
    return np.where(nonzero.any(axis=1), last, 1).astype(np.int64)


@torch.no_grad()
def extract(
    encoder: nn.Module,
    data: np.ndarray,
    num_frames: np.ndarray | None = None,
    *,
    layout: Layout | None = None,
    stream: str = "joint",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    dense: bool = False,
    on_batch: Callable[[int], None] | None = None,
    crop: float = 1.0,
    observe: float = 1.0,
) -> np.ndarray | dict[str, np.ndarray]:
    """Encode skeletons with a frozen encoder.

    Args:
        encoder: an encoder in the suite's interface; put in ``eval()`` mode here.
        data: ``(N, C, T', V, M)`` float32 joints (may be memory-mapped).
        num_frames: ``(N,)`` valid frames; ``None`` = derived from the trailing all-zero frames.
        layout: needed for the ``bone`` stream.
        stream: ``joint``, ``bone`` or ``motion``, computed after resizing (as the official code).
        batch_size: samples per forward pass.
        device: where the encoder runs.
        dense: return the token features instead of the pooled ones.
        on_batch: called with the number of samples done after each batch (progress).
        crop: fraction of the valid frames kept, centred (:func:`~usdrl_bench.data.augment.centre_crop_resize`);
            1 = the whole valid sequence (the official linear, kNN and test input).
        observe: early action prediction: only the first ``max(3, floor(observe · n))`` valid frames are
            kept (:func:`~usdrl_bench.data.augment.observed_frames`), before ``crop`` and the resize.
    Returns:
        ``(N, 2H)`` float32 instance features ``[max over temporal tokens, max over spatial tokens]``;
        with ``dense``, ``{"temporal": (N, T, H), "spatial": (N, M·V, H)}``.
    """
    device = torch.device(device)
    encoder.eval().to(device)
    if num_frames is None:
        num_frames = valid_frame_counts(data)
    num_frames = np.minimum(np.asarray(num_frames, dtype=np.int64), data.shape[2])
    if observe != 1:
        num_frames = observed_frames(num_frames, observe)
    out: dict[str, list[np.ndarray]] = {"features": [], "temporal": [], "spatial": []}
    for start in range(0, len(data), batch_size):
        x = torch.from_numpy(np.array(data[start:start + batch_size], dtype=np.float32)).to(device)  # a writable copy (memmaps are read-only)
        nf = torch.from_numpy(num_frames[start:start + batch_size]).to(device)
        x = resize_valid(x, nf, encoder.num_frames) if crop == 1 else centre_crop_resize(x, nf, crop, encoder.num_frames)
        if stream != "joint":
            if layout is None and stream in ("bone", "jmb"):
                raise ValueError("the bone stream needs a skeleton layout")
            x = to_stream(x, stream, layout)  # type: ignore[arg-type]
        if dense:
            t, s = encoder.forward_dense(x)
            out["temporal"].append(t.float().cpu().numpy())
            out["spatial"].append(s.float().cpu().numpy())
        else:
            out["features"].append(encoder(x).float().cpu().numpy())
        if on_batch is not None:
            on_batch(min(start + batch_size, len(data)))
    if dense:
        return {k: np.concatenate(out[k]) for k in ("temporal", "spatial")}
    return np.concatenate(out["features"])


@dataclass
class EvalContext:
    """What an evaluation gets: the frozen encoder, the data, and cached features.

    ``features("train")`` / ``features("test")`` are computed once per context and shared by every
    evaluation that needs them (linear, kNN).
    """

    encoder: nn.Module
    train: SkeletonArrays
    test: SkeletonArrays
    device: torch.device
    seed: int = 0
    stream: str = "joint"
    batch_size: int = 256
    cache_dir: Path | None = None
    on_progress: Callable[[str, int, int], None] | None = None
    artifact_dir: Path | None = None  # where an evaluation may write files for the report (Figure 5's coordinates)
    artifacts: dict[str, Path] = field(default_factory=dict)  # evaluation name -> file it wrote
    subset_dir: Path | None = None  # labelled-subset index files shared by every method on this data (Table 2)
    data_root: Path | None = None  # the run's data root, for data an evaluation names itself (untrimmed videos)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    extract_s: float = 0.0  # seconds spent extracting features (not reading them from the cache)

    def features(self, which: str, crop: float = 1.0, observe: float = 1.0) -> np.ndarray:
        """``(N, 2H)`` frozen features of the ``train`` or ``test`` split (cached on disk when
        ``cache_dir`` is set); ``crop < 1`` encodes the centred fraction ``crop`` of each valid sequence,
        ``observe < 1`` its first part only (early prediction; :func:`extract`)."""
        name = which + (f"-crop{float(crop):g}" if crop != 1 else "") + (f"-observe{float(observe):g}" if observe != 1 else "")
        if name not in self._cache:
            path = self.cache_dir / f"{name}.npy" if self.cache_dir is not None else None
            if path is not None and path.exists():
                self._cache[name] = np.load(path)
            else:
                arrays = self.train if which == "train" else self.test
                done = (lambda k: self.on_progress(which, k, len(arrays))) if self.on_progress else None
                t0 = time.perf_counter()
                feats = extract(
                    self.encoder, arrays.data, arrays.num_frames, layout=get_layout(arrays.layout),
                    stream=self.stream, batch_size=self.batch_size, device=self.device, on_batch=done, crop=crop,
                    observe=observe,
                )
                self.extract_s += time.perf_counter() - t0
                if path is not None:
                    save_npy_atomic(path, feats)
                self._cache[name] = feats
        return self._cache[name]

    def labels(self, which: str) -> np.ndarray:
        return (self.train if which == "train" else self.test).labels

    @property
    def num_classes(self) -> int:
        return self.train.num_classes
