"""generate_phantom: a deterministic FLAIR + MPRAGE MS phantom with its ground-truth lesion mask.

Pipeline (all randomness from the seed): warp the MNI152 tissue maps with a random affine jitter
and smooth deformation -> place lesions in white matter -> mix tissue and lesion intensities per
sequence -> lesion mimics (optional) -> texture and bias field -> optional thick-slice resampling ->
Rician noise -> skull strip. Independent random streams (deformation, lesions, contrast, noise,
mimics) are spawned from the seed, so changing e.g. the lesion count does not change the subject's
anatomy, and switching mimics off gives exactly the phantom made before mimics existed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from LesionXAILib.atomic_write import write_json
from LesionXAILib.errors import ParameterError
from LesionXAILib.geometry import Geometry
from LesionXAILib.image_io import InputPair, write_volume
from LesionXAILib.phantom.anatomy import MAP_NAMES, load_anatomy, sub_geometry
from LesionXAILib.phantom.contrasts import flair_rim, lesion_contrast_map, sample_contrasts, tissue_mix
from LesionXAILib.phantom.lesion_placement import PlacedLesion, PlacementSettings, TissueMaps, place_lesions
from LesionXAILib.phantom.lesion_shapes import lesion_fraction
from LesionXAILib.phantom.mimics import MIMIC_KINDS, mimic_labels, paint_mimics, place_mimics
from LesionXAILib.phantom.variability import (
    add_rician_noise,
    bias_field,
    deformation_coords,
    resample_stack,
    sample_volume,
    smooth_noise,
)
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter

GENERATOR_VERSION = 1
DEFAULT_LESION_COUNT = (10, 25)
MAX_LESIONS = 60
# room around the template box for the affine jitter to grow the brain into
WARP_MARGIN_VOXELS = 10
# intensities inside the brain stay strictly positive: z-scoring treats exact zeros as background
MIN_BRAIN_INTENSITY = 1e-3


@dataclass(frozen=True)
class PhantomSettings:
    """What a phantom looks like; every field has a realistic default.

    ``spacing`` is (i, j, k) mm; ``fov_mm`` (i, j, k) mm is a box centred on the brain (None: the
    whole brain cropped to its bounding box plus ``margin_voxels``). ``n_lesions=None`` draws a
    realistic count in 10..25. ``mimics`` adds FLAIR-hyperintense non-lesion structures (see
    phantom.mimics); False reproduces the phantom made before mimics existed, array for array.
    ``lookalikes`` (with mimics) adds the lesion-identical blobs in deep grey matter; False reproduces
    the mimic phantom made before they existed, array for array.
    """

    n_lesions: Optional[int] = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    fov_mm: Optional[tuple[float, float, float]] = None
    margin_voxels: int = 4
    random_pad_voxels: int = 0
    deformation_mm: float = 2.5
    max_rotation_deg: float = 4.0
    max_scale: float = 0.06
    bias_strength: tuple[float, float] = (0.04, 0.12)
    noise_fraction: tuple[float, float] = (0.015, 0.04)
    contrast_jitter: float = 1.0
    lesions: PlacementSettings = field(default_factory=PlacementSettings)
    mimics: bool = True
    lookalikes: bool = True

    def __post_init__(self) -> None:
        if self.n_lesions is not None and not 0 <= int(self.n_lesions) <= MAX_LESIONS:
            raise ParameterError(f"phantom: n_lesions must be in 0..{MAX_LESIONS}, got {self.n_lesions}")
        if len(self.spacing) != 3 or not all(0.3 <= float(s) <= 8.0 for s in self.spacing):
            raise ParameterError(f"phantom: spacing must be three values in 0.3..8 mm (i, j, k), got {self.spacing}")
        if self.fov_mm is not None and (len(self.fov_mm) != 3 or not all(16.0 <= float(v) <= 400.0 for v in self.fov_mm)):
            raise ParameterError(f"phantom: fov_mm must be three sizes in 16..400 mm (i, j, k), got {self.fov_mm}")
        if self.margin_voxels < 0 or self.random_pad_voxels < 0:
            raise ParameterError("phantom: margin_voxels and random_pad_voxels must be >= 0")
        if not 0.0 <= self.contrast_jitter <= 2.0:
            raise ParameterError(f"phantom: contrast_jitter must be in 0..2, got {self.contrast_jitter}")
        lo, hi = self.lesions.volume_range_mm3
        if not 0 < lo <= hi:
            raise ParameterError(f"phantom: lesion volume range must satisfy 0 < low <= high, got {(lo, hi)}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Phantom:
    """A synthetic subject: FLAIR, MPRAGE, ground-truth lesions and tissue probabilities (k,j,i) on ``geometry``."""

    flair: np.ndarray
    t1: np.ndarray
    lesions: np.ndarray
    wm: np.ndarray
    gm: np.ndarray
    csf: np.ndarray
    geometry: Geometry
    lesion_params: list[dict]
    seed: int
    settings: PhantomSettings
    contrast: dict = field(default_factory=dict)
    seconds: float = 0.0
    mimics: Optional[np.ndarray] = None  # uint8 (k,j,i): 1 + index in MIMIC_KINDS, 0 elsewhere; None when off
    mimic_params: list = field(default_factory=list)

    @property
    def brain_mask(self) -> np.ndarray:
        """Return the skull-stripped brain (voxels with a non-zero FLAIR)."""
        return self.flair > 0

    def pair(self) -> InputPair:
        """Return the FLAIR/MPRAGE pair as the segmentation pipeline takes it."""
        return InputPair(self.flair, self.t1, self.geometry, notes=[f"phantom seed {self.seed}"])

    def summary(self) -> dict[str, Any]:
        """Return the JSON description written to lesions.json."""
        from LesionXAILib.instances import label_components

        _, n_components = label_components(self.lesions, 26)
        return {
            "generator": "LesionXAILib.phantom",
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "settings": self.settings.to_dict(),
            "geometry": self.geometry.to_dict(),
            "contrast": self.contrast,
            "lesion_voxels": int(self.lesions.sum()),
            "lesion_volume_mm3": float(self.lesions.sum() * self.geometry.voxel_volume),
            "lesion_components": n_components,
            "lesions": self.lesion_params,
            **self._mimic_summary(),
            "seconds": round(self.seconds, 3),
        }

    def _mimic_summary(self) -> dict[str, Any]:
        if self.mimics is None:
            return {}
        counts = np.bincount(self.mimics.ravel(), minlength=len(MIMIC_KINDS) + 1)
        return {
            "mimic_labels": {str(n + 1): kind for n, kind in enumerate(MIMIC_KINDS)},
            "mimic_voxels": {kind: int(counts[n + 1]) for n, kind in enumerate(MIMIC_KINDS)},
            "mimics": self.mimic_params,
        }

    def write(self, out_dir: str | os.PathLike, tissue: bool = False) -> dict[str, Path]:
        """Write flair.nii.gz, t1.nii.gz, lesions.nii.gz, lesions.json (+ mimics.nii.gz when on, wm/gm/csf.nii.gz with ``tissue``); return the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {
            "flair": write_volume(self.flair, self.geometry, out / "flair.nii.gz"),
            "t1": write_volume(self.t1, self.geometry, out / "t1.nii.gz"),
            "lesions": write_volume(self.lesions.astype(np.uint8), self.geometry, out / "lesions.nii.gz"),
        }
        if self.mimics is not None:
            paths["mimics"] = write_volume(self.mimics, self.geometry, out / "mimics.nii.gz")
        if tissue:
            for name in ("wm", "gm", "csf"):
                paths[name] = write_volume(getattr(self, name), self.geometry, out / f"{name}.nii.gz")
        json_path = out / "lesions.json"
        write_json(json_path, self.summary(), allow_nan=True)
        paths["json"] = json_path
        return paths


def _work_box(settings: PhantomSettings, anatomy, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Return (start k,j,i in template voxels, shape) of the 1 mm grid the phantom is synthesised on."""
    shape_t = np.asarray(anatomy.maps.shape[1:])
    if settings.fov_mm is None:
        start = -np.full(3, WARP_MARGIN_VOXELS)
        return start, tuple(int(v) for v in shape_t + 2 * WARP_MARGIN_VOXELS)
    size = np.ceil(np.asarray(settings.fov_mm[::-1], dtype=float) / np.asarray(anatomy.geometry.spacing_kji)).astype(int)
    center = anatomy.brain_center_kji + rng.uniform(-3.0, 3.0, 3)
    start = np.round(center - size / 2.0).astype(int)
    return start, tuple(int(v) for v in size)


def _crop_to_brain(tissue: np.ndarray, start: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the maps cropped to the brain's bounding box plus ``margin`` voxels, and the new start."""
    mask = tissue[MAP_NAMES.index("mask")] >= 0.5
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    lo = np.array([max(int(i[0]) - margin, 0) for i in idx])
    hi = np.array([min(int(i[-1]) + 1 + margin, n) for i, n in zip(idx, mask.shape)])
    box = (slice(None),) + tuple(slice(a, b) for a, b in zip(lo, hi))
    return np.ascontiguousarray(tissue[box]), start + lo


def _tissue_maps(warped: np.ndarray) -> TissueMaps:
    """Return TissueMaps from warped template channels, GM+WM+CSF summing to 1 inside the mask."""
    m = {name: warped[i] for i, name in enumerate(MAP_NAMES)}
    mask = np.clip(m["mask"], 0.0, 1.0)
    inside = mask >= 0.5
    gm = np.clip(m["gm"], 0.0, 1.0)
    wm = np.clip(m["wm"], 0.0, 1.0)
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total * inside, wm / total * inside
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * inside
    return TissueMaps(
        gm=gm.astype(np.float32),
        wm=wm.astype(np.float32),
        csf=csf.astype(np.float32),
        mask=mask.astype(np.float32),
        depth_mm=m["depth_mm"],
        ventricle_mm=m["ventricle_mm"],
        cortex_mm=m["cortex_mm"],
        spacing_kji=(1.0, 1.0, 1.0),
    )


def _paint_lesions(
    flair: np.ndarray, t1: np.ndarray, tissue: TissueMaps, placed: list[PlacedLesion]
) -> tuple[np.ndarray, list[int]]:
    """Mix each lesion into the (relative) FLAIR/MPRAGE in place; return the union lesion fraction and voxel counts."""
    union = np.zeros(tissue.shape, dtype=np.float32)
    voxels = []
    keep_out = tissue.mask >= 0.5
    for lesion in placed:
        found = lesion_fraction(lesion.shape, tissue.shape, tissue.spacing_kji)
        if found is None:
            voxels.append(0)
            continue
        sl, f, rho = found
        # lesions displace tissue but never CSF (they abut the ventricles rather than fill them)
        f = f * (1.0 - tissue.csf[sl]) * keep_out[sl]
        c = lesion.contrast
        flair[sl] = (1.0 - f) * flair[sl] + f * lesion_contrast_map(c.flair, rho, c.heterogeneity)
        t1[sl] = (1.0 - f) * t1[sl] + f * lesion_contrast_map(c.t1, rho, c.heterogeneity)
        union[sl] = np.maximum(union[sl], f)
        voxels.append(int((f >= 0.5).sum()))
    return union, voxels


def generate_phantom(
    seed: int,
    settings: PhantomSettings = PhantomSettings(),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> Phantom:
    """Return the phantom determined by ``seed`` and ``settings`` (same inputs -> identical arrays)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ParameterError(f"phantom: seed must be a non-negative integer, got {seed!r}")
    reporter = as_reporter(progress, cancel)
    start_time = time.perf_counter()
    # a sixth stream for mimics: spawn(6)'s first five children equal spawn(5)'s, so phantoms without mimics are unchanged
    streams = np.random.SeedSequence(int(seed)).spawn(6)
    rng_box, rng_warp, rng_lesions, rng_contrast, rng_noise, rng_mimics = (np.random.default_rng(s) for s in streams)
    reporter(0.0, "loading template")
    anatomy = load_anatomy()

    reporter(0.1, "deforming anatomy")
    start, shape = _work_box(settings, anatomy, rng_box)
    coords = deformation_coords(
        shape,
        start,
        anatomy.brain_center_kji,
        rng_warp,
        settings.max_rotation_deg,
        settings.max_scale,
        settings.deformation_mm,
    )
    warped = sample_volume(anatomy.maps, coords)
    del coords
    if settings.fov_mm is None:
        warped, start = _crop_to_brain(warped, start, settings.margin_voxels)
    tissue = _tissue_maps(warped)
    del warped
    grid = sub_geometry(anatomy.geometry, tuple(int(v) for v in start), tissue.shape)

    reporter(0.35, "placing lesions")
    n = settings.n_lesions
    if n is None:
        n = int(rng_lesions.integers(DEFAULT_LESION_COUNT[0], DEFAULT_LESION_COUNT[1] + 1))
    placed = place_lesions(tissue, int(n), rng_lesions, settings.lesions)

    reporter(0.45, "synthesising contrasts")
    contrast = sample_contrasts(rng_contrast, settings.contrast_jitter)
    flair = tissue_mix(tissue.gm, tissue.wm, tissue.csf, contrast.flair)
    flair *= flair_rim(tissue.ventricle_mm, tissue.csf, contrast.flair_rim)
    t1 = tissue_mix(tissue.gm, tissue.wm, tissue.csf, contrast.t1)
    union, voxels = _paint_lesions(flair, t1, tissue, placed)
    mimics = place_mimics(tissue, union, rng_mimics, settings.lookalikes, settings.lesions) if settings.mimics else []
    mimic_fractions = paint_mimics(flair, t1, mimics) if settings.mimics else None
    texture_control = [max(2, int(np.ceil(s / 6.0))) for s in tissue.shape]
    flair *= 1.0 + contrast.texture * smooth_noise(tissue.shape, texture_control, rng_contrast)
    t1 *= 1.0 + contrast.texture * smooth_noise(tissue.shape, texture_control, rng_contrast)
    strength = rng_contrast.uniform(*settings.bias_strength, 2)
    flair *= contrast.flair.wm_level * bias_field(tissue.shape, rng_contrast, float(strength[0]))
    t1 *= contrast.t1.wm_level * bias_field(tissue.shape, rng_contrast, float(strength[1]))

    reporter(0.7, "resampling")
    target_kji = tuple(float(s) for s in settings.spacing[::-1])
    channels = [flair, t1, union, tissue.wm, tissue.gm, tissue.csf, tissue.mask]
    if mimic_fractions is not None:
        channels.extend(mimic_fractions)
    stack = np.stack(channels)
    del flair, t1, union, channels, mimic_fractions
    if not np.allclose(target_kji, tissue.spacing_kji):
        stack = resample_stack(stack, tissue.spacing_kji, target_kji)
        shift = (np.asarray(settings.spacing, dtype=float) - np.asarray(grid.spacing)) / 2.0
        grid = Geometry(
            size=tuple(int(s) for s in stack.shape[1:][::-1]),
            origin=tuple(float(v) for v in np.asarray(grid.origin) + grid.direction_matrix @ shift),
            spacing=tuple(float(s) for s in settings.spacing),
            direction=grid.direction,
        )
    flair, t1, union, wm, gm, csf, mask = stack[:7]
    mimic_fractions = stack[7:] if settings.mimics else None
    brain = mask >= 0.5

    reporter(0.85, "adding noise")
    level = rng_noise.uniform(*settings.noise_fraction)
    flair = add_rician_noise(flair, level * contrast.flair.wm_level, rng_noise)
    t1 = add_rician_noise(t1, level * contrast.t1.wm_level, rng_noise)
    flair = np.where(brain, np.maximum(flair, MIN_BRAIN_INTENSITY), 0.0).astype(np.float32)
    t1 = np.where(brain, np.maximum(t1, MIN_BRAIN_INTENSITY), 0.0).astype(np.float32)
    lesions = (union >= 0.5) & brain
    wm, gm, csf = (np.where(brain, a, 0.0).astype(np.float32) for a in (wm, gm, csf))
    mimic_map = mimic_labels(mimic_fractions, lesions, brain) if mimic_fractions is not None else None
    del stack, mimic_fractions

    if settings.random_pad_voxels > 0:
        pads = rng_box.integers(0, settings.random_pad_voxels + 1, (3, 2))
        flair, t1, wm, gm, csf = (np.pad(a, pads) for a in (flair, t1, wm, gm, csf))
        lesions = np.pad(lesions, pads)
        if mimic_map is not None:
            mimic_map = np.pad(mimic_map, pads)
        grid = sub_geometry(grid, tuple(int(-p) for p in pads[:, 0]), flair.shape)

    params = _lesion_table(placed, voxels, tissue, grid, anatomy, start)
    mimic_rows = _mimic_table(mimics, tissue, grid, anatomy, start)
    reporter(1.0, f"{len(placed)} lesions" + (f", {len(mimics)} mimics" if settings.mimics else ""))
    return Phantom(
        flair=flair,
        t1=t1,
        lesions=lesions,
        wm=wm,
        gm=gm,
        csf=csf,
        geometry=grid,
        lesion_params=params,
        seed=int(seed),
        settings=settings,
        contrast=contrast.to_dict() | {"noise_fraction": float(level), "bias_strength": [float(s) for s in strength]},
        seconds=time.perf_counter() - start_time,
        mimics=mimic_map,
        mimic_params=mimic_rows,
    )


def _to_output_ijk(center_kji, tissue: TissueMaps, grid: Geometry, anatomy, start) -> np.ndarray:
    """Return a synthesis-grid k,j,i point as continuous i,j,k indices of the output grid."""
    synth = sub_geometry(anatomy.geometry, tuple(int(v) for v in start), tissue.shape)
    to_lps = synth.ijk_to_lps()
    from_lps = np.linalg.inv(grid.ijk_to_lps())
    lps = to_lps[:3, :3] @ np.asarray(center_kji[::-1], dtype=float) + to_lps[:3, 3]
    return from_lps[:3, :3] @ lps + from_lps[:3, 3]


def _mimic_table(mimics, tissue: TissueMaps, grid: Geometry, anatomy, start) -> list[dict]:
    """Return one JSON-ready row per mimic (centre on the output grid)."""
    rows = []
    for m in mimics:
        ijk = _to_output_ijk(m.center_kji, tissue, grid, anatomy, start)
        rows.append(m.to_row() | {"center_ijk": [round(float(v), 3) for v in ijk]})
    return rows


def _lesion_table(placed, voxels, tissue: TissueMaps, grid: Geometry, anatomy, start) -> list[dict]:
    """Return one JSON-ready row per lesion, centres given on the output grid (i,j,k and RAS)."""
    synth = sub_geometry(anatomy.geometry, tuple(int(v) for v in start), tissue.shape)
    to_lps = synth.ijk_to_lps()
    from_lps = np.linalg.inv(grid.ijk_to_lps())
    rows = []
    for lesion, n_vox in zip(placed, voxels):
        ijk = np.asarray(lesion.shape.center_kji[::-1])
        lps = to_lps[:3, :3] @ ijk + to_lps[:3, 3]
        out_ijk = from_lps[:3, :3] @ lps + from_lps[:3, 3]
        ras = grid.ijk_to_ras_points(out_ijk[None])[0]
        s = lesion.shape
        rows.append(
            {
                "id": lesion.id,
                "kind": lesion.kind,
                "shape": s.shape,
                "center_ijk": [round(float(v), 3) for v in out_ijk],
                "center_ras": [round(float(v), 3) for v in ras],
                "volume_requested_mm3": round(lesion.volume_requested_mm3, 3),
                "volume_mm3": float(n_vox * synth.voxel_volume),
                "semi_axes_mm": [round(float(v), 3) for v in s.radii_mm],
                "lobes": len(s.lobes),
                "roughness": round(s.roughness, 4),
                "flair_contrast": round(lesion.contrast.flair, 4),
                "t1_contrast": round(lesion.contrast.t1, 4),
                "heterogeneity": round(lesion.contrast.heterogeneity, 4),
                "touches": lesion.touches,
            }
        )
    return rows
