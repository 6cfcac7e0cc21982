"""Normal-appearing white matter (NAWM) for the synthetic-lesion probe: where a synthetic lesion may go.

With a white-matter probability map (e.g. a phantom's ``wm``, or a tissue segmentation) the map is
used as given. Without one, white matter is estimated from the MPRAGE, where it is the brightest
brain tissue: a three-class 1D k-means of brain MPRAGE intensities, the brightest class kept,
minus FLAIR-hyperintense voxels (which would be lesions, not normal-appearing tissue).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.geometry import Geometry

# FLAIR above the white-matter median by this many robust standard deviations is not normal-appearing
HYPERINTENSE_SIGMAS = 3.0


def _kmeans_1d(values: np.ndarray, k: int = 3, iterations: int = 30) -> np.ndarray:
    """Return k sorted cluster centres of 1D ``values`` (Lloyd's algorithm from quantile starts)."""
    centres = np.quantile(values, np.linspace(0.2, 0.8, k))
    for _ in range(iterations):
        edges = (centres[1:] + centres[:-1]) / 2
        labels = np.searchsorted(edges, values)
        new = np.array([values[labels == c].mean() if np.any(labels == c) else centres[c] for c in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def estimate_white_matter(flair: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """Return a float32 0/1 map of estimated normal-appearing white matter from a FLAIR/MPRAGE pair (k,j,i)."""
    brain = (flair != 0) & (t1 != 0)
    if brain.sum() < 100:
        raise ParameterError("cannot estimate white matter: fewer than 100 brain (non-zero) voxels")
    t1_brain = t1[brain].astype(np.float64)
    centres = _kmeans_1d(t1_brain)
    wm = brain & (t1 >= (centres[1] + centres[2]) / 2)
    if not wm.any():
        raise ParameterError("cannot estimate white matter: no voxel in the brightest MPRAGE class")
    f = flair[wm].astype(np.float64)
    median = np.median(f)
    mad = 1.4826 * np.median(np.abs(f - median))
    wm &= flair <= median + HYPERINTENSE_SIGMAS * max(mad, 1e-6 * abs(median))
    return wm.astype(np.float32)


def nawm_candidates(
    wm: np.ndarray,
    geometry: Geometry,
    exclude: Optional[np.ndarray] = None,
    min_wm: float = 0.9,
    min_distance_mm: float = 10.0,
    depth_mm: float = 2.0,
) -> np.ndarray:
    """Return voxels with ``wm >= min_wm``, ``depth_mm`` inside white matter and ``min_distance_mm`` from ``exclude``."""
    from scipy import ndimage

    wm = np.asarray(wm)
    if wm.shape != geometry.shape:
        raise ParameterError(f"white-matter map shape {wm.shape} does not match the image grid {geometry.shape}")
    ok = wm >= min_wm
    if depth_mm > 0 and ok.any():
        ok &= ndimage.distance_transform_edt(wm >= 0.5, sampling=geometry.spacing_kji) > depth_mm
    if exclude is not None and np.any(exclude):
        ex = np.asarray(exclude, dtype=bool)
        if ex.shape != geometry.shape:
            raise ParameterError(f"exclusion mask shape {ex.shape} does not match the image grid {geometry.shape}")
        ok &= ndimage.distance_transform_edt(~ex, sampling=geometry.spacing_kji) >= min_distance_mm
    return ok


def pick_positions(
    candidates: np.ndarray, geometry: Geometry, n: int, seed: int = 0, min_separation_mm: float = 10.0
) -> list[tuple[int, int, int]]:
    """Return up to ``n`` random i,j,k candidate voxels, each ``min_separation_mm`` from the others (seeded)."""
    flat = np.flatnonzero(candidates)
    if flat.size == 0:
        raise ParameterError(
            "no normal-appearing white-matter voxel is far enough from lesions and tissue borders to insert a lesion"
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(flat.size)[: max(200 * n, 1000)]
    spacing = np.asarray(geometry.spacing_kji)
    chosen: list[np.ndarray] = []
    for index in flat[order]:
        kji = np.array(np.unravel_index(int(index), candidates.shape))
        if all(np.linalg.norm((kji - c) * spacing) >= min_separation_mm for c in chosen):
            chosen.append(kji)
            if len(chosen) == n:
                break
    return [(int(c[2]), int(c[1]), int(c[0])) for c in chosen]


def check_positions(positions: Sequence[Sequence[float]], geometry: Geometry) -> list[tuple[int, int, int]]:
    """Return the i,j,k positions as int tuples after checking they lie inside the image."""
    out = []
    for p in positions:
        if len(p) != 3 or not all(math.isfinite(float(v)) for v in p):
            raise ParameterError(f"a lesion position must be three voxel indices i,j,k; got {tuple(p)}")
        ijk = tuple(int(round(float(v))) for v in p)
        if not geometry.contains_index(ijk):
            raise ParameterError(f"lesion position {ijk} (i,j,k) lies outside the image (size {geometry.size})")
        out.append(ijk)
    if not out:
        raise ParameterError("no lesion position given")
    return out
