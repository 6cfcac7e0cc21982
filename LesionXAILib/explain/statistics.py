"""Per-instance, per-map statistics: attribution inside the lesion, in a perilesional ring, and outside.

Regions use physical distances (anisotropic spacing honoured): the ring holds the voxels outside
the lesion at distance d with inner <= d <= outer mm from the nearest lesion voxel (default 1-3 mm),
"outside" those with d > outer. For each region: sum, mean, peak (largest value), trough (smallest
value) and absolute sum. In ROI mode gradient maps are 0 beyond the crop, so "outside" effectively
covers the crop minus the lesion and ring; the crop box is recorded with every explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from LesionXAILib.crop import margin_voxels, mask_bounds


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
    inner, outer = float(ring_mm[0]), float(ring_mm[1])
    lo, hi = _ring_bounds(mask, spacing_kji, outer)
    sub = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    # distances only matter up to `outer`, which the grown box contains, so the EDT runs on it alone
    dist = distance_transform_edt(~mask[sub], sampling=tuple(float(s) for s in spacing_kji))
    ring = np.zeros_like(mask)
    ring[sub] = (dist >= inner) & (dist <= outer) & ~mask[sub]
    near = np.zeros_like(mask)
    near[sub] = dist <= outer
    return LesionRegions(mask, ring, ~(near | mask), (inner, outer))


def _ring_bounds(mask: np.ndarray, spacing_kji: Sequence[float], outer_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (lo, hi) k,j,i bounds of the lesion grown past ``outer_mm`` (clipped to the grid)."""
    lo, hi = mask_bounds(mask)
    grow = np.array(margin_voxels(outer_mm, spacing_kji)) + 1
    return np.maximum(lo - grow, 0), np.minimum(hi + grow, mask.shape)


@dataclass
class LocalRegions:
    """Lesion regions computed on a sub-box of the grid; every voxel beyond it is in the "outside" region."""

    where: tuple[slice, slice, slice]
    regions: LesionRegions  # masks over ``where``
    full_shape: tuple[int, int, int]

    @property
    def beyond_voxels(self) -> int:
        """Return the number of grid voxels outside ``where``."""
        inner = int(np.prod([s.stop - s.start for s in self.where]))
        return int(np.prod(self.full_shape)) - inner


def local_regions(
    mask: np.ndarray,
    spacing_kji: Sequence[float],
    ring_mm: Sequence[float] = (1.0, 3.0),
    include: Optional[Sequence[slice]] = None,
) -> LocalRegions:
    """Return the lesion regions on the smallest box holding the lesion, its ring and ``include`` (a k,j,i box).

    The regions inside that box equal :func:`lesion_regions` of the whole grid; the grid beyond it is outside.
    """
    mask = np.asarray(mask, dtype=bool)
    lo, hi = _ring_bounds(mask, spacing_kji, float(ring_mm[1]))
    if include is not None:
        lo = np.minimum(lo, [max(0, s.start) for s in include])
        hi = np.maximum(hi, [min(n, s.stop) for s, n in zip(include, mask.shape)])
    where = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return LocalRegions(where, lesion_regions(mask[where], spacing_kji, ring_mm), tuple(int(n) for n in mask.shape))


def _aggregates(values: np.ndarray) -> tuple[float, float, float, float, int]:
    if values.size == 0:
        return 0.0, 0.0, -np.inf, np.inf, 0
    v = values.astype(np.float64, copy=False)
    return float(v.sum()), float(np.abs(v).sum()), float(v.max()), float(v.min()), int(v.size)


def _merge(a: tuple, b: tuple) -> tuple[float, float, float, float, int]:
    return a[0] + b[0], a[1] + b[1], max(a[2], b[2]), min(a[3], b[3]), a[4] + b[4]


def _finish(agg: tuple, prefix: str) -> dict[str, float]:
    total, abs_total, peak, trough, n = agg
    nan = float("nan")
    return {
        f"{prefix}_sum": float(total),
        f"{prefix}_mean": float(total / n) if n else nan,
        f"{prefix}_peak": float(peak) if n else nan,
        f"{prefix}_trough": float(trough) if n else nan,
        f"{prefix}_abs_sum": float(abs_total),
        f"{prefix}_voxels": int(n),
    }


def _region_stats(values: np.ndarray, prefix: str) -> dict[str, float]:
    return _finish(_aggregates(values), prefix)


def map_statistics(attribution: np.ndarray, regions: LesionRegions) -> dict[str, float]:
    """Return sum/mean/peak/trough/abs-sum (and voxel count) of one map inside, in the ring and outside."""
    a = np.asarray(attribution)
    stats: dict[str, float] = {}
    for prefix, m in (("inside", regions.inside), ("ring", regions.ring), ("outside", regions.outside)):
        stats.update(_region_stats(a[m], prefix))
    stats["total_abs_sum"] = float(np.abs(a).sum(dtype=np.float64))
    return stats


def local_map_statistics(attribution: np.ndarray, local: LocalRegions, zero_beyond: bool) -> dict[str, float]:
    """Return :func:`map_statistics` of a full-grid map using regions computed on a sub-box.

    ``zero_beyond``: the map is 0 outside ``local.where`` (a gradient map of a crop inside it), so
    the rest of the grid adds only zeros to "outside" and is not read.
    """
    a = np.asarray(attribution)
    sub = a[local.where]
    r = local.regions
    inside, ring, outside = (_aggregates(sub[m]) for m in (r.inside, r.ring, r.outside))
    beyond = local.beyond_voxels
    if beyond and zero_beyond:
        rest = (0.0, 0.0, 0.0, 0.0, beyond)
    elif beyond:
        rest = (0.0, 0.0, -np.inf, np.inf, 0)
        for slab in _complement(local.where, local.full_shape):
            rest = _merge(rest, _aggregates(a[slab]))
    else:
        rest = (0.0, 0.0, -np.inf, np.inf, 0)
    outside = _merge(outside, rest)
    stats = {**_finish(inside, "inside"), **_finish(ring, "ring"), **_finish(outside, "outside")}
    # the regions need not cover the grid (voxels nearer than the ring's inner radius), so sum all of it
    stats["total_abs_sum"] = float(np.abs(sub).sum(dtype=np.float64) + rest[1])
    return stats


def _complement(where: Sequence[slice], shape: Sequence[int]):
    """Yield disjoint k,j,i boxes covering the grid outside ``where``."""
    fixed: list[slice] = []
    for axis, (s, n) in enumerate(zip(where, shape)):
        rest = [slice(None)] * (2 - axis)
        if s.start > 0:
            yield tuple(fixed + [slice(0, s.start)] + rest)
        if s.stop < n:
            yield tuple(fixed + [slice(s.stop, n)] + rest)
        fixed.append(s)


def sequence_share(abs_totals: Mapping[str, float], sequence: str) -> float:
    """Return ``sequence``'s share of the per-sequence absolute attribution sums (NaN if all are 0)."""
    totals = {k: float(v) for k, v in abs_totals.items()}
    total = sum(totals.values())
    return totals[sequence] / total if total > 0 else float("nan")
