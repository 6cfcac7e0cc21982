"""Smooth invertible warps: a stationary velocity field on a control grid, integrated by scaling and squaring.

Conventions: fields are (3, k, j, i) tensors in voxel units whose components are the **i, j, k** axes
(x, y, z, as ``grid_sample`` reads them); a displacement ``u`` warps an image by pulling back,
``I'(x) = I(x + u(x))`` (linear interpolation), which is ITK's displacement-field convention.
``exp(v)`` is computed as ``u = v / 2^n`` followed by n compositions ``u <- u + u o (id + u)``; for a
smooth ``v`` every intermediate map is close to the identity, so the result is a diffeomorphism
(checked by the Jacobian determinant, :func:`jacobian_determinant`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from LesionXAILib.counterfactual.lattice import ZERO_LAYERS, ControlLattice


def upsampling_matrix(n: int, step: int) -> np.ndarray:
    """Return the (n, m) matrix taking m control values (zero layers included) to n voxels along one axis.

    It is linear interpolation (control point p sits on voxel p * step) followed by a Gaussian blur
    (sigma = step / 2, truncated at one step, zero beyond the box): smooth between control points, and
    exactly zero on the end voxels because the two outer control layers are zero.
    """
    m = (n - 1) // step + 1
    linear = np.zeros((n, m))
    for v in range(n):
        p, frac = divmod(v, step)
        linear[v, p] += 1.0 - frac / step
        if frac:
            linear[v, p + 1] += frac / step
    offsets = np.arange(-step, step + 1)
    kernel = np.exp(-0.5 * (offsets / (0.5 * step)) ** 2)
    kernel /= kernel.sum()
    blur = np.zeros((n, n))
    for v in range(n):
        for o, w in zip(offsets, kernel):
            if 0 <= v + o < n:
                blur[v, v + o] = w
    return blur @ linear


class SmoothField:
    """Maps (C, *free_shape) free control points to a smooth (C, k, j, i) field on a lattice's box (separable, linear)."""

    def __init__(self, lattice: ControlLattice, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        mats = [upsampling_matrix(n, s)[:, ZERO_LAYERS:-ZERO_LAYERS] for n, s in zip(lattice.shape, lattice.step)]
        self.matrices = [torch.as_tensor(m, dtype=dtype, device=device) for m in mats]

    def __call__(self, free: torch.Tensor) -> torch.Tensor:
        """Return the field on the box of the (C, fk, fj, fi) control points ``free``."""
        mk, mj, mi = self.matrices
        out = torch.einsum("cabd,ia->cibd", free, mk)
        out = torch.einsum("cibd,jb->cijd", out, mj)
        return torch.einsum("cijd,kd->cijk", out, mi)


def identity_grid(shape: Sequence[int], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Return the (k, j, i, 3) voxel coordinates (components i, j, k) of a grid of k, j, i ``shape``."""
    axes = [torch.arange(int(n), dtype=dtype, device=device) for n in shape]
    kk, jj, ii = torch.meshgrid(*axes, indexing="ij")
    return torch.stack((ii, jj, kk), dim=-1)


def sample(image: torch.Tensor, points: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """Return ``image`` (C, K, J, I) linearly interpolated at ``points`` (k, j, i, 3) voxel coordinates (components i, j, k)."""
    k, j, i = image.shape[1:]
    scale = torch.tensor([2.0 / max(i - 1, 1), 2.0 / max(j - 1, 1), 2.0 / max(k - 1, 1)], dtype=points.dtype, device=points.device)
    grid = points * scale - 1.0
    return F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode=padding, align_corners=True)[0]


def exp_velocity(velocity: torch.Tensor, squaring_steps: int) -> torch.Tensor:
    """Return the displacement (3, k, j, i) of exp(velocity) by scaling and squaring, in voxel units."""
    base = identity_grid(velocity.shape[1:], velocity.dtype, velocity.device)
    u = velocity / (2.0**squaring_steps)
    for _ in range(int(squaring_steps)):
        u = u + sample(u, base + u.permute(1, 2, 3, 0))
    return u


def warp_crop(image: torch.Tensor, displacement: torch.Tensor, offset: Sequence[int]) -> torch.Tensor:
    """Return the box part of ``image`` (C, crop) pulled back through ``displacement`` (3, box) placed at k, j, i ``offset`` in the crop."""
    base = identity_grid(displacement.shape[1:], displacement.dtype, displacement.device)
    shift = torch.tensor([float(offset[2]), float(offset[1]), float(offset[0])], dtype=displacement.dtype, device=displacement.device)
    return sample(image, base + shift + displacement.permute(1, 2, 3, 0), padding="border")


def jacobian_determinant(displacement: torch.Tensor) -> torch.Tensor:
    """Return det(I + du/dx) (k, j, i) of a (3, k, j, i) displacement by central differences (zero beyond the box).

    Spacing and direction cancel out of the determinant, so voxel units give the physical value.
    """
    u = F.pad(displacement, (1, 1, 1, 1, 1, 1))
    dims = (3, 2, 1)  # tensor dimension of the i, j, k axes
    m = []  # m[a][b] = delta_ab + d u_a / d x_b
    for a in range(3):
        row = []
        for b in range(3):
            lo = [slice(1, -1)] * 3
            hi = [slice(1, -1)] * 3
            lo[dims[b] - 1] = slice(0, -2)
            hi[dims[b] - 1] = slice(2, None)
            row.append((u[a][tuple(hi)] - u[a][tuple(lo)]) * 0.5 + (1.0 if a == b else 0.0))
        m.append(row)
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )


def displacement_mm_lps(displacement_ijk: np.ndarray, spacing: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """Return (k, j, i, 3) physical displacements (LPS mm, ITK's vector convention) of a (3, k, j, i) voxel field."""
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    scaled = np.stack([displacement_ijk[a].astype(np.float64) * float(spacing[a]) for a in range(3)], -1)
    return (scaled @ d.T).astype(np.float32)
