"""run_study: segment held-out phantoms with each model and analyse every TP/FP/FN lesion (context + saliency)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter
from LesionXAILib.vocabulary import finite_or_none

SEQUENCES = ("flair", "mprage")


@dataclass(frozen=True)
class StudySettings:
    """The held-out cohort (phantom seeds < 10000, field of view, lesion count, mimics) and what is computed per lesion.

    ``method``: the explainer whose FLAIR/MPRAGE maps are summarised (SmoothGrad with ``samples``,
    the anchor's choice; 'gradient' is the cheap one). ``max_radius_mm``: largest context radius.
    ``max_lesions``: at most this many lesions per subject and model (None: all), TP/FN/FP in id order.
    """

    seeds: tuple[int, ...] = tuple(range(200, 204))
    fov_mm: Optional[tuple[float, float, float]] = (96.0, 96.0, 96.0)
    n_lesions: Optional[int] = 8
    mimics: bool = True
    lookalikes: bool = True
    method: str = "smoothgrad"
    samples: int = 8
    max_radius_mm: float = 15.0
    ring_mm: tuple[float, float] = (1.0, 3.0)
    max_lesions: Optional[int] = None
    seed: int = 0
    synthetic_positions: int = 4

    def __post_init__(self) -> None:
        from LesionXAILib.training.data import TRAIN_SEED_START

        if not self.seeds:
            raise ParameterError("study: give at least one phantom seed")
        seen = [s for s in self.seeds if not 0 <= int(s) < TRAIN_SEED_START]
        if seen:
            raise ParameterError(f"study: held-out seeds must be in 0..{TRAIN_SEED_START - 1} (training uses the rest), got {seen[:5]}")
        if self.method not in ("smoothgrad", "gradient"):
            raise ParameterError(f"study: method must be 'smoothgrad' or 'gradient', got '{self.method}'")
        if self.synthetic_positions < 0:
            raise ParameterError(f"study: synthetic positions must be >= 0 (0: no synthetic-lesion curve), got {self.synthetic_positions}")
        if self.max_lesions is not None and self.max_lesions < 1:
            raise ParameterError(f"study: max lesions must be >= 1, got {self.max_lesions}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass
class StudyResult:
    """One row per (model, subject, lesion), plus per (model, subject) segmentation scores and mimic counts."""

    settings: StudySettings
    models: dict[str, str]
    lesions: list[dict] = field(default_factory=list)
    subjects: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    synthetic: list[dict] = field(default_factory=list)


def _phantom_settings(settings: StudySettings):
    from LesionXAILib.phantom import PhantomSettings

    return PhantomSettings(n_lesions=settings.n_lesions, fov_mm=settings.fov_mm, mimics=settings.mimics, lookalikes=settings.lookalikes)


def _analysis_settings(settings: StudySettings, model):
    from LesionXAILib.analysis import AnalysisSettings
    from LesionXAILib.explain.settings import ExplainSettings
    from LesionXAILib.probes.context import ContextSettings

    explain = ExplainSettings(
        methods=(settings.method,), samples=settings.samples, seed=settings.seed, ring_mm=tuple(settings.ring_mm),
        # held-out phantoms are small: whole-volume gradients are exact and need no per-model margin calibration
        full_volume=True, fidelity_check=False,
    )
    return AnalysisSettings(explain=explain, context=ContextSettings.up_to(settings.max_radius_mm, seed=settings.seed))


def peak_location(attribution: np.ndarray, lesion: np.ndarray, spacing_kji: Sequence[float], ring_mm: Sequence[float]) -> dict[str, Any]:
    """Return where |attribution| peaks: its region (inside / ring / outside), distance (mm) from the lesion and signed value."""
    from LesionXAILib.probes.structuring import distance_from_mask_mm

    flat = int(np.argmax(np.abs(attribution)))
    at = np.unravel_index(flat, attribution.shape)
    distance = float(distance_from_mask_mm(lesion, spacing_kji)[at])
    if lesion[at]:
        region = "inside"
    elif distance <= float(ring_mm[1]):
        region = "ring"
    else:
        region = "outside"
    return {"region": region, "distance_mm": round(distance, 3), "value": float(attribution[at])}


def _mimic_overlap(mask: np.ndarray, mimics: Optional[np.ndarray]) -> Optional[str]:
    """Return the mimic kind an instance overlaps most (None: no mimic under it)."""
    from LesionXAILib.phantom.mimics import MIMIC_KINDS

    if mimics is None:
        return None
    labels = mimics[mask]
    labels = labels[labels > 0]
    if labels.size == 0:
        return None
    return MIMIC_KINDS[int(np.bincount(labels).argmax()) - 1]


def _lesion_row(model_name: str, seed: int, analysis, result, phantom, settings: StudySettings) -> dict[str, Any]:
    row = analysis.summary()
    out: dict[str, Any] = {"model": model_name, "seed": int(seed), "id": row["id"], "status": row["status"], "voxels": row["voxels"]}
    out["context_needed_mm"] = row.get("context_needed_mm")
    out["context_beyond_max"] = row.get("context_needed_beyond_max_radius")
    out["context_status"] = row.get("context_status")
    mask = result.instances.mask(analysis.id)
    maps = analysis.explanation.maps if analysis.explanation is not None else {}
    for seq, key in zip(SEQUENCES, _map_keys(maps, settings.method)):
        for stat in ("inside_mean", "ring_mean", "inside_peak", "ring_trough"):
            out[f"{seq}_{stat}"] = row.get(f"{key}_{stat}")
        peak = peak_location(maps[key], mask, result.geometry.spacing_kji, settings.ring_mm)
        out[f"{seq}_peak_region"] = peak["region"]
        out[f"{seq}_peak_distance_mm"] = peak["distance_mm"]
        out[f"{seq}_peak_value"] = finite_or_none(peak["value"])
    out["mimic"] = _mimic_overlap(mask, phantom.mimics) if row["status"] == "FP" else None
    return out


def _map_keys(maps: Mapping[str, np.ndarray], method: str) -> list[str]:
    """Return the method's map keys in input order (FLAIR first), as the explainers name them."""
    keys = [k for k in maps if k.startswith(f"{method}_")]
    order = {"flair": 0}
    return sorted(keys, key=lambda k: (order.get(k.split("_", 1)[1].lower(), 1), k))


def _choose(ids: Sequence[int], instances, limit: Optional[int]) -> list[int]:
    if limit is None:
        return list(ids)
    by_status: dict[str, list[int]] = {}
    for i in ids:
        by_status.setdefault(instances.get(i).status, []).append(i)
    chosen: list[int] = []
    # round robin over statuses so a cap keeps FPs and FNs in the sample
    while len(chosen) < limit and any(by_status.values()):
        for status in sorted(by_status):
            if by_status[status] and len(chosen) < limit:
                chosen.append(by_status[status].pop(0))
    return sorted(chosen)


def run_study(
    models: Mapping[str, Any],
    settings: StudySettings = StudySettings(),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> StudyResult:
    """Return the study of ``models`` ({name: LesionModel}) on the held-out phantoms of ``settings``."""
    from LesionXAILib.analysis import analyse_lesions
    from LesionXAILib.phantom import generate_phantom
    from LesionXAILib.segmentation import segment

    if not models:
        raise ParameterError("study: give at least one model")
    reporter = as_reporter(progress, cancel)
    start = time.perf_counter()
    result = StudyResult(settings, {name: str(getattr(m, "source", "") or name) for name, m in models.items()})
    phantom_settings = _phantom_settings(settings)
    steps = len(settings.seeds) * len(models)
    done = 0
    for seed in settings.seeds:
        phantom = generate_phantom(int(seed), phantom_settings)
        mimic_count = 0
        if phantom.mimics is not None:
            from LesionXAILib.instances import label_components

            mimic_count = label_components(phantom.mimics > 0, 26)[1]
        for name, model in models.items():
            sub = reporter.sub(done / steps, (done + 1) / steps)
            seg = segment(phantom.pair(), model, ground_truth=phantom.lesions, progress=sub.sub(0.0, 0.2))
            ids = _choose(seg.instances.ids, seg.instances, settings.max_lesions)
            synthetic = settings.synthetic_positions > 0 and seed == settings.seeds[0]
            rows = [
                _lesion_row(name, seed, a, seg, phantom, settings)
                for a in analyse_lesions(model, seg, ids, _analysis_settings(settings, model), sub.sub(0.2, 0.8 if synthetic else 1.0), cancel)
            ]
            if synthetic:  # the detection curve on the first phantom, the same positions for every model
                from LesionXAILib.study.synthetic import synthetic_rows

                result.synthetic.extend(synthetic_rows(name, seed, model, phantom, settings.synthetic_positions, settings.seed, sub.sub(0.8, 1.0)))
            result.lesions.extend(rows)
            m = seg.instances.metrics.to_dict()
            fps = [i for i in seg.instances.ids if seg.instances.get(i).status == "FP"]
            on_mimic = sum(_mimic_overlap(seg.instances.mask(i), phantom.mimics) is not None for i in fps)
            result.subjects.append({
                "model": name, "seed": int(seed), "dice": finite_or_none(m["dice"]), "tp": m["tp"], "fp": m["fp"],
                "fn": m["fn"], "gt_lesions": m["gt_lesions"], "mimics": mimic_count, "fp_on_mimics": on_mimic, "analysed": len(rows),
            })  # fmt: skip
            done += 1
            reporter(done / steps, f"{name} seed {seed}: TP {m['tp']} FP {m['fp']} FN {m['fn']}")
    result.seconds = time.perf_counter() - start
    return result


def finite(values) -> list[float]:
    """Return the finite floats among ``values`` (None and NaN dropped)."""
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
