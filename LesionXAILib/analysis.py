"""Per-lesion analysis shared by every front end (CLI, demo, cohort, Slicer, browser): explanations + context probe.

``analyse_lesions`` runs, lesion by lesion, the selected explainers and the perilesional-context probe on a
segmentation result and yields :class:`LesionAnalysis` records; ``write_analysis_run`` writes them in the
same directory layout as ``lesionxai segment`` + ``explain`` + ``probe`` (so ``lesionxai report`` reads
either), plus ``lesions.csv`` with one summary row per lesion.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence

from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.settings import ExplainSettings
from LesionXAILib.instances import Instance
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.context import ContextSettings
from LesionXAILib.probes.curve import ContextCurve
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter

if TYPE_CHECKING:
    from LesionXAILib.segmentation import SegmentationResult

# statistics copied into the flat per-lesion row, for every map
ROW_STATISTICS = ("inside_sum", "inside_mean", "inside_peak", "ring_sum", "ring_mean", "ring_trough", "outside_sum")


@dataclass(frozen=True)
class AnalysisSettings:
    """What to compute per lesion: ``explain=None`` skips the explainers, ``context=None`` the context probe."""

    explain: Optional[ExplainSettings] = field(default_factory=ExplainSettings)
    context: Optional[ContextSettings] = field(default_factory=ContextSettings)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (None for a skipped part)."""
        return {
            "explain": self.explain.to_dict() if self.explain else None,
            "context": self.context.to_dict() if self.context else None,
        }

    def fingerprint(self) -> str:
        """Return a stable string identifying these settings (for caches)."""
        return json.dumps(self.to_dict(), sort_keys=True)


@dataclass
class LesionAnalysis:
    """One lesion's instance row, explanation (maps on the input grid + statistics) and context curve."""

    instance: Instance
    explanation: Optional[Explanation] = None
    curve: Optional[ContextCurve] = None
    seconds: float = 0.0

    @property
    def id(self) -> int:
        """Return the instance id."""
        return int(self.instance.id)

    def summary(self) -> dict[str, Any]:
        """Return one flat, JSON-serialisable row: instance, per-map statistics, FLAIR shares, context needed."""
        inst = self.instance
        row: dict[str, Any] = {
            "id": inst.id,
            "status": inst.status,
            "voxels": inst.voxels,
            "volume_mm3": round(float(inst.volume_mm3), 3),
            "centroid_r": round(inst.centroid_ras[0], 3),
            "centroid_a": round(inst.centroid_ras[1], 3),
            "centroid_s": round(inst.centroid_ras[2], 3),
            "mean_probability": _finite_or_none(inst.mean_probability),
            "max_probability": _finite_or_none(inst.max_probability),
        }
        if self.explanation is not None:
            stats = self.explanation.statistics
            for key in sorted(k for k in stats if k != "flair_share"):
                for name in ROW_STATISTICS:
                    row[f"{key}_{name}"] = _finite_or_none(stats[key].get(name))
            for method, share in sorted(stats.get("flair_share", {}).items()):
                row[f"{method}_flair_share"] = _finite_or_none(share)
        if self.curve is not None:
            d = self.curve.to_dict()
            row["context_status"] = self.curve.status
            row["context_needed_mm"] = d["context_needed_mm"]
            row["context_needed_beyond_max_radius"] = d["context_needed_beyond_max_radius"]
            row["full_context_mean_probability"] = _finite_or_none(self.curve.full_context.mean_probability)
        row["seconds"] = round(float(self.seconds), 3)
        return row

    def write(self, out_dir: str | os.PathLike, geometry, protected: Iterable[Optional[str | os.PathLike]] = ()) -> dict[str, Path]:
        """Write the maps (NIfTI), the context curve (CSV/JSON/PNG) and shells into ``out_dir``; return the paths."""
        from LesionXAILib.probes.output import write_instance_outputs

        guard = [p for p in protected if p is not None]
        paths: dict[str, Path] = {}
        if self.explanation is not None:
            paths.update(self.explanation.write(out_dir, geometry, guard))
        if self.curve is not None:
            paths.update({f"context_{k}": v for k, v in write_instance_outputs(self.curve, Path(out_dir), geometry, guard).items()})
        return paths


def _finite_or_none(value: Any) -> Optional[float]:
    if value is None:
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def analyse_lesion(
    model: LesionModel,
    result: "SegmentationResult",
    lesion_id: int,
    settings: AnalysisSettings = AnalysisSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> LesionAnalysis:
    """Return the analysis (explanation and context curve, as selected) of one instance of ``result``."""
    return next(analyse_lesions(model, result, [lesion_id], settings, progress, cancel))


def analyse_lesions(
    model: LesionModel,
    result: "SegmentationResult",
    ids: Optional[Sequence[int]] = None,
    settings: AnalysisSettings = AnalysisSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> Iterator[LesionAnalysis]:
    """Yield a LesionAnalysis per id (default: every instance, FN included), in order; unknown ids fail first."""
    from LesionXAILib.explain.api import instance_targets, iter_explanations
    from LesionXAILib.probes.context import context_probe_instances

    instances = result.instances
    chosen = list(instances.ids if ids is None else ids)
    targets = instance_targets(instances, chosen, settings.explain.aggregation) if settings.explain else None
    reporter = as_reporter(progress, cancel)
    parts = int(settings.explain is not None) + int(settings.context is not None)
    for n, i in enumerate(chosen):
        start = time.perf_counter()
        lo, hi = n / max(len(chosen), 1), (n + 1) / max(len(chosen), 1)
        sub = reporter.sub(lo, hi)
        explanation = curve = None
        step = 0
        if settings.explain is not None:
            part = sub.sub(0.0, 1.0 / parts)
            explanation = next(iter_explanations(model, result.normalized, [targets[n]], result.geometry, settings.explain, part))
            step += 1
        if settings.context is not None:
            part = sub.sub(step / parts, 1.0)
            curve = context_probe_instances(model, result, [i], settings.context, part)[int(i)]
        reporter(hi, f"lesion {i} ({n + 1}/{len(chosen)})")
        yield LesionAnalysis(instances.get(i), explanation, curve, time.perf_counter() - start)


LESIONS_CSV = "lesions.csv"


def write_analysis_run(
    out_dir: str | os.PathLike,
    result: "SegmentationResult",
    analyses: Sequence[LesionAnalysis],
    settings: AnalysisSettings,
    protected: Iterable[Optional[str | os.PathLike]] = (),
) -> dict[str, Path]:
    """Write segmentation, per-lesion outputs, explanations.json, context_probe.json and lesions.csv; return paths.

    Per-lesion files go to ``instance_<id>/`` (written by :meth:`LesionAnalysis.write`); call that as each
    lesion finishes to keep memory bounded, then this with the analyses (their maps may be dropped).
    """
    from LesionXAILib.explain.output import write_explanations
    from LesionXAILib.probes.files import write_csv
    from LesionXAILib.probes.output import write_probe_summary

    out = Path(out_dir)
    guard = [p for p in protected if p is not None]
    paths = result.write(out, protected=guard)
    if settings.explain is not None:
        rows = [a.explanation.to_dict() for a in analyses if a.explanation is not None]
        paths.update({f"explanations_{k}": v for k, v in write_explanations(out, rows, settings.explain, result).items()})
    if settings.context is not None:
        curves = {a.id: a.curve for a in analyses if a.curve is not None}
        write_probe_summary(out, curves, result.instances, settings.context, result.threshold)
        paths["context_probe"] = out / "context_probe.json"
    rows = [a.summary() for a in analyses]
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    paths["lesions"] = write_csv(out / LESIONS_CSV, columns or ["id"], rows)
    return paths
