"""Spatial augmentations: joint corruption, shear and random rotation, per sample, in one batched operation."""

from __future__ import annotations

import torch
from torch import Tensor

from usdrl_bench.data.augment.keys import Draw, Randomness, check_xyz, drawer, uniform


def random_joint_mask(n: int, v: int, k: int, draw: Draw, x: Tensor) -> Tensor:
    """``(N, V)`` bool, exactly ``k`` True per row, uniformly without replacement."""
    scores = draw((n, v))
    chosen = scores.argsort(dim=1)[:, :k]
    mask = torch.zeros((n, v), dtype=torch.bool, device=x.device)
    mask.scatter_(1, chosen, True)
    return mask


def transform_joints(x: Tensor, matrix: Tensor, mask: Tensor | None = None) -> Tensor:
    """Right-multiply the xyz row vector of every (frame, joint, body) by ``matrix[n]``.

    ``out[n, :, t, v, m] = x[n, :, t, v, m] @ matrix[n]`` where ``mask[n, v]`` (all joints when
    ``mask`` is None), ``x`` elsewhere. Args: x ``(N, 3, T, V, M)``, matrix ``(N, 3, 3)``, mask ``(N, V)``.
    """
    # out_c' = sum_c x_c * A[c, c']  (the official np.dot(x.transpose(1, 2, 3, 0), A))
    y = torch.einsum("nctvm,ncd->ndtvm", x, matrix.to(x.dtype))
    if mask is None:
        return y
    return torch.where(mask[:, None, None, :, None], y, x)


def corruption_params(
    x: Tensor, draw: Draw, num_joints: int, p_zero: float, where: str
) -> tuple[Tensor, Tensor]:
    """Per-sample (matrix (N, 3, 3), joint mask (N, V)) of joint corruption."""
    N, _, _, V, _ = x.shape
    if not 0 <= num_joints <= V:
        raise ValueError(f"{where}: num_joints must lie in [0, V={V}], got {num_joints}")
    if not 0.0 <= p_zero <= 1.0:
        raise ValueError(f"{where}: p_zero must lie in [0, 1], got {p_zero}")
    zero = draw((N,)) < p_zero
    mask = random_joint_mask(N, V, num_joints, draw, x)
    matrix = uniform((N, 3, 3), -1.0, 1.0, draw, x)
    matrix = torch.where(zero[:, None, None], torch.zeros_like(matrix), matrix)
    return matrix, mask


def shear_params(x: Tensor, draw: Draw, magnitude: float) -> Tensor:
    """Per-sample shear matrices ``(N, 3, 3)``, diagonal 1, off-diagonals U(-magnitude, magnitude)."""
    N = x.shape[0]
    eye = torch.eye(3, device=x.device, dtype=torch.float32)
    off = uniform((N, 3, 3), -magnitude, magnitude, draw, x) * (1 - eye)
    return eye + off


def joint_corruption(x: Tensor, generator: Randomness, num_joints: int = 15, p_zero: float = 0.5) -> Tensor:
    """Official joint corruption (FACTS §7; ``joint_courruption`` in the UmURL/USDRL feeder tools).

    Per sample, ``num_joints`` of the ``V`` joints are chosen uniformly without replacement (the same
    joints in every frame and both bodies). With probability ``p_zero`` they are set to zero;
    otherwise their xyz row vectors are right-multiplied by a random ``3 x 3`` matrix ``A`` with
    i.i.d. entries U(-1, 1), one ``A`` per sample (``x_new = x @ A``, as the official ``np.dot``).

    Args:
        x: ``(N, 3, T, V, M)``.
        generator: randomness; must live on x's device type.
        num_joints: joints corrupted per sample (official 15 of 25).
        p_zero: probability of zeroing rather than mixing (official 0.5).
    Returns:
        ``(N, 3, T, V, M)``, a new tensor.
    """
    where = "joint_corruption"
    check_xyz(x, where)
    matrix, mask = corruption_params(x, drawer(generator, x, where), num_joints, p_zero, where)
    return transform_joints(x, matrix, mask)


def shear(x: Tensor, generator: Randomness, magnitude: float = 1.0) -> Tensor:
    """Official shear (FACTS §7): per sample ``x_new = S x`` (column vectors) for every joint.

    ``S`` is ``3 x 3`` with ones on the diagonal and off-diagonal entries U(-magnitude, magnitude)
    (magnitude 1 in USDRL's pretraining feeder; the helper's default ``r = 0.5`` is overridden there).

    Args:
        x: ``(N, 3, T, V, M)``.
        generator: randomness; must live on x's device type.
        magnitude: half-width of the off-diagonal range.
    Returns:
        ``(N, 3, T, V, M)``.
    """
    where = "shear"
    check_xyz(x, where)
    draw = drawer(generator, x, where)
    if magnitude < 0:
        raise ValueError(f"{where}: magnitude must be >= 0, got {magnitude}")
    s = shear_params(x, draw, magnitude)
    # column form S x  ==  row form x @ S^T (the official np.dot(x, R.transpose()))
    return transform_joints(x, s.transpose(1, 2))


def rotation_params(x: Tensor, draw: Draw, degrees: float) -> Tensor:
    """Per-sample ``(N, 3, 3)`` row-form matrices ``Ry(b) @ Rx(a)``, a, b ~ U(-degrees, degrees)."""
    N = x.shape[0]
    a, b = (torch.deg2rad(uniform((N,), -degrees, degrees, draw, x)) for _ in range(2))
    one, zero = torch.ones_like(a), torch.zeros_like(a)
    rx = torch.stack([one, zero, zero, zero, a.cos(), a.sin(), zero, -a.sin(), a.cos()], dim=1).view(N, 3, 3)
    ry = torch.stack([b.cos(), zero, -b.sin(), zero, one, zero, b.sin(), zero, b.cos()], dim=1).view(N, 3, 3)
    return ry @ rx


def random_rotation(x: Tensor, generator: Randomness, degrees: float = 60.0) -> Tensor:
    """Rotate each sample about the x and y axes by angles drawn from U(-degrees, degrees).

    As CTR-GCN's NW-UCLA training feeder (``rand_view_transform``, integer degrees in [-60, 60] there): row
    vectors are multiplied by ``Ry(b) Rx(a)`` with ``Rx = [[1, 0, 0], [0, cos a, sin a], [0, -sin a, cos a]]``
    and ``Ry = [[cos b, 0, -sin b], [0, 1, 0], [sin b, 0, cos b]]`` (its scaling is left out: the min-max
    normalisation after it cancels it). A change of camera viewpoint, for cross-view training.

    Args:
        x: ``(N, 3, T, V, M)``.
        generator: randomness (a ``torch.Generator`` on x's device type, or :class:`SampleKeys`).
        degrees: half-width of the angle range, in degrees.
    Returns:
        ``(N, 3, T, V, M)``, a new tensor.
    """
    where = "random_rotation"
    check_xyz(x, where)
    if not 0.0 <= degrees <= 180.0:
        raise ValueError(f"{where}: degrees must lie in [0, 180], got {degrees}")
    return transform_joints(x, rotation_params(x, drawer(generator, x, where), degrees))
