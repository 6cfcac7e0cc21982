"""Subject variability for phantoms: smooth random deformation, bias field, Rician noise, resampling.

All randomness comes from a ``numpy.random.Generator`` passed in, so a phantom is a pure function
of its seed. Interpolation uses ``torch.nn.functional.grid_sample`` (deterministic on CPU, and one
call warps every tissue map at once).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def sample_volume(volume: np.ndarray, coords_kji: torch.Tensor, padding: str = "zeros") -> np.ndarray:
    """Return (C, ...) float32 values of a (C, k, j, i) ``volume`` trilinearly sampled at (3, ...) k,j,i positions."""
    arr = np.ascontiguousarray(volume, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()  # torch refuses read-only buffers (the cached template is read-only)
    vol = torch.from_numpy(arr)[None]
    sizes = vol.shape[2:]
    out_shape = coords_kji.shape[1:]
    # grid_sample wants (x, y, z) = (i, j, k) normalised to [-1, 1] with align_corners=True
    grid = torch.stack(
        [coords_kji[axis] * (2.0 / max(sizes[axis] - 1, 1)) - 1.0 for axis in (2, 1, 0)], dim=-1
    ).reshape(1, *out_shape, 3)
    with torch.no_grad():
        out = F.grid_sample(vol, grid.float(), mode="bilinear", padding_mode=padding, align_corners=True)
    return out[0].numpy()


def smooth_noise(shape: Sequence[int], control: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Return a float32 field of ``shape`` with unit-variance-ish smooth noise varying on a ``control`` grid."""
    from scipy import ndimage

    coarse = rng.standard_normal(tuple(int(c) for c in control))
    # cubic spline to a quarter resolution, trilinear the rest of the way: smooth and cheap
    mid_shape = [max(int(c), int(np.ceil(s / 4))) for s, c in zip(shape, control)]
    mid = ndimage.zoom(coarse, [m / c for m, c in zip(mid_shape, coarse.shape)], order=3, mode="nearest")
    t = torch.from_numpy(mid.astype(np.float32))[None, None]
    with torch.no_grad():
        full = F.interpolate(t, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=True)
    field = full[0, 0].numpy()
    std = float(field.std())
    return field / std if std > 0 else field


def affine_jitter(rng: np.random.Generator, max_rotation_deg: float, max_scale: float) -> np.ndarray:
    """Return a random 3x3 (k,j,i) matrix: small rotations about each axis times per-axis scaling."""
    angles = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg, 3))
    m = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = np.cos(a), np.sin(a)
        r = np.eye(3)
        p, q = [x for x in range(3) if x != axis]
        r[p, p], r[p, q], r[q, p], r[q, q] = c, -s, s, c
        m = r @ m
    scale = np.diag(1.0 + rng.uniform(-max_scale, max_scale, 3))
    return m @ scale


def deformation_coords(
    out_shape: Sequence[int],
    start_kji: Sequence[float],
    center_kji: Sequence[float],
    rng: np.random.Generator,
    max_rotation_deg: float = 4.0,
    max_scale: float = 0.06,
    displacement_mm: float = 2.5,
    control_points: int = 5,
) -> torch.Tensor:
    """Return (3, *out_shape) source k,j,i positions: an affine jitter about ``center_kji`` plus a smooth warp.

    Output voxel p (offset by ``start_kji`` in the source grid) samples the source at
    c + A (p - c) + u(p) with u a smooth random displacement (std ``displacement_mm``, 1 mm voxels).
    """
    a = torch.from_numpy(affine_jitter(rng, max_rotation_deg, max_scale).astype(np.float32))
    axes = [torch.arange(n, dtype=torch.float32) + float(s) - float(c) for n, s, c in zip(out_shape, start_kji, center_kji)]
    kk, jj, ii = torch.meshgrid(*axes, indexing="ij")
    rel = torch.stack([kk, jj, ii])
    del kk, jj, ii
    src = torch.einsum("ab,b...->a...", a, rel)
    del rel
    control = [control_points] * 3
    for axis in range(3):
        src[axis] += float(center_kji[axis]) + torch.from_numpy(
            displacement_mm * smooth_noise(out_shape, control, rng)
        )
    return src


def bias_field(shape: Sequence[int], rng: np.random.Generator, strength: float, control_points: int = 4) -> np.ndarray:
    """Return a smooth multiplicative field exp(strength * noise) (float32, about 1 +- strength)."""
    return np.exp(strength * smooth_noise(shape, [control_points] * 3, rng)).astype(np.float32)


def add_rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return the magnitude of ``image`` plus complex Gaussian noise of std ``sigma`` per channel (Rician)."""
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def resampled_shape(shape_kji: Sequence[int], spacing_kji: Sequence[float], new_spacing_kji: Sequence[float]) -> tuple[int, ...]:
    """Return the k,j,i size covering the same extent as ``shape_kji`` at ``new_spacing_kji``."""
    return tuple(max(2, int(round(n * s / t))) for n, s, t in zip(shape_kji, spacing_kji, new_spacing_kji))


def resample_stack(
    stack: np.ndarray, spacing_kji: Sequence[float], new_spacing_kji: Sequence[float]
) -> np.ndarray:
    """Return a (C, k, j, i) stack resampled to ``new_spacing_kji`` (edge-aligned), blurred first along coarser axes.

    The blur is a Gaussian whose FWHM makes up the difference between the two voxel sizes, so a
    thick slice averages the tissue it covers (partial volume) instead of aliasing it.
    """
    from scipy import ndimage

    data = np.asarray(stack, dtype=np.float32)
    for axis, (s, t) in enumerate(zip(spacing_kji, new_spacing_kji)):
        if t > s * 1.01:
            sigma = np.sqrt(t * t - s * s) / (2.3548 * s)
            data = ndimage.gaussian_filter1d(data, sigma, axis=axis + 1, mode="nearest")
    new_shape = resampled_shape(data.shape[1:], spacing_kji, new_spacing_kji)
    # new voxel n covers [n t, (n+1) t) in mm from the first voxel's edge; its centre in old indices:
    axes = [
        (torch.arange(m, dtype=torch.float32) * t + (t - s) / 2.0) / s
        for m, s, t in zip(new_shape, spacing_kji, new_spacing_kji)
    ]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return sample_volume(data, coords, padding="border")
