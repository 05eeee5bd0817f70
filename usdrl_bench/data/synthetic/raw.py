"""The embedded synthetic skeletons written in the raw release formats, to test preparation end to end.

* :func:`write_ntu_skeleton_tree`: NTU RGB+D ``.skeleton`` text files (FACTS §1) with official names
  ``SsssCcccPpppRrrrAaaa``, camera-space coordinates in metres, Kinect-like body ids, optionally an
  official-style missing-skeleton list (and the listed samples written without any body, as in the
  release).
* :func:`write_pku_release`: PKU-MMD-style untrimmed videos (one line of 150 floats per frame), label
  files (``label,start,end,confidence``) and the 4-line split files (FACTS §4).

The motions are those of :mod:`usdrl_bench.data.synthetic.generator` (label = action - 1 modulo its classes),
un-normalised, so that the preparation pipelines have real work to do.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from usdrl_bench.data.synthetic.generator import CLASS_NAMES, generate_synthetic

#: The body-info line after the body id: clipedEdges, hand states and confidences, isResticted,
#: leanX, leanY, trackingState (FACTS §1).
_BODY_INFO_TAIL = "0 1 1 1 1 0 0.1 -0.2 2"
_BODY_ID_BASE = 72057594037931000


def ntu_names(setups: Iterable[int], cameras: Iterable[int], subjects: Iterable[int], repetitions: Iterable[int],
              actions: Iterable[int]) -> list[str]:
    """Every ``SsssCcccPpppRrrrAaaa`` name of the product of the given ids, sorted."""
    return sorted(f"S{s:03d}C{c:03d}P{p:03d}R{r:03d}A{a:03d}"
                  for s, c, p, r, a in itertools.product(setups, cameras, subjects, repetitions, actions))


def _pool(num_actions: int, per_action: int, seed: int, min_frames: int, max_frames: int):
    """Un-normalised synthetic samples, ``per_action`` of each of ``min(num_actions, 133)`` classes."""
    classes = min(max(num_actions, 2), len(CLASS_NAMES))
    subjects = max(2, -(-per_action // 3))
    arrays = generate_synthetic(seed=seed, num_classes=classes, num_subjects=subjects, num_cameras=3,
                                samples_per_class_subject_camera=1, min_frames=min_frames, max_frames=max_frames,
                                normalize=False)
    return arrays, classes


def _fmt(values: np.ndarray) -> str:
    return " ".join(f"{v:.7g}" for v in values)


def skeleton_text(joints: np.ndarray, num_frames: int, body_ids: Sequence[int]) -> str:
    """A ``.skeleton`` text from ``(3, T, V, M)`` camera-space joints (V = 25 for NTU, 17 for UAV-Human):
    frames ``[0, num_frames)``, a body written in a frame when any of its joints is non-zero."""
    lines = [str(num_frames)]
    for t in range(num_frames):
        present = [m for m in range(joints.shape[3]) if np.any(joints[:, t, :, m])]
        lines.append(str(len(present)))
        for m in present:
            lines.append(f"{body_ids[m]} {_BODY_INFO_TAIL}")
            lines.append(str(joints.shape[2]))
            for v in range(joints.shape[2]):
                x, y, z = joints[:, t, v, m]
                depth = (256 + 300 * x / max(z, 0.5), 212 - 300 * y / max(z, 0.5))
                color = (960 + 1000 * x / max(z, 0.5), 540 - 1000 * y / max(z, 0.5))
                lines.append(f"{x:.7g} {y:.7g} {z:.7g} {depth[0]:.5g} {depth[1]:.5g} {color[0]:.5g} {color[1]:.5g} "
                             f"0.9 0.1 0.2 0.3 2")
    return "\n".join(lines) + "\n"


def write_ntu_skeleton_tree(
    out: str | Path,
    names: Sequence[str],
    *,
    seed: int = 0,
    missing: Sequence[str] = (),
    missing_list_name: str | None = "NTU_RGBD_samples_with_missing_skeletons.txt",
    min_frames: int = 20,
    max_frames: int = 40,
    subfolders: int = 1,
) -> list[Path]:
    """Write a raw NTU tree for ``names`` (official ``SsssCcccPpppRrrrAaaa`` stems).

    Args:
        out: the tree's root.
        names: sample names; the action id picks the motion (``(action - 1) mod 133`` classes).
        seed: seeds the motions.
        missing: names written with no body in any frame (as the release's missing-skeleton samples)
            and listed in ``missing_list_name``.
        missing_list_name: file name of the list (with the official two header sentences); None: no list.
        min_frames, max_frames: length range of the sequences.
        subfolders: spread the files over this many sub-folders (NTU-120 comes as two archives).

    Returns:
        the written ``.skeleton`` paths, in ``names`` order.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    actions = sorted({int(n[17:20]) for n in names})
    pool, classes = _pool(max(actions), per_action=max(1, len(names) // max(len(actions), 1)) + 1, seed=seed,
                          min_frames=min_frames, max_frames=max_frames)
    by_class = {c: np.flatnonzero(pool.labels == c) for c in range(classes)}
    used = {c: 0 for c in range(classes)}
    missing = set(missing)
    paths = []
    for i, name in enumerate(names):
        folder = out / f"part{i % subfolders + 1}" if subfolders > 1 else out
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.skeleton"
        c = (int(name[17:20]) - 1) % classes
        k = by_class[c][used[c] % len(by_class[c])]
        used[c] += 1
        frames = int(pool.num_frames[k])
        if name in missing:
            text = f"{frames}\n" + "0\n" * frames
        else:
            text = skeleton_text(pool.data[k], frames, [_BODY_ID_BASE + 101 * i, _BODY_ID_BASE + 101 * i + 7])
        path.write_text(text)
        paths.append(path)
    if missing_list_name and missing:
        header = ("The following samples have missing skeletons.\nPlease ignore them.\n\n")
        (out / missing_list_name).write_text(header + "\n".join(sorted(missing)) + "\n")
    return paths


def write_pku_release(
    out: str | Path,
    videos: dict[str, list[tuple[int, int, int]]],
    *,
    train: Sequence[str],
    test: Sequence[str],
    seed: int = 0,
    background: tuple[int, int] = (10, 30),
) -> dict[str, Path]:
    """Write a PKU-MMD-style release: ``skeleton/<video>.txt``, ``label/<video>.txt``, ``split/cross-subject.txt``.

    Args:
        out: the release root.
        videos: per video name (e.g. ``0291-L``), its actions as ``(label 1-51, length, confidence)`` in
            temporal order; background stretches of ``background`` frames (a seeded uniform draw)
            separate them and open and close the video.
        train, test: video names of the cross-subject split.
        seed: seeds motions and gaps.

    Returns:
        ``{"skeleton": dir, "label": dir, "split": dir}``.
    """
    out = Path(out)
    dirs = {k: out / k for k in ("skeleton", "label", "split")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    max_len = max((n for acts in videos.values() for _, n, _ in acts), default=30)
    labels_used = sorted({lab for acts in videos.values() for lab, _, _ in acts})
    pool, classes = _pool(max(labels_used, default=2), per_action=3, seed=seed, min_frames=max_len, max_frames=max_len)
    by_class = {c: np.flatnonzero(pool.labels == c) for c in range(classes)}
    for v_index, (video, actions) in enumerate(sorted(videos.items())):
        rows, label_lines = [], []
        t = 0

        def idle(n: int) -> None:
            nonlocal t
            rest = pool.data[by_class[0][0]][:, :1].repeat(n, axis=1)  # a still pose of the first class
            rows.append(rest)
            t += n

        idle(int(rng.integers(*background)))
        for label, length, confidence in actions:
            c = (label - 1) % classes
            k = by_class[c][int(rng.integers(len(by_class[c])))]
            clip = pool.data[k][:, :length]
            rows.append(clip)
            label_lines.append(f"{label},{t},{t + length},{confidence}")
            t += length
            idle(int(rng.integers(*background)))
        x = np.concatenate(rows, axis=1)  # 3, T, 25, 2
        flat = x.transpose(1, 3, 2, 0).reshape(x.shape[1], 150)  # T, (body, joint, xyz)
        (dirs["skeleton"] / f"{video}.txt").write_text("\n".join(_fmt(r) for r in flat) + "\n")
        (dirs["label"] / f"{video}.txt").write_text("\n".join(label_lines) + "\n")
    (dirs["split"] / "cross-subject.txt").write_text(
        "Training videos: \n" + ", ".join(train) + "\nValidataion videos: \n" + ", ".join(test) + "\n")
    return dirs
