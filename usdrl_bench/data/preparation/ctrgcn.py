"""The CTR-GCN / SGN preparation of NTU RGB+D: body denoising, actor assignment, translation, no rotation.

Behaviour re-implemented from ``CTR:data/ntu/get_raw_skes_data.py``, ``get_raw_denoised_data.py`` and
``seq_transformation.py`` (FACTS §3B), which SGN, CTR-GCN and many later methods use:

1. **Read by body id.** Frames without any body are dropped. Each Kinect body id collects its joints
   over the frames it appears in; its interval starts at the index of its first (kept) frame and runs
   contiguously. With more than one id, each body's *motion* is the sum over x, y, z of the variance of
   all its joints over its frames.
2. **One id**: that body is actor 1, with no denoising.
3. **Several ids**: (a) ids present in at most 11 frames are dropped; (b) if more than one id is left,
   a frame of a body is noisy when its x-spread exceeds 0.8 times its y-spread, a body with at least
   69.754 % noisy frames is dropped, otherwise its motion becomes ``min(motion, motion over the
   non-noisy frames)``; (c) the bodies left are sorted by motion, largest first: the first is actor 1,
   each following body fills actor 1 if its interval does not overlap actor 1's, else actor 2 if it
   does not overlap actor 2's, else it is dropped; (d) frames where both actors are all zero are
   removed.
4. **Translation**: the middle of the spine (joint 2) of actor 1 in its first non-zero frame is
   subtracted from every frame; frames where an actor is absent are zero again afterwards.
5. Zero padding to ``T`` (300): no repetition, no rotation (the frame-scaling function of the
   official script is never called and is not applied).

Differences, none of which affects a sample of the official release: a sample in which no body
survives step 3a keeps its longest body (the official script would raise); sequences longer than
``max_frames`` are truncated; "empty" means all coordinates zero (the official test is a zero sum).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from usdrl_bench.data.errors import DataFormatError
from usdrl_bench.data.readers.ntu_raw import NUM_JOINTS, parse_skeleton_bodies

#: Official thresholds (``get_raw_denoised_data.py``).
NOISE_LENGTH_THRESHOLD = 11
NOISE_SPREAD_RATIO = 0.8
NOISE_SPREAD_FRACTION = 0.69754


def _bodies(frame: np.ndarray, ids: list[str], xyz: np.ndarray) -> dict[str, dict]:
    """Step 1: ``{id: {"joints": (F_b, V, 3), "start": first kept-frame index}}`` in order of appearance."""
    kept_frames = np.unique(frame)  # frames with at least one body, in order
    index_of = {f: i for i, f in enumerate(kept_frames.tolist())}
    bodies: dict[str, dict] = {}
    for f, body_id, joints in zip(frame.tolist(), ids, xyz):
        if body_id not in bodies:
            bodies[body_id] = {"start": index_of[f], "joints": []}
        bodies[body_id]["joints"].append(joints)
    for body in bodies.values():
        body["joints"] = np.stack(body["joints"])
        body["end"] = body["start"] + len(body["joints"]) - 1  # inclusive, as the official interval
    if len(bodies) > 1:
        for body in bodies.values():
            body["motion"] = float(np.sum(np.var(body["joints"].reshape(-1, 3).astype(np.float64), axis=0)))
    return bodies


def _noisy_by_spread(joints: np.ndarray) -> np.ndarray:
    """Per frame of ``(F, V, 3)``: x-spread > 0.8 · y-spread."""
    spread = joints.max(axis=1) - joints.min(axis=1)  # F, 3
    return spread[:, 0] > NOISE_SPREAD_RATIO * spread[:, 1]


def denoise_bodies(bodies: dict[str, dict]) -> list[dict]:
    """Step 3 (a)-(c) ordering: the bodies kept, actor-1 candidate first (see the module docstring)."""
    kept = {k: b for k, b in bodies.items() if len(b["joints"]) > NOISE_LENGTH_THRESHOLD}
    if not kept:  # the official script fails here; keep the longest body
        longest = max(bodies, key=lambda k: len(bodies[k]["joints"]))
        return [bodies[longest]]
    if len(kept) == 1:
        return list(kept.values())
    for body_id in list(kept):
        if len(kept) == 1:
            break
        body = kept[body_id]
        noisy = _noisy_by_spread(body["joints"])
        if not noisy.any():
            continue
        if noisy.mean() >= NOISE_SPREAD_FRACTION:
            del kept[body_id]
        else:
            clean = body["joints"][~noisy].reshape(-1, 3).astype(np.float64)
            body["motion"] = min(body["motion"], float(np.sum(np.var(clean, axis=0))))
    if len(kept) == 1:
        return list(kept.values())
    return sorted(kept.values(), key=lambda b: b["motion"], reverse=True)  # stable, as Python's sorted


def assemble_actors(bodies: dict[str, dict], num_frames: int) -> np.ndarray:
    """Steps 2-3: ``(F, 2, V, 3)`` actor 1 and actor 2 over the kept frames (actor 2 zero when absent),
    with the all-empty frames removed when several ids were present."""
    out = np.zeros((num_frames, 2, NUM_JOINTS, 3), dtype=np.float32)
    if len(bodies) == 1:
        (body,) = bodies.values()
        out[body["start"] : body["end"] + 1, 0] = body["joints"]
        return out
    ordered = denoise_bodies(bodies)
    first = ordered[0]
    out[first["start"] : first["end"] + 1, 0] = first["joints"]
    start1, end1 = first["start"], first["end"]
    start2, end2 = 0, 0  # the official "virtual" initial interval of actor 2
    for body in ordered[1:]:
        start, end = body["start"], body["end"]
        if min(end1, end) - max(start1, start) <= 0:  # no overlap with actor 1
            out[start : end + 1, 0] = body["joints"]
            start1, end1 = min(start, start1), max(end, end1)
        elif min(end2, end) - max(start2, start) <= 0:  # no overlap with actor 2
            out[start : end + 1, 1] = body["joints"]
            start2, end2 = min(start, start2), max(end, end2)
    valid = np.any(out != 0, axis=(1, 2, 3))
    return out[valid]


def translate(actors: np.ndarray) -> np.ndarray:
    """Step 4 on ``(F, 2, V, 3)``: subtract joint 2 (0-based 1) of actor 1's first non-zero frame."""
    present = np.any(actors != 0, axis=(2, 3))  # F, 2
    first = np.flatnonzero(present[:, 0])
    if len(first) == 0:
        return actors.copy()
    origin = actors[first[0], 0, 1].copy()
    return ((actors - origin) * present[:, :, None, None]).astype(np.float32)


def ctrgcn_sample(path: str | Path, *, max_frames: int = 300) -> tuple[np.ndarray, int]:
    """One NTU ``.skeleton`` file prepared the CTR-GCN way: ``((3, max_frames, 25, 2) float32, frames)``.

    ``frames`` is the number of frames kept (after dropping empty ones), clamped to ``[1, max_frames]``.

    Raises:
        DataFormatError: the file does not follow the ``.skeleton`` format (file and line named), or
            holds no body at all.
    """
    path = Path(path)
    _, frame, ids, xyz = parse_skeleton_bodies(path.read_text(encoding="latin-1"), path)
    if len(ids) == 0:
        raise DataFormatError(path, "no body in any frame (a sample with missing skeletons)")
    bodies = _bodies(frame, ids, xyz)
    actors = translate(assemble_actors(bodies, len(np.unique(frame))))
    n = min(len(actors), max_frames)
    out = np.zeros((max_frames, 2, NUM_JOINTS, 3), dtype=np.float32)
    out[:n] = actors[:n]
    return np.ascontiguousarray(out.transpose(3, 0, 2, 1)), max(1, n)
