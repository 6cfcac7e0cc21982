"""Balls in millimetres around a lesion, honouring anisotropic voxel spacing; the anchor's voxel-step dilations.

One Euclidean distance transform (``sampling`` = voxel spacing) gives the distance in mm from every
voxel centre to the nearest lesion voxel centre; the lesion dilated by a ball of radius r is then
``distance <= r`` for every r at once. This is the same set as a binary dilation with the
ellipsoidal (in voxel space) structuring element :func:`ball_element`, without one dilation per radius.

The anchor study grew the lesion instead by n-fold binary dilation with the 18-connected element
(``scipy.ndimage.generate_binary_structure(3, 2)``), n = 1 ... 34 voxel steps, whatever the spacing:
:func:`dilation_steps` gives, per voxel, the smallest n whose dilation holds it (one dilation per step),
so that ``steps <= n`` is the n-fold dilation.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from LesionXAILib.errors import InstanceError, ParameterError

# distances are sums of squares of spacings; a relative slack keeps r = 1 mm from losing a voxel at 1.0000001
_TOLERANCE = 1e-6


def check_spacing(spacing_kji: Sequence[float]) -> tuple[float, float, float]:
    """Return the k,j,i spacing as floats after checking there are three positive finite values."""
    s = tuple(float(v) for v in spacing_kji)
    if len(s) != 3 or not all(math.isfinite(v) and v > 0 for v in s):
        raise ParameterError(f"voxel spacing must be three positive numbers (mm), got {tuple(spacing_kji)}")
    return s


def distance_from_mask_mm(mask: np.ndarray, spacing_kji: Sequence[float]) -> np.ndarray:
    """Return float32 distances (mm) from each voxel centre to the nearest voxel of ``mask`` (0 inside it)."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise ParameterError(f"lesion mask must be 3D (k, j, i), got shape {m.shape}")
    if not m.any():
        raise InstanceError("instance mask is empty (no voxel inside the image)")
    spacing = check_spacing(spacing_kji)
    return ndimage.distance_transform_edt(~m, sampling=spacing).astype(np.float32)


def within_radius(distance_mm: np.ndarray, radius_mm: float) -> np.ndarray:
    """Return the boolean mask ``distance_mm <= radius_mm`` (with a tiny tolerance for float round-off)."""
    return distance_mm <= radius_mm * (1.0 + _TOLERANCE) + _TOLERANCE


def dilate_mm(mask: np.ndarray, radius_mm: float, spacing_kji: Sequence[float]) -> np.ndarray:
    """Return ``mask`` dilated by a ball of ``radius_mm`` millimetres in physical space."""
    if not radius_mm >= 0:
        raise ParameterError(f"dilation radius must be >= 0 mm, got {radius_mm}")
    return within_radius(distance_from_mask_mm(mask, spacing_kji), float(radius_mm))


def ball_element(radius_mm: float, spacing_kji: Sequence[float]) -> np.ndarray:
    """Return the boolean structuring element of all voxel offsets within ``radius_mm`` mm (an ellipsoid in voxels)."""
    if not radius_mm >= 0:
        raise ParameterError(f"ball radius must be >= 0 mm, got {radius_mm}")
    spacing = check_spacing(spacing_kji)
    half = [int(math.floor(radius_mm / s + _TOLERANCE)) for s in spacing]
    grids = np.meshgrid(*[np.arange(-h, h + 1) * s for h, s in zip(half, spacing)], indexing="ij")
    dist = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))
    return within_radius(dist, float(radius_mm))


def shell_labels(distance_mm: np.ndarray, radii_mm: Sequence[float]) -> np.ndarray:
    """Return int16 labels: 1 + index of the smallest radius whose ball holds the voxel, 0 beyond the largest.

    With ``radii_mm`` sorted ascending; for the default radii 0, 1, 2, ... the label is radius + 1 mm
    (label 1 is the lesion itself, the r = 0 ball).
    """
    radii = np.asarray(radii_mm, dtype=np.float64)
    if radii.ndim != 1 or radii.size == 0 or np.any(np.diff(radii) <= 0):
        raise ParameterError("shell radii must be a non-empty, strictly increasing list")
    if radii.size > np.iinfo(np.int16).max - 1:
        raise ParameterError(f"too many radii for an int16 label volume ({radii.size})")
    bounds = radii * (1.0 + _TOLERANCE) + _TOLERANCE
    # searchsorted(side='left') finds the first bound >= distance, i.e. the smallest ball holding the voxel
    index = np.searchsorted(bounds, distance_mm.astype(np.float64), side="left")
    labels = np.where(index < radii.size, index + 1, 0)
    return labels.astype(np.int16)


ELEMENTS = ("ball", "anchor")  # Euclidean balls in mm; the anchor's 18-connected voxel steps


def anchor_element() -> np.ndarray:
    """Return the anchor's 3x3x3 18-connected structuring element (generate_binary_structure(3, 2))."""
    from scipy import ndimage

    return ndimage.generate_binary_structure(3, 2)


def dilation_steps(mask: np.ndarray, max_steps: int) -> np.ndarray:
    """Return float32 per-voxel step counts: the smallest n <= ``max_steps`` whose n-fold 18-connected dilation of ``mask`` holds the voxel (inf beyond)."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise ParameterError(f"lesion mask must be 3D (k, j, i), got shape {m.shape}")
    if not m.any():
        raise InstanceError("instance mask is empty (no voxel inside the image)")
    if int(max_steps) != max_steps or max_steps < 0:
        raise ParameterError(f"dilation steps must be a whole number >= 0, got {max_steps}")
    steps = np.full(m.shape, np.inf, dtype=np.float32)
    steps[m] = 0
    element = anchor_element()
    grown = m
    for n in range(1, int(max_steps) + 1):
        grown = ndimage.binary_dilation(grown, structure=element)
        steps[grown & np.isinf(steps)] = n
    return steps


def dilate_steps(mask: np.ndarray, steps: int) -> np.ndarray:
    """Return ``mask`` dilated ``steps`` times by the anchor's 18-connected element."""
    return dilation_steps(mask, steps) <= steps
