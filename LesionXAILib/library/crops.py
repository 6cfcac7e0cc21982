"""Small display crops of a lesion: three orthogonal FLAIR slices through its centroid, 1 mm pixels, uint8.

Planes, each ``size`` x ``size`` mm sampled at 1 mm (trilinear, so anisotropic voxels are shown to
scale): axial (fixed k; rows j, columns i), coronal (fixed j; rows k, columns i), sagittal (fixed i;
rows k, columns j), in voxel index order. Grey levels: the FLAIR's 1st-99th percentile inside the brain
(non-zero voxels) mapped to 0-255, so crops of one subject share a scale. The lesion mask is sampled
the same way (nearest) for outlines.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

CROP_MM = 32


def intensity_window(flair: np.ndarray) -> tuple[float, float]:
    """Return the (1st, 99th) percentile of the FLAIR's non-zero voxels (0, 1 for an empty image)."""
    values = flair[flair != 0]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(max(hi, lo + 1e-6))


def _plane_coordinates(centre_kji: Sequence[float], spacing_kji: Sequence[float], axes: tuple[int, int], size: int) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    rows, cols = np.meshgrid(offsets / spacing_kji[axes[0]], offsets / spacing_kji[axes[1]], indexing="ij")
    coords = np.empty((3, size, size))
    for a in range(3):
        coords[a] = centre_kji[a]
    coords[axes[0]] += rows
    coords[axes[1]] += cols
    return coords


PLANES = {"axial": (1, 2), "coronal": (0, 2), "sagittal": (0, 1)}


def lesion_crops(
    flair: np.ndarray,
    mask: np.ndarray,
    centre_kji: Sequence[float],
    spacing_kji: Sequence[float],
    window: tuple[float, float],
    size: int = CROP_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ((3, size, size) uint8 FLAIR planes, (3, size, size) uint8 0/1 mask planes) through ``centre_kji``."""
    from scipy.ndimage import map_coordinates

    lo, hi = window
    grey, outline = [], []
    for axes in PLANES.values():
        c = _plane_coordinates(centre_kji, spacing_kji, axes, size)
        v = map_coordinates(np.asarray(flair, dtype=np.float32), c, order=1, mode="constant", cval=0.0)
        m = map_coordinates(np.asarray(mask, dtype=np.uint8), c, order=0, mode="constant", cval=0)
        grey.append(np.clip((v - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8))
        outline.append(m.astype(np.uint8))
    return np.stack(grey), np.stack(outline)
