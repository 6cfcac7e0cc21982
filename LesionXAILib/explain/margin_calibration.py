"""Measuring the crop margin a model needs: ROI explanations against the whole-volume reference.

How far a lesion's attribution reaches depends on the network's weights, not only on its
architecture (a randomly initialised anchor network keeps >= 98 % of its max-aggregated SmoothGrad
within 6 mm of each voxel, the shipped demo model needs 10 mm), so a margin measured on one model
does not carry over to another. For chosen lesions of a subject this module computes SmoothGrad on
the whole volume and on crops with growing margins, with identical noise draws (positional noise),
so the difference is the crop alone, and picks the smallest margin at which *every* lesion keeps
Pearson r >= ``min_r`` against the reference and ``min_captured`` of its absolute attribution
inside the region the network ran on (the crop; for max aggregation the union of the per-voxel
windows). The result goes into the model's config (``explain_margin_mm`` / ``explain_voxel_margin_mm``)
and from there into every explanation of that model (``ExplainSettings.roi_margin_mm=None``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.settings import AGGREGATIONS, ExplainSettings
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter

CALIBRATION_MARGINS_MM = (4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0)
# The rule that gives the shipped defaults on the demo model (12 mm around the lesion for sum, 10 mm
# around each voxel for max; benchmarks/explain_margin_fidelity.py has the curves): r alone would accept 8 mm for both, where up
# to 9 % (sum) and 6 % (max) of the attribution falls outside the crop and lesion statistics move by up
# to 3 %, so the captured share decides.
MIN_PEARSON_R = 0.995
MIN_CAPTURED = 0.98


@dataclass(frozen=True)
class MarginFidelity:
    """How one lesion's ROI map at one margin compares with its whole-volume map."""

    lesion: int  # 1-based index into the masks given
    voxels: int
    margin_mm: float
    pearson_r: float  # all input channels together, whole grid
    captured: float  # share of the reference's |attribution| inside the region the network ran on
    rel_l2: float
    inside_error: float  # largest per-sequence error of the inside sum, relative to its |reference| sum
    ring_error: float  # same for the perilesional ring
    grid_voxels: int  # voxels the network ran on: the crop, or for max the mean window per lesion voxel
    seconds: float
    reference_seconds: float


@dataclass
class MarginCalibration:
    """The margin -> fidelity curve of one aggregation, and the margin it selects."""

    aggregation: str
    samples: int
    seed: int
    min_r: float
    min_captured: float
    rows: list[MarginFidelity] = field(default_factory=list)

    @property
    def margins(self) -> list[float]:
        """Return the margins measured, ascending."""
        return sorted({r.margin_mm for r in self.rows})

    @property
    def margin_mm(self) -> Optional[float]:
        """Return the smallest margin meeting both bounds on every lesion (and every larger margin), or None."""
        chosen = None
        for m in reversed(self.margins):  # a margin only counts if the larger ones pass too
            if not all(r.pearson_r >= self.min_r and r.captured >= self.min_captured for r in self.rows if r.margin_mm == m):
                break
            chosen = m
        return chosen

    def curve(self) -> list[dict[str, float]]:
        """Return one summary per margin: worst r, captured share and statistic errors over the lesions."""
        out = []
        for m in self.margins:
            sel = [r for r in self.rows if r.margin_mm == m]
            out.append({
                "margin_mm": m,
                "min_r": min(r.pearson_r for r in sel),
                "median_r": float(np.median([r.pearson_r for r in sel])),
                "min_captured": min(r.captured for r in sel),
                "max_rel_l2": max(r.rel_l2 for r in sel),
                "max_inside_error": max(r.inside_error for r in sel),
                "max_ring_error": max(r.ring_error for r in sel),
                "mean_grid_voxels": int(np.mean([r.grid_voxels for r in sel])),
                "seconds_per_lesion": float(np.mean([r.seconds for r in sel])),
            })  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict: settings, chosen margin, curve and per-lesion rows."""
        return {
            "aggregation": self.aggregation,
            "samples": self.samples,
            "seed": self.seed,
            "criterion": {"min_r": self.min_r, "min_captured": self.min_captured},
            "margin_mm": self.margin_mm,
            "curve": self.curve(),
            "rows": [asdict(r) for r in self.rows],
        }


def pick_lesions(masks: Sequence[np.ndarray], count: int, max_voxels: Optional[int] = None) -> list[int]:
    """Return up to ``count`` 0-based indices of ``masks`` spread over the size range (ties: the earlier)."""
    sizes = [int(np.count_nonzero(m)) for m in masks]
    order = sorted((i for i in range(len(masks)) if sizes[i] > 0), key=lambda i: (sizes[i], i))
    if max_voxels is not None:
        order = [i for i in order if sizes[i] <= max_voxels]
    if not order or count < 1:
        return []
    picks = np.linspace(0, len(order) - 1, min(count, len(order)))
    return sorted({order[int(round(q))] for q in picks})


def pearson_r(a: np.ndarray, b: np.ndarray) -> float:
    """Return Pearson's r of two arrays (flattened, float64); 1.0 for two identical constant arrays."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float((x @ y) / den) if den > 0 else float(np.array_equal(np.ravel(a), np.ravel(b)))


def _region_error(roi: np.ndarray, ref: np.ndarray, region: np.ndarray) -> float:
    worst = 0.0
    for c in range(ref.shape[0]):
        scale = np.abs(ref[c][region]).sum()
        if scale > 0:
            worst = max(worst, float(abs((roi[c][region] - ref[c][region]).sum()) / scale))
    return worst


def _network_region(model: LesionModel, image: np.ndarray, mask: np.ndarray, geometry: Geometry, aggregation: str, margin_mm: float) -> tuple[np.ndarray, int]:
    """Return (k,j,i mask of where the network ran, voxels per run) for one lesion at ``margin_mm``."""
    from LesionXAILib.explain.region import explain_box, explain_crop

    box = explain_box(mask, geometry.spacing_kji, margin_mm, model.size_divisor)
    covered = np.zeros(box.shape, bool)
    if aggregation != "max":
        covered[...] = True
        voxels = int(np.prod(box.shape))
    else:  # each lesion voxel's gradient lives on its own window
        crop = explain_crop(model, image, [mask], box, "max", margin_mm, geometry.spacing_kji)
        for w in crop.windows:
            covered[w.slices] = True
        voxels = int(round(np.mean([w.size for w in crop.windows for _ in w.voxels])))
    inside = np.zeros(mask.shape, bool)
    inside[box.slices] = covered[box.inner]
    return inside, voxels


def calibrate_margin(
    model: LesionModel,
    normalized: np.ndarray,
    masks: Sequence[np.ndarray],
    geometry: Geometry,
    aggregation: str = "sum",
    margins_mm: Sequence[float] = CALIBRATION_MARGINS_MM,
    samples: int = 2,
    seed: int = 0,
    noise_level: float = 0.05,
    min_r: float = MIN_PEARSON_R,
    min_captured: float = MIN_CAPTURED,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> MarginCalibration:
    """Return the margin -> fidelity curve of SmoothGrad on ``masks`` (k,j,i lesion masks) and the margin it selects."""
    from LesionXAILib.explain.api import check_image, iter_explanations, sequence_names
    from LesionXAILib.explain.model_state import check_model
    from LesionXAILib.explain.statistics import lesion_regions
    from LesionXAILib.explain.targets import InstanceTarget

    model = check_model(model)
    image = check_image(model, normalized, geometry)
    if aggregation not in AGGREGATIONS:
        raise ParameterError(f"aggregation must be one of {AGGREGATIONS}, got '{aggregation}'")
    margins = sorted({float(m) for m in margins_mm})
    if not margins or margins[0] < 0:
        raise ParameterError(f"calibration margins must be >= 0 mm, got {list(margins_mm)}")
    if not masks:
        raise ParameterError("no lesion to calibrate the margin on")
    keys = [f"smoothgrad_{s}" for s in sequence_names(model)]
    reporter = as_reporter(progress, cancel)
    # the margin itself is measured here: no per-lesion guard widening it
    base = ExplainSettings(methods=("smoothgrad",), aggregation=aggregation, samples=samples, seed=seed, noise_level=noise_level,
                           fidelity_check=False)  # fmt: skip
    result = MarginCalibration(aggregation, int(samples), int(seed), float(min_r), float(min_captured))
    steps = len(masks) * (1 + len(margins))
    for n, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != image.shape[1:] or not mask.any():
            raise ParameterError(f"calibration lesion {n + 1}: mask must be a non-empty {image.shape[1:]} k,j,i mask")
        target = [InstanceTarget(mask, aggregation, n + 1)]

        def run(settings: ExplainSettings, step: int, what: str) -> tuple[np.ndarray, float]:
            sub = reporter.sub(step / steps, (step + 1) / steps)
            sub(0.0, f"lesion {n + 1}/{len(masks)}: {what}")
            t0 = time.perf_counter()
            e = next(iter_explanations(model, image, target, geometry, settings, sub))
            return np.stack([e.maps[k] for k in keys]), time.perf_counter() - t0

        first = n * (1 + len(margins))
        ref, ref_seconds = run(base.replace(full_volume=True, roi_margin_mm=0.0), first, "whole-volume reference")
        total = float(np.abs(ref).sum())
        regions = lesion_regions(mask, geometry.spacing_kji, base.ring_mm)
        for j, m in enumerate(margins):
            roi, seconds = run(base.replace(roi_margin_mm=m), first + 1 + j, f"margin {m:g} mm")
            inside, grid_voxels = _network_region(model, image, mask, geometry, aggregation, m)
            result.rows.append(MarginFidelity(
                lesion=n + 1, voxels=int(mask.sum()), margin_mm=m, pearson_r=pearson_r(ref, roi),
                captured=float(np.abs(ref[:, inside]).sum() / total) if total > 0 else 1.0,
                rel_l2=float(np.linalg.norm(roi - ref) / max(np.linalg.norm(ref), 1e-30)),
                inside_error=_region_error(roi, ref, regions.inside), ring_error=_region_error(roi, ref, regions.ring),
                grid_voxels=grid_voxels, seconds=seconds, reference_seconds=ref_seconds,
            ))  # fmt: skip
    reporter(1.0, "margin calibration done")
    return result


def calibrated_config(config: ModelConfig, calibrations: Sequence[MarginCalibration]) -> ModelConfig:
    """Return ``config`` carrying the margins ``calibrations`` selected (max -> per-voxel margin; sum/mean -> crop margin)."""
    changes: dict[str, float] = {}
    for c in calibrations:
        if c.margin_mm is None:
            raise ParameterError(
                f"no measured margin (largest {max(c.margins):g} mm) meets r >= {c.min_r} and captured >= "
                f"{c.min_captured} for {c.aggregation} aggregation; measure larger margins"
            )
        key = "explain_voxel_margin_mm" if c.aggregation == "max" else "explain_margin_mm"
        if key in changes and changes[key] != c.margin_mm:
            # sum and mean share the crop margin: keep the larger, so both stay within the bounds
            changes[key] = max(changes[key], c.margin_mm)
        else:
            changes[key] = c.margin_mm
    return config.replace(**changes)
