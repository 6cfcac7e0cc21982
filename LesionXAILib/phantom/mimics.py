"""Lesion mimics: FLAIR-hyperintense structures that are not MS lesions, placed by anatomical rules.

Each mimic is as bright on FLAIR as a lesion, so FLAIR intensity alone cannot reject it; what
tells it apart is its place and shape (and, for some, MPRAGE):

- ``cap``: periventricular caps at the tips of the lateral ventricles' horns, a crescent hugging
  the ventricle wall (ventricle distance <= a few mm); MPRAGE isointense to white matter.
- ``cortical``: a patch of cerebral cortical grey-matter hyperintensity following the ribbon (GM-weighted);
  MPRAGE keeps the grey-matter intensity.
- ``septum``: a bright septum pellucidum, a thin midline sheet between the lateral ventricles;
  MPRAGE isointense to white matter.
- ``choroid``: choroid plexus, a blob inside the ventricular CSF (lesions never lie in CSF);
  MPRAGE intermediate (grey-matter-like).
- ``flow``: flow ghosts, a row of equally spaced bright spots along the phase-encoding axis (i),
  fading with each repeat; FLAIR only (MPRAGE untouched).
- ``lookalike``: a blob drawn as a lesion is (the same shape, size, contrast and edge distributions,
  in both sequences; one difference: lesions under 15 mm³ are always ovoid, lookalikes of any size are
  irregular as often as larger lesions) but centred in deep grey matter (caudate, thalamus, insular and
  cingulate cortex), where the annotation convention labels no lesions. Its contrast is relative to the
  tissue it replaces (a lesion's is relative to white matter), so it stands out of the grey matter
  exactly as a lesion stands out of white matter: neither its shape nor its edge contrast tells it from
  a lesion. What does is the tissue around it (grey, not white matter) and, carried over from that tissue,
  its own level (brighter on FLAIR, darker on MPRAGE than a lesion of the same contrast).

Mimics are kept at least ``KEEP_OUT_MM`` away from every lesion and are not part of the ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from LesionXAILib.phantom.contrasts import lesion_contrast_map, sample_lesion_contrast
from LesionXAILib.phantom.lesion_placement import PlacementSettings, TissueMaps, sample_volume_mm3
from LesionXAILib.phantom.lesion_shapes import design_shape, lesion_fraction

MIMIC_KINDS = ("cap", "cortical", "septum", "choroid", "flow", "lookalike")
# label written in mimics.nii.gz: 1 + index in MIMIC_KINDS
KEEP_OUT_MM = 2.0
# FLAIR level of a mimic relative to white matter: the lesions' own range, so intensity cannot reject it
FLAIR_LEVEL = (1.35, 1.9)
# lateral-ventricle tips are found among ventricle voxels at least this deep below the brain surface
DEEP_MM = 15.0
# lookalikes: centres this deep below the brain surface in grey matter (deep nuclei, insula, cingulate)
LOOKALIKE_DEPTH_MM = 25.0
# of a lookalike's core, at least this share lies in grey matter (else it is drawn again)
LOOKALIKE_GM_SHARE = 0.6
LOOKALIKE_MAX_MM3 = 400.0
LOOKALIKE_TRIES = 30


@dataclass(frozen=True)
class Mimic:
    """One painted mimic: its kind, fraction box on the synthesis grid and intensities relative to WM."""

    id: int
    kind: str
    center_kji: tuple[float, float, float]
    slices: tuple[slice, slice, slice]
    fraction: np.ndarray
    flair: float
    t1: Optional[float]  # None: MPRAGE untouched
    # lookalikes fade towards their edge exactly as lesions do (rho: 0 at the core, 1 at the edge)
    rho: Optional[np.ndarray] = None
    heterogeneity: float = 0.0

    @property
    def tissue_relative(self) -> bool:
        """Return True if the levels scale the tissue the mimic replaces (lookalikes), False if relative to WM."""
        return self.kind == "lookalike"

    def to_row(self) -> dict:
        """Return the JSON-ready description (centre on the synthesis grid; the generator maps it)."""
        row = {
            "id": self.id,
            "kind": self.kind,
            "flair_level": round(self.flair, 4),
            "t1_level": None if self.t1 is None else round(self.t1, 4),
        }
        if self.rho is not None:
            row["heterogeneity"] = round(self.heterogeneity, 4)
        if self.tissue_relative:
            row["levels_relative_to"] = "surrounding tissue"
        return row

    def level(self, value: float) -> "float | np.ndarray":
        """Return the intensity relative to WM that the mimic mixes in: uniform, or a lesion's core-to-edge map."""
        return value if self.rho is None else lesion_contrast_map(value, self.rho, self.heterogeneity)


def _box(center: np.ndarray, radius_mm: float, shape, spacing) -> tuple[tuple[slice, ...], np.ndarray]:
    """Return the k,j,i box around ``center`` reaching ``radius_mm`` and each voxel's distance (mm) to the centre."""
    spacing = np.asarray(spacing, dtype=float)
    half = np.ceil(radius_mm / spacing).astype(int) + 1
    lo = np.maximum(np.floor(center).astype(int) - half, 0)
    hi = np.minimum(np.floor(center).astype(int) + half + 2, np.asarray(shape))
    axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, center, spacing)]
    grids = np.meshgrid(*axes, indexing="ij")
    dist = np.sqrt(sum(g * g for g in grids))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)), dist


def _ramp(x: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Return a partial-volume edge: 1 well inside (x >> 0), 0.5 at x = 0, 0 outside."""
    return np.clip(0.5 + x / width, 0.0, 1.0)


def _ventricle_tips(tissue: TissueMaps, rng: np.random.Generator) -> list[np.ndarray]:
    """Return the anterior and posterior tips (k,j,i) of each lateral ventricle (either side of the midline)."""
    vent = (tissue.ventricle_mm < 0.5) & (tissue.depth_mm >= DEEP_MM)
    idx = np.argwhere(vent)
    if len(idx) < 50:
        return []
    mid_i = np.argwhere(tissue.mask >= 0.5)[:, 2].mean()
    tips = []
    for side in (idx[:, 2] < mid_i, idx[:, 2] >= mid_i):
        pts = idx[side]
        if len(pts) < 20:
            continue
        # the extreme few percent along j (anterior-posterior) are the horns' ends
        for q in (1.0, 99.0):
            cut = np.percentile(pts[:, 1], q)
            end = pts[pts[:, 1] <= cut] if q < 50 else pts[pts[:, 1] >= cut]
            tips.append(end.mean(axis=0))
    return tips


def _caps(tissue: TissueMaps, rng: np.random.Generator) -> list[tuple[str, np.ndarray, tuple, np.ndarray, float, Optional[float]]]:
    tips = _ventricle_tips(tissue, rng)
    if not tips:
        return []
    chosen = rng.choice(len(tips), size=int(rng.integers(2, len(tips) + 1)), replace=False)
    out = []
    for t in sorted(int(c) for c in chosen):
        radius = rng.uniform(4.0, 8.0)
        thick = rng.uniform(1.5, 3.5)
        sl, dist = _box(tips[t], radius + 2.0, tissue.shape, tissue.spacing_kji)
        vent = tissue.ventricle_mm[sl]
        # a crescent on the ventricle wall: within `thick` mm of the ventricle, outside its CSF
        f = _ramp(thick - vent) * _ramp(radius - dist, 2.0) * (vent > 0.0) * (1.0 - tissue.csf[sl])
        out.append(("cap", tips[t], sl, f, rng.uniform(*FLAIR_LEVEL), 1.0))
    return out


def _cortical(tissue: TissueMaps, rng: np.random.Generator) -> list:
    cortex = (tissue.gm >= 0.6) & (tissue.depth_mm >= 3.0) & (tissue.depth_mm <= 12.0)
    vent_k = np.argwhere((tissue.ventricle_mm < 0.5) & (tissue.depth_mm >= DEEP_MM))[:, 0]
    if vent_k.size:
        # cerebral cortex only: k grows superiorly, the cerebellum lies below the lateral ventricles
        cortex[: int(np.percentile(vent_k, 10))] = False
    sites = np.flatnonzero(cortex)
    out = []
    if sites.size == 0:
        return out
    for _ in range(int(rng.integers(2, 6))):
        center = np.asarray(np.unravel_index(int(sites[int(rng.integers(sites.size))]), tissue.shape), dtype=float)
        radius = rng.uniform(3.0, 7.0)
        sl, dist = _box(center, radius + 1.0, tissue.shape, tissue.spacing_kji)
        # the ribbon only: weighted by the grey-matter fraction, so it follows the cortex's folds
        f = _ramp(radius - dist) * np.clip(tissue.gm[sl] * 1.25, 0.0, 1.0)
        out.append(("cortical", center, sl, f, rng.uniform(*FLAIR_LEVEL), None))
    return out


def _septum(tissue: TissueMaps, rng: np.random.Generator) -> list:
    if rng.random() < 0.4:
        return []
    vent = (tissue.ventricle_mm < 0.5) & (tissue.depth_mm >= DEEP_MM)
    if vent.sum() < 50:
        return []
    mid_i = np.argwhere(tissue.mask >= 0.5)[:, 2].mean()
    i = np.arange(tissue.shape[2]) * tissue.spacing_kji[2]
    plane = _ramp(0.9 - np.abs(i - mid_i * tissue.spacing_kji[2]), 0.6)[None, None, :]
    f = plane * _ramp(2.5 - tissue.ventricle_mm) * (tissue.depth_mm >= DEEP_MM + 5.0)
    if not (f >= 0.5).any():
        return []
    center = np.argwhere(f >= 0.5).mean(axis=0)
    sl = tuple(slice(0, n) for n in tissue.shape)
    return [("septum", center, sl, f.astype(np.float32), rng.uniform(*FLAIR_LEVEL), 1.0)]


def _choroid(tissue: TissueMaps, rng: np.random.Generator) -> list:
    sites = np.flatnonzero((tissue.ventricle_mm < 0.5) & (tissue.csf >= 0.8) & (tissue.depth_mm >= DEEP_MM + 5.0))
    out = []
    if sites.size == 0:
        return out
    for _ in range(int(rng.integers(1, 3))):
        center = np.asarray(np.unravel_index(int(sites[int(rng.integers(sites.size))]), tissue.shape), dtype=float)
        radius = rng.uniform(2.0, 4.0)
        sl, dist = _box(center, radius + 1.0, tissue.shape, tissue.spacing_kji)
        f = _ramp(radius - dist) * tissue.csf[sl]
        out.append(("choroid", center, sl, f, rng.uniform(*FLAIR_LEVEL), rng.uniform(0.65, 0.8)))
    return out


def _flow(tissue: TissueMaps, rng: np.random.Generator) -> list:
    sites = np.flatnonzero((tissue.wm >= 0.85) & (tissue.ventricle_mm > 7.0) & (tissue.cortex_mm >= 5.0))
    out = []
    if sites.size == 0:
        return out
    for _ in range(int(rng.integers(1, 3))):
        start = np.asarray(np.unravel_index(int(sites[int(rng.integers(sites.size))]), tissue.shape), dtype=float)
        step_mm = rng.uniform(10.0, 16.0) * (1 if rng.random() < 0.5 else -1)
        radius = rng.uniform(1.5, 2.5)
        level = rng.uniform(*FLAIR_LEVEL)
        for n in range(int(rng.integers(3, 5))):
            center = start + np.array([0.0, 0.0, n * step_mm / tissue.spacing_kji[2]])
            if not 0 <= center[2] < tissue.shape[2]:
                break
            sl, dist = _box(center, radius + 1.0, tissue.shape, tissue.spacing_kji)
            f = _ramp(radius - dist) * (tissue.mask[sl] >= 0.5) * (1.0 - tissue.csf[sl])
            # each ghost repeat is fainter than the one before
            out.append(("flow", center, sl, f, 1.0 + (level - 1.0) * 0.8**n, None))
    return out


def lookalike_sites(tissue: TissueMaps) -> np.ndarray:
    """Return the flat voxel indices where a lookalike may be centred: deep grey matter of the cerebrum."""
    sites = (tissue.gm >= 0.7) & (tissue.csf < 0.2) & (tissue.depth_mm >= LOOKALIKE_DEPTH_MM) & (tissue.ventricle_mm > 1.5)
    vent_k = np.argwhere((tissue.ventricle_mm < 0.5) & (tissue.depth_mm >= DEEP_MM))[:, 0]
    if vent_k.size:
        # cerebrum only (k grows superiorly): the cerebellum's folia lie below the lateral ventricles
        sites[: int(np.percentile(vent_k, 10))] = False
    return np.flatnonzero(sites)


def _lookalikes(tissue: TissueMaps, rng: np.random.Generator, settings: PlacementSettings) -> list:
    sites = lookalike_sites(tissue)
    out = []
    if sites.size == 0:
        return out
    for _ in range(int(rng.integers(3, 8))):
        # drawn as a deep white-matter lesion is: volume, shape and contrast from the lesions' own samplers (without
        # the lesions' always-ovoid rule under 15 mm³: the shipped phantoms and models were made this way)
        volume = min(sample_volume_mm3(rng, "deep", settings), LOOKALIKE_MAX_MM3)
        contrast = sample_lesion_contrast(rng, settings.flair_contrast, settings.t1_contrast, settings.contrast_jitter)
        kind = "ovoid" if rng.random() >= settings.irregular_fraction else "irregular"
        shape = design_shape(rng, volume, kind)
        for _ in range(LOOKALIKE_TRIES):
            center = np.asarray(np.unravel_index(int(sites[int(rng.integers(sites.size))]), tissue.shape), dtype=float)
            found = lesion_fraction(shape.at(center + rng.uniform(-0.5, 0.5, 3)), tissue.shape, tissue.spacing_kji)
            if found is None:
                continue
            sl, f, rho = found
            f = f * (1.0 - tissue.csf[sl])
            core = f >= 0.5
            if core.sum() >= 2 and (tissue.gm[sl][core] >= 0.5).mean() >= LOOKALIKE_GM_SHARE:
                out.append(("lookalike", center, sl, f, contrast.flair, contrast.t1, rho, contrast.heterogeneity))
                break
    return out


def place_mimics(
    tissue: TissueMaps,
    lesion_fraction: np.ndarray,
    rng: np.random.Generator,
    lookalikes: bool = True,
    lesions: PlacementSettings = PlacementSettings(),
) -> list[Mimic]:
    """Return the mimics of one phantom (deterministic in ``rng``), each kept ``KEEP_OUT_MM`` clear of every lesion.

    ``lesions`` are the phantom's lesion settings: lookalikes are drawn from the same distributions.
    """
    from scipy import ndimage

    near = lesion_fraction > 0.0
    if near.any():
        near = ndimage.distance_transform_edt(~near, sampling=tissue.spacing_kji) <= KEEP_OUT_MM
    drafts = _caps(tissue, rng) + _cortical(tissue, rng) + _septum(tissue, rng) + _choroid(tissue, rng) + _flow(tissue, rng)
    # lookalikes draw last, so the other kinds are those of phantoms made before lookalikes existed
    drafts = [d + (None, 0.0) for d in drafts] + (_lookalikes(tissue, rng, lesions) if lookalikes else [])
    mimics = []
    for kind, center, sl, f, flair, t1, rho, heterogeneity in drafts:
        f = (np.asarray(f, dtype=np.float32) * (tissue.mask[sl] >= 0.5) * ~near[sl]).astype(np.float32)
        core = f >= 0.5
        if core.sum() < 2:
            continue
        # no faint leftovers away from the labelled core: every brightened voxel belongs to a mimic
        f *= ndimage.binary_dilation(core)
        center_t = tuple(float(c) for c in center)
        t1 = None if t1 is None else float(t1)
        mimics.append(Mimic(len(mimics) + 1, kind, center_t, sl, f, float(flair), t1, rho, float(heterogeneity)))
    return mimics


def paint_mimics(flair: np.ndarray, t1: np.ndarray, mimics: list[Mimic]) -> np.ndarray:
    """Mix mimics into the relative FLAIR/MPRAGE in place; return (len(MIMIC_KINDS), k, j, i) fractions per kind."""
    fractions = np.zeros((len(MIMIC_KINDS),) + flair.shape, dtype=np.float32)
    for m in mimics:
        f = m.fraction
        for image, value in ((flair, m.flair), (t1, m.t1)):
            if value is None:
                continue  # MPRAGE untouched
            base = image[m.slices]
            target = f * m.level(value)
            image[m.slices] = (1.0 - f) * base + (target * base if m.tissue_relative else target)
        view = fractions[(MIMIC_KINDS.index(m.kind),) + m.slices]
        np.maximum(view, f, out=view)
    return fractions


def mimic_labels(fractions: np.ndarray, lesions: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Return the uint8 mimic label map (1 + kind index; 0 none) on the output grid, never on a lesion."""
    labels = np.zeros(lesions.shape, dtype=np.uint8)
    best = np.argmax(fractions, axis=0)
    on = (np.max(fractions, axis=0) >= 0.5) & brain & ~lesions
    labels[on] = (best[on] + 1).astype(np.uint8)
    return labels
