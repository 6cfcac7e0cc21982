"""Per-lesion slice stacks for the report, and the colour scales shared by every lesion of a subject.

A lesion's panel shows the same three planes through its centroid for every image: FLAIR, the lesion
mask (for the outline), the per-sequence attribution maps and the CAM. :func:`lesion_slices` samples
them once (small 2D arrays), so that the shared scales can be computed over all lesions before any
figure is drawn, and the full volumes can be released lesion by lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from LesionXAILib.report.data import LesionData, RunData
from LesionXAILib.report.slices import (
    VIEWS,
    SliceGrid,
    display_pixel_mm,
    sample,
    slice_grid,
)

DEFAULT_HALF_WIDTH_MM = 16.0
# robust top of the shared colour scales: brighter values saturate (the colour bars show arrows)
SCALE_PERCENTILE = 99.5


@dataclass
class LesionSlices:
    """The sampled views of one lesion: ``images[view][name]`` 2D arrays on ``grids[view]``."""

    lesion: LesionData
    grids: dict[str, SliceGrid]
    images: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def get(self, view: str, name: str) -> Optional[np.ndarray]:
        """Return image ``name`` ('flair', 'mask', a map key) in ``view``, or None."""
        return self.images.get(view, {}).get(name)


@dataclass(frozen=True)
class SharedScales:
    """Colour limits shared by all lesions: +-``gradient`` (diverging, both sequences) and the FLAIR window.

    CAMs are not shared: their magnitude follows the instance target (a sum over the lesion's voxels),
    and at a half-resolution layer they spread over the whole view, so a shared scale saturates large
    lesions' maps and blanks small ones; each lesion's CAM uses :func:`lesion_scale` instead.
    """

    gradient: Optional[float]
    flair_window: Optional[tuple[float, float]]
    percentile: float = SCALE_PERCENTILE


def lesion_half_width(lesion: LesionData, spacing: tuple[float, float, float], minimum: float = DEFAULT_HALF_WIDTH_MM) -> float:
    """Return the half width in mm of a lesion's views: ``minimum``, or more to hold the whole lesion plus 8 mm."""
    lo = np.asarray(lesion.row.get("bbox_ijk_min", [0, 0, 0]), dtype=float)
    hi = np.asarray(lesion.row.get("bbox_ijk_max", [0, 0, 0]), dtype=float)
    radius = float(np.max((hi - lo + 1) * np.asarray(spacing)) / 2.0)
    return max(minimum, radius + 8.0)


def lesion_slices(
    run: RunData,
    lesion: LesionData,
    map_volumes: dict[str, np.ndarray],
    half_width_mm: float = DEFAULT_HALF_WIDTH_MM,
) -> LesionSlices:
    """Return the three views through ``lesion``'s centroid of the FLAIR, its mask and ``map_volumes``."""
    pixel = display_pixel_mm(run.geometry)
    half = lesion_half_width(lesion, run.geometry.spacing, half_width_mm)
    grids = {v.name: slice_grid(v, lesion.centroid_ras, half, pixel) for v in VIEWS}
    labels = run.labels()
    flair = run.flair()
    out = LesionSlices(lesion, grids)
    for name, grid in grids.items():
        views: dict[str, np.ndarray] = {}
        lab = sample(labels, run.geometry, grid, nearest=True, outside=0)
        views["mask"] = lab == lesion.id
        views["labels"] = lab
        if flair is not None:
            views["flair"] = sample(flair, run.geometry, grid)
        for key, volume in map_volumes.items():
            views[key] = sample(volume, run.geometry, grid)
        out.images[name] = views
    return out


def flair_window(flair: Optional[np.ndarray], low: float = 1.0, high: float = 99.5) -> Optional[tuple[float, float]]:
    """Return the FLAIR display window: percentiles of the non-zero (brain) voxels, from a fixed subsample."""
    if flair is None:
        return None
    values = flair[flair != 0]
    if values.size == 0:
        return (float(flair.min()), float(flair.max()) or 1.0)
    step = max(1, values.size // 500_000)  # deterministic subsample keeps this fast on whole brains
    lo, hi = np.percentile(values[::step], [low, high])
    return (float(lo), float(hi) if hi > lo else float(lo) + 1.0)


def _top(stacks: list[LesionSlices], keys: list[str], percentile: float) -> Optional[float]:
    """Return the ``percentile`` of the non-zero |values| of images ``keys`` over all views of ``stacks``."""
    chunks = [np.abs(a[np.isfinite(a)]) for s in stacks for view in s.images.values() for k in keys if (a := view.get(k)) is not None]
    if not chunks:
        return None
    values = np.concatenate(chunks)
    values = values[values != 0]  # ROI maps are exactly 0 beyond the crop; those pixels say nothing
    if values.size == 0:
        return None
    v = float(np.percentile(values, percentile))
    return v if v > 0 else float(values.max())


def lesion_scale(stack: LesionSlices, key: str, percentile: float = SCALE_PERCENTILE) -> Optional[float]:
    """Return the top of one lesion's own colour scale for image ``key`` (its views only)."""
    return _top([stack], [key], percentile)


def shared_scales(
    stacks: list[LesionSlices], gradient_keys: list[str], flair: Optional[tuple[float, float]], percentile: float = SCALE_PERCENTILE
) -> SharedScales:
    """Return colour limits over all shown slices of all lesions (gradient maps: both sequences together)."""
    return SharedScales(gradient=_top(stacks, gradient_keys, percentile) if gradient_keys else None, flair_window=flair, percentile=percentile)
