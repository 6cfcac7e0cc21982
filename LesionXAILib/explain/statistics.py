"""Per-instance, per-map statistics: attribution inside the lesion, in a perilesional ring, and outside.

Regions use physical distances (anisotropic spacing honoured): the ring holds the voxels outside
the lesion at distance d with inner <= d <= outer mm from the nearest lesion voxel (default 1-3 mm),
"outside" those with d > outer. For each region: sum, mean, peak (largest value), trough (smallest
value) and absolute sum. In ROI mode gradient maps are 0 beyond the crop, so "outside" effectively
covers the crop minus the lesion and ring; the crop box is recorded with every explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from LesionXAILib.errors import InstanceError
from LesionXAILib.roi import margin_voxels


@dataclass
class LesionRegions:
    """Boolean k,j,i masks of the lesion, its perilesional ring and everything beyond the ring."""

    inside: np.ndarray
    ring: np.ndarray
    outside: np.ndarray
    ring_mm: tuple[float, float]


def lesion_regions(mask: np.ndarray, spacing_kji: Sequence[float], ring_mm: Sequence[float] = (1.0, 3.0)) -> LesionRegions:
    """Return the inside / ring / outside masks of a lesion, with distances in mm (Euclidean, voxel spacing)."""
    from scipy.ndimage import distance_transform_edt

    mask = np.asarray(mask, dtype=bool)
    idx = np.nonzero(mask)
    if idx[0].size == 0:
        raise InstanceError("instance mask is empty (no lesion voxel inside the image)")
    inner, outer = float(ring_mm[0]), float(ring_mm[1])
    grow = np.array(margin_voxels(outer, spacing_kji)) + 1
    lo = np.maximum([i.min() for i in idx] - grow, 0)
    hi = np.minimum([i.max() + 1 for i in idx] + grow, mask.shape)
    sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    # distances only matter up to `outer`, which the grown box contains, so the EDT runs on it alone
    dist = distance_transform_edt(~mask[sub], sampling=tuple(float(s) for s in spacing_kji))
    ring = np.zeros_like(mask)
    ring[sub] = (dist >= inner) & (dist <= outer) & ~mask[sub]
    near = np.zeros_like(mask)
    near[sub] = dist <= outer
    return LesionRegions(mask, ring, ~(near | mask), (inner, outer))


def _region_stats(values: np.ndarray, prefix: str) -> dict[str, float]:
    if values.size == 0:
        nan = float("nan")
        return {f"{prefix}_sum": 0.0, f"{prefix}_mean": nan, f"{prefix}_peak": nan, f"{prefix}_trough": nan,
                f"{prefix}_abs_sum": 0.0, f"{prefix}_voxels": 0}  # fmt: skip
    v = values.astype(np.float64, copy=False)
    return {
        f"{prefix}_sum": float(v.sum()),
        f"{prefix}_mean": float(v.mean()),
        f"{prefix}_peak": float(v.max()),
        f"{prefix}_trough": float(v.min()),
        f"{prefix}_abs_sum": float(np.abs(v).sum()),
        f"{prefix}_voxels": int(v.size),
    }


def map_statistics(attribution: np.ndarray, regions: LesionRegions) -> dict[str, float]:
    """Return sum/mean/peak/trough/abs-sum (and voxel count) of one map inside, in the ring and outside."""
    a = np.asarray(attribution)
    stats: dict[str, float] = {}
    for prefix, m in (("inside", regions.inside), ("ring", regions.ring), ("outside", regions.outside)):
        stats.update(_region_stats(a[m], prefix))
    stats["total_abs_sum"] = float(np.abs(a).sum(dtype=np.float64))
    return stats


def sequence_share(maps: Mapping[str, np.ndarray], sequence: str) -> float:
    """Return sum|map of ``sequence``| / sum|all maps|: one sequence's share of total absolute attribution."""
    totals = {k: float(np.abs(v).sum(dtype=np.float64)) for k, v in maps.items()}
    total = sum(totals.values())
    return totals[sequence] / total if total > 0 else float("nan")
