"""The 2s-AGCN ``pre_normalization`` used to prepare NTU RGB+D for UmURL and USDRL.

Reference (behaviour re-implemented, FACTS §3A item 6): ``UmURL:data_gen/preprocess.py`` and
``rotation.py``, themselves taken from 2s-AGCN (Shi et al., CVPR 2019). UmURL, and therefore the
official USDRL data, run it with the z-axis alignment commented out; 2s-AGCN, PCM3 and CMD keep it.

The official code loops over samples, bodies, frames and joints and works in place; here the same
steps are vectorised over the ``N`` samples (the padding step loops over samples and bodies) and the
input is never modified.

Differences from the official code (none changes real NTU samples):

* "empty" means *all coordinates zero*; the official code tests ``sum == 0``, which also counts a
  frame or joint whose coordinates happen to cancel out as empty.
* when the vector to align is exactly *anti-parallel* to the target axis the official code returns
  the identity (the cross product vanishes); here it is turned by 180 degrees so the result is
  always parallel to the positive axis.
"""

from __future__ import annotations

import numpy as np

from usdrl_bench.skeleton import Layout, get_layout

#: (bottom, top) joints whose bone is made parallel to +z by ``align_z`` (2s-AGCN ``zaxis=[0, 1]``:
#: base of spine -> middle of spine for NTU; hip centre -> spine for Kinect v1).
Z_AXIS_JOINTS: dict[str, tuple[int, int]] = {"ntu25": (0, 1), "kinect20": (6, 3)}

_EPS = 1e-6  # the official ``rotation_matrix`` returns the identity below this axis norm / angle


def pre_normalization(
    data: np.ndarray,
    layout: Layout | str = "ntu25",
    *,
    pad: bool = True,
    center: bool = True,
    align_z: bool = False,
    align_x: bool = True,
    z_axis: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pad, centre and rotate skeleton sequences the way 2s-AGCN / UmURL prepare NTU RGB+D.

    Steps (FACTS §3A item 6), each optional:

    a. ``pad``: per body, if its first frame is empty the non-empty frames are moved to the start
       (dropping the empty ones in between); then the empty frames after the last valid one are
       filled by repeating frames ``[0, last_valid]`` until ``T``.
    b. ``center``: subtract, per frame, joint ``layout.center`` of body 0 (NTU: 0-based 1, middle of
       spine) from every non-zero joint of every body; zero joints stay zero.
    c. ``align_z`` (off by default, as in UmURL/USDRL; on in 2s-AGCN): rotate every sample so that
       in frame 0 of body 0 the bone ``z_axis = (bottom, top)`` (NTU: base of spine -> middle of
       spine) is parallel to +z.
    d. ``align_x``: rotate every sample so that in frame 0 of body 0 the vector from
       ``layout.left_shoulder`` to ``layout.right_shoulder`` (NTU: 4 -> 8) is parallel to +x.

    Rotations are axis-angle (Euler-Rodrigues) about ``v x target`` by the angle between ``v`` and
    the target; a zero vector (e.g. missing shoulders, an all-zero sample) leaves the sample
    unrotated.

    Args:
        data: ``(N, C=3, T, V, M)`` joint coordinates (metres), zeros where no body was tracked.
        layout: skeleton layout (or its name) giving the centre and shoulder joints; ``V`` must match.
        pad, center, align_z, align_x: which steps to run.
        z_axis: ``(bottom, top)`` joints for ``align_z``; default from :data:`Z_AXIS_JOINTS`.

    Returns:
        a new float32 array of the same shape; ``data`` is not modified.

    Raises:
        ValueError: ``data`` is not 5-D with ``C == 3`` and ``V == layout.num_joints``, or ``align_z``
            is asked for a layout without known z-axis joints and ``z_axis`` is not given.
    """
    if isinstance(layout, str):
        layout = get_layout(layout)
    if data.ndim != 5 or data.shape[1] != 3 or data.shape[3] != layout.num_joints:
        raise ValueError(
            f"pre_normalization expects (N, 3, T, {layout.num_joints}, M) for layout {layout.name!r}; "
            f"got shape {tuple(data.shape)}"
        )
    if align_z and z_axis is None:
        if layout.name not in Z_AXIS_JOINTS:
            raise ValueError(f"align_z: no z-axis joints known for layout {layout.name!r}; pass z_axis=(bottom, top)")
        z_axis = Z_AXIS_JOINTS[layout.name]

    # N, C, T, V, M -> N, M, T, V, C (a copy: the caller's array is never touched)
    s = np.ascontiguousarray(np.transpose(data, (0, 4, 2, 3, 1)), dtype=np.float32).copy()
    if pad:
        _pad_bodies(s)
    if center:
        s = _subtract_center(s, layout.center)
    if align_z:
        bottom, top = z_axis  # type: ignore[misc]
        s = _rotate(s, s[:, 0, 0, top] - s[:, 0, 0, bottom], np.array([0.0, 0.0, 1.0]))
    if align_x:
        s = _rotate(
            s, s[:, 0, 0, layout.right_shoulder] - s[:, 0, 0, layout.left_shoulder], np.array([1.0, 0.0, 0.0])
        )
    return np.ascontiguousarray(np.transpose(s, (0, 4, 2, 3, 1)))


def _pad_bodies(s: np.ndarray) -> None:
    """Step a, in place on ``s`` of shape ``(N, M, T, V, C)``."""
    T = s.shape[2]
    frame_valid = np.any(s != 0, axis=(3, 4))  # N, M, T
    for n, m in zip(*np.nonzero(frame_valid.any(axis=2))):
        valid = frame_valid[n, m]
        person = s[n, m]
        if not valid[0]:
            kept = person[valid].copy()
            person[:] = 0
            person[: len(kept)] = kept
            valid = np.zeros(T, dtype=bool)
            valid[: len(kept)] = True
        last = int(np.flatnonzero(valid)[-1]) + 1  # frames [0, last) form the sequence to repeat
        if last < T:
            reps = -(-T // last)
            person[:] = np.concatenate([person[:last]] * reps, axis=0)[:T]


def _subtract_center(s: np.ndarray, center_joint: int) -> np.ndarray:
    """Step b on ``(N, M, T, V, C)``: per-frame centre joint of body 0, non-zero joints only."""
    main_center = s[:, 0:1, :, center_joint : center_joint + 1, :]  # N, 1, T, 1, C
    joint_valid = np.any(s != 0, axis=-1, keepdims=True)  # N, M, T, V, 1
    return ((s - main_center) * joint_valid).astype(np.float32, copy=False)


def rotation_to_axis(v: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotation matrices turning each vector ``v`` to the direction of the unit vector ``target``.

    Axis ``v x target``, angle ``arccos(v . target / |v|)`` (2s-AGCN ``rotation_matrix`` /
    ``angle_between``); the identity where ``v`` is zero or already parallel to ``target``; a
    180-degree turn about an axis perpendicular to ``target`` where ``v`` is anti-parallel.

    Args:
        v: ``(N, 3)`` vectors.
        target: ``(3,)`` unit vector.

    Returns:
        ``(N, 3, 3)`` float64 rotation matrices ``R`` with ``R @ v[n]`` parallel to ``target``.
    """
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    target = np.asarray(target, dtype=np.float64)
    norm = np.linalg.norm(v, axis=1)
    unit = v / np.where(norm > 0, norm, 1.0)[:, None]
    angle = np.arccos(np.clip(unit @ target, -1.0, 1.0))
    axis = np.cross(v, target)
    axis_norm = np.linalg.norm(axis, axis=1)
    rotate = (axis_norm >= _EPS) & (np.abs(angle) >= _EPS)
    # anti-parallel: the cross product vanishes although the angle is pi
    flip = (axis_norm < _EPS) & (norm > 0) & (angle > np.pi / 2)
    if flip.any():
        helper = np.eye(3)[int(np.argmin(np.abs(target)))]
        perpendicular = np.cross(target, helper)
        axis[flip] = perpendicular / np.linalg.norm(perpendicular)
        angle = np.where(flip, np.pi, angle)
        rotate |= flip
        axis_norm = np.where(flip, 1.0, axis_norm)
    k = axis / np.where(axis_norm > 0, axis_norm, 1.0)[:, None]
    # Rodrigues: R = I cos(a) + sin(a) [k]x + (1 - cos(a)) k k^T
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    kx = np.zeros((len(v), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2] = -k[:, 2], k[:, 1]
    kx[:, 1, 0], kx[:, 1, 2] = k[:, 2], -k[:, 0]
    kx[:, 2, 0], kx[:, 2, 1] = -k[:, 1], k[:, 0]
    R = np.eye(3) * cos + sin * kx + (1 - cos) * np.einsum("ni,nj->nij", k, k)
    R[~rotate] = np.eye(3)
    return R


def _rotate(s: np.ndarray, v: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Steps c/d on ``(N, M, T, V, C)``: rotate every joint of sample n by the matrix for ``v[n]``.

    Zero joints stay zero, so rotating them too equals the official "non-empty frames only".
    """
    R = rotation_to_axis(v, target)
    flat = s.reshape(len(s), -1, 3).astype(np.float64)  # N, M*T*V, C
    return (flat @ R.transpose(0, 2, 1)).astype(np.float32).reshape(s.shape)
