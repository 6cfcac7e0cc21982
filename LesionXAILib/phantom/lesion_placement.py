"""Where MS lesions go: periventricular, deep white matter and juxtacortical sites, sizes and touching pairs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.phantom.contrasts import LesionContrast, sample_lesion_contrast
from LesionXAILib.phantom.lesion_shapes import LesionShape, design_shape

KINDS = ("periventricular", "deep", "juxtacortical")
# periventricular lesions tend to be the large confluent ones, juxtacortical the small ones
KIND_VOLUME_FACTOR = {"periventricular": 1.8, "deep": 1.0, "juxtacortical": 0.6}
SMALL_LESION_MM3 = 15.0
EDGE_MARGIN_MM = 4.0
MAX_TRIES = 60


@dataclass(frozen=True)
class PlacementSettings:
    """How many lesions, of which kinds and sizes, how many touch a neighbour, and their contrasts."""

    kind_weights: tuple[float, float, float] = (0.45, 0.35, 0.20)
    volume_median_mm3: float = 50.0
    volume_sigma: float = 1.2
    volume_range_mm3: tuple[float, float] = (3.0, 2000.0)
    touching_fraction: float = 0.2
    irregular_fraction: float = 0.45
    flair_contrast: tuple[float, float] = (1.35, 2.0)
    t1_contrast: tuple[float, float] = (0.55, 0.92)
    contrast_jitter: float = 1.0


@dataclass(frozen=True)
class PlacedLesion:
    """A lesion chosen for a phantom: site kind, geometry, contrast and which lesion it touches (if any)."""

    id: int
    kind: str
    shape: LesionShape
    contrast: LesionContrast
    volume_requested_mm3: float
    touches: Optional[int] = None


@dataclass
class TissueMaps:
    """The (deformed) anatomy a phantom is built on, k,j,i float32 arrays on one grid."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    depth_mm: np.ndarray
    ventricle_mm: np.ndarray
    cortex_mm: np.ndarray
    spacing_kji: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Return the k,j,i grid shape."""
        return tuple(self.wm.shape)


def candidate_sites(tissue: TissueMaps) -> dict[str, np.ndarray]:
    """Return flat voxel indices eligible as lesion centres, per kind."""
    wm, csf = tissue.wm, tissue.csf
    vent, cortex, depth = tissue.ventricle_mm, tissue.cortex_mm, tissue.depth_mm
    inner = np.zeros(tissue.shape, dtype=bool)
    margin = [int(np.ceil(EDGE_MARGIN_MM / s)) for s in tissue.spacing_kji]
    inner[tuple(slice(m, n - m) for m, n in zip(margin, tissue.shape))] = True
    base = inner & (csf < 0.3) & (tissue.mask >= 0.5)
    sites = {
        "periventricular": base & (wm >= 0.6) & (vent >= 0.5) & (vent <= 7.0),
        "deep": base & (wm >= 0.85) & (vent > 7.0) & (cortex >= 5.0),
        "juxtacortical": base & (wm >= 0.5) & (cortex >= 1.0) & (cortex <= 3.0) & (depth >= 6.0),
    }
    return {k: np.flatnonzero(v) for k, v in sites.items()}


def sample_volume_mm3(rng: np.random.Generator, kind: str, settings: PlacementSettings) -> float:
    """Return a log-normal lesion volume for ``kind``, clipped to the settings' range."""
    lo, hi = settings.volume_range_mm3
    median = settings.volume_median_mm3 * KIND_VOLUME_FACTOR[kind]
    return float(np.clip(median * np.exp(settings.volume_sigma * rng.standard_normal()), lo, hi))


def _outward(vent: np.ndarray, kji: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """Return the gradient of distance-to-ventricle at a voxel (points away from the ventricles)."""
    g = np.zeros(3)
    for axis in range(3):
        lo = list(kji)
        hi = list(kji)
        lo[axis] = max(lo[axis] - 1, 0)
        hi[axis] = min(hi[axis] + 1, vent.shape[axis] - 1)
        g[axis] = (vent[tuple(hi)] - vent[tuple(lo)]) / max((hi[axis] - lo[axis]) * spacing[axis], 1e-6)
    return g


def _design(rng: np.random.Generator, kind: str, volume: float, tissue: TissueMaps, kji, settings) -> LesionShape:
    shape = "ovoid" if volume < SMALL_LESION_MM3 or rng.random() >= settings.irregular_fraction else "irregular"
    if kind == "periventricular":
        # Dawson's fingers: ovoids whose long axis points away from the ventricles
        axis = _outward(tissue.ventricle_mm, kji, tissue.spacing_kji)
        return design_shape(rng, volume, shape, long_axis=axis, elongation=rng.uniform(1.4, 2.4))
    if kind == "juxtacortical":
        return design_shape(rng, volume, shape, elongation=rng.uniform(1.0, 1.6))
    return design_shape(rng, volume, shape)


def _clear_of(shape: LesionShape, center_kji: np.ndarray, placed: list[PlacedLesion], spacing: np.ndarray) -> bool:
    for other in placed:
        d = np.linalg.norm((center_kji - np.asarray(other.shape.center_kji)) * spacing)
        if d < 0.85 * (shape.extent_mm + other.shape.extent_mm) + 1.0:
            return False
    return True


def _in_white_matter(tissue: TissueMaps, center_kji: np.ndarray) -> bool:
    idx = tuple(int(round(c)) for c in center_kji)
    if not all(0 <= v < n for v, n in zip(idx, tissue.shape)):
        return False
    return bool(tissue.wm[idx] >= 0.5 and tissue.csf[idx] < 0.3)


def place_lesions(
    tissue: TissueMaps, n: int, rng: np.random.Generator, settings: PlacementSettings = PlacementSettings()
) -> list[PlacedLesion]:
    """Return up to ``n`` lesions placed on ``tissue`` (fewer only if the field of view has no room left).

    About ``touching_fraction`` of them are set against an earlier lesion so the two touch.
    """
    sites = candidate_sites(tissue)
    weights = np.array([w if sites[k].size else 0.0 for k, w in zip(KINDS, settings.kind_weights)], dtype=float)
    placed: list[PlacedLesion] = []
    if n <= 0 or weights.sum() <= 0:
        return placed
    weights /= weights.sum()
    for lesion_id in range(1, n + 1):
        kind = KINDS[int(rng.choice(len(KINDS), p=weights))]
        volume = sample_volume_mm3(rng, kind, settings)
        contrast = sample_lesion_contrast(rng, settings.flair_contrast, settings.t1_contrast, settings.contrast_jitter)
        lesion = None
        if placed and rng.random() < settings.touching_fraction:
            lesion = _touching(rng, kind, volume, contrast, tissue, placed, settings, lesion_id)
        if lesion is None:
            lesion = _free(rng, kind, volume, contrast, tissue, sites[kind], placed, settings, lesion_id)
        if lesion is not None:
            placed.append(lesion)
    return placed


def _touching(rng, kind, volume, contrast, tissue, placed, settings, lesion_id) -> Optional[PlacedLesion]:
    spacing = np.asarray(tissue.spacing_kji, dtype=float)
    for _ in range(10):
        parent = placed[int(rng.integers(len(placed)))]
        kji = np.round(parent.shape.center_kji).astype(int)
        shape = _design(rng, kind, volume, tissue, tuple(kji), settings)
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        reach = 0.8 * (parent.shape.mean_radius_mm + shape.mean_radius_mm)
        center = np.asarray(parent.shape.center_kji) + direction * reach / spacing
        if _in_white_matter(tissue, center):
            return PlacedLesion(lesion_id, kind, shape.at(center), contrast, volume, touches=parent.id)
    return None


def _free(rng, kind, volume, contrast, tissue, sites, placed, settings, lesion_id) -> Optional[PlacedLesion]:
    spacing = np.asarray(tissue.spacing_kji, dtype=float)
    if sites.size == 0:
        return None
    for _ in range(MAX_TRIES):
        kji = np.unravel_index(int(sites[int(rng.integers(sites.size))]), tissue.shape)
        center = np.asarray(kji, dtype=float) + rng.uniform(-0.5, 0.5, 3)
        shape = _design(rng, kind, volume, tissue, kji, settings)
        if _clear_of(shape, center, placed, spacing):
            return PlacedLesion(lesion_id, kind, shape.at(center), contrast, volume)
    return None
