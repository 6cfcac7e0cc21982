"""Synthetic-lesion insertion into an existing FLAIR/MPRAGE pair (for the synthetic-lesion probe and teaching)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.geometry import Geometry
from LesionXAILib.phantom.lesion_shapes import SHAPES, design_shape, lesion_fraction
from LesionXAILib.phantom.contrasts import lesion_contrast_map

# WM probability from which a voxel counts as normal-appearing white matter
NAWM_PROBABILITY = 0.7
REFERENCE_SHELL_MM = 4.0


def _check_inputs(flair: np.ndarray, t1: np.ndarray, geometry: Geometry, center_ijk, volume_mm3, contrasts, shape, wm):
    for name, arr in (("FLAIR", flair), ("MPRAGE", t1)) + ((("wm", wm),) if wm is not None else ()):
        if np.shape(arr) != geometry.shape:
            raise ParameterError(f"insert_lesion: {name} shape {np.shape(arr)} does not match the grid {geometry.shape}")
    if len(center_ijk) != 3 or not all(np.isfinite(center_ijk)):
        raise ParameterError(f"insert_lesion: center_ijk must be three finite voxel indices, got {center_ijk}")
    if not all(-0.5 <= c <= n - 0.5 for c, n in zip(center_ijk, geometry.size)):
        raise ParameterError(f"insert_lesion: center_ijk {tuple(center_ijk)} lies outside the image (size {geometry.size})")
    if not np.isfinite(volume_mm3) or volume_mm3 <= 0:
        raise ParameterError(f"insert_lesion: volume_mm3 must be > 0, got {volume_mm3}")
    for name, c in contrasts:
        if not np.isfinite(c) or c <= 0:
            raise ParameterError(f"insert_lesion: {name} must be a positive intensity ratio, got {c}")
    if shape not in SHAPES:
        raise ParameterError(f"insert_lesion: shape must be one of {SHAPES}, got '{shape}'")


def insert_lesion(
    flair: np.ndarray,
    t1: np.ndarray,
    geometry: Geometry,
    center_ijk: Sequence[float],
    volume_mm3: float,
    flair_contrast: float = 1.8,
    t1_contrast: float = 0.7,
    seed: int = 0,
    shape: str = "ovoid",
    wm: Optional[np.ndarray] = None,
    heterogeneity: float = 0.2,
    edge_mm: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (new FLAIR, new MPRAGE, lesion mask) with a lesion added at ``center_ijk``; inputs are not modified.

    Contrasts are lesion/normal-appearing-WM intensity ratios (FLAIR > 1 hyperintense, MPRAGE < 1
    hypointense). The reference level is the median intensity around the site (restricted to
    ``wm >= 0.7`` when a WM probability map is given, which also confines the lesion to WM). The
    lesion is added as an intensity shift, f * (ratio - 1) * reference, so the image's own noise,
    bias and texture stay visible through it. ``volume_mm3`` is the continuum volume of the shape
    (voxelised, it varies by a voxel or so on small lesions); voxels outside the brain (zero in
    either image) are never painted.
    """
    flair = np.asarray(flair)
    t1 = np.asarray(t1)
    _check_inputs(
        flair, t1, geometry, center_ijk, volume_mm3, (("flair_contrast", flair_contrast), ("t1_contrast", t1_contrast)), shape, wm
    )
    rng = np.random.default_rng(int(seed))
    lesion = design_shape(rng, float(volume_mm3), shape, edge_mm=float(edge_mm)).at(tuple(float(c) for c in center_ijk[::-1]))
    found = lesion_fraction(lesion, geometry.shape, geometry.spacing_kji)
    new_flair = flair.astype(np.float32, copy=True)
    new_t1 = t1.astype(np.float32, copy=True)
    mask = np.zeros(geometry.shape, dtype=bool)
    if found is None:
        return new_flair, new_t1, mask
    sl, f, rho = found
    brain = (flair[sl] != 0) & (t1[sl] != 0)
    f = f * brain
    if wm is not None:
        # fade the lesion out where white matter ends, as a real WM lesion would
        f = f * np.clip((np.asarray(wm)[sl] - 0.3) / (NAWM_PROBABILITY - 0.3), 0.0, 1.0)
    reference = _reference_region(lesion.mean_radius_mm, geometry, center_ijk, brain, sl, wm)
    for image, new, ratio in ((flair, new_flair, flair_contrast), (t1, new_t1, t1_contrast)):
        level = float(np.median(image[sl][reference])) if reference.any() else float(np.median(image[sl][brain]))
        shift = f * (lesion_contrast_map(float(ratio), rho, float(heterogeneity)) - 1.0) * level
        patch = new[sl] + shift
        # a darkening lesion must not punch a hole (0 = background to the z-scoring)
        new[sl] = np.where(brain, np.maximum(patch, np.float32(1e-3)), new[sl])
    mask[sl] = f >= 0.5
    return new_flair, new_t1, mask


def _reference_region(radius_mm, geometry, center_ijk, brain, sl, wm) -> np.ndarray:
    """Return the voxels of the local box within the lesion radius plus a shell, in the brain (and in NAWM)."""
    spacing = np.asarray(geometry.spacing_kji)
    center = np.asarray(center_ijk[::-1], dtype=float)
    axes = [(np.arange(s.start, s.stop) - c) * sp for s, c, sp in zip(sl, center, spacing)]
    kk, jj, ii = np.meshgrid(*axes, indexing="ij")
    near = np.sqrt(kk**2 + jj**2 + ii**2) <= radius_mm + REFERENCE_SHELL_MM
    region = near & brain
    if wm is not None:
        region &= np.asarray(wm)[sl] >= NAWM_PROBABILITY
    return region


def pick_nawm_center(
    wm: np.ndarray,
    geometry: Geometry,
    lesions: Optional[np.ndarray] = None,
    seed: int = 0,
    min_distance_mm: float = 10.0,
    min_wm: float = 0.9,
) -> tuple[int, int, int]:
    """Return an i,j,k voxel in normal-appearing WM (wm >= ``min_wm``) at least ``min_distance_mm`` from any lesion."""
    from scipy import ndimage

    wm = np.asarray(wm)
    if wm.shape != geometry.shape:
        raise ParameterError(f"pick_nawm_center: wm shape {wm.shape} does not match the grid {geometry.shape}")
    ok = wm >= min_wm
    if lesions is not None and np.any(lesions):
        distance = ndimage.distance_transform_edt(~np.asarray(lesions, dtype=bool), sampling=geometry.spacing_kji)
        ok &= distance >= min_distance_mm
    candidates = np.flatnonzero(ok)
    if candidates.size == 0:
        raise ParameterError(
            f"pick_nawm_center: no voxel with wm >= {min_wm} lies {min_distance_mm} mm away from every lesion"
        )
    k, j, i = np.unravel_index(int(candidates[np.random.default_rng(int(seed)).integers(candidates.size)]), wm.shape)
    return int(i), int(j), int(k)
