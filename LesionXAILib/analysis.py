"""Per-lesion analysis shared by every front end (CLI, demo, cohort, Slicer, browser): explanations + context probe.

``analyse_lesions`` runs, lesion by lesion, the selected explainers and the perilesional-context probe on a
segmentation result and yields :class:`LesionAnalysis` records; ``write_analysis_run`` writes them in the
same directory layout as ``lesionxai segment`` + ``explain`` + ``probe`` (so ``lesionxai report`` reads
either), plus ``lesions.csv`` with one summary row per lesion.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Sequence

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.settings import ExplainSettings
from LesionXAILib.instances import Instance
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.context import ContextSettings
from LesionXAILib.probes.curve import ContextCurve
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter
from LesionXAILib.vocabulary import finite_or_none

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
            "mean_probability": finite_or_none(inst.mean_probability),
            "max_probability": finite_or_none(inst.max_probability),
        }
        if self.explanation is not None:
            stats = self.explanation.statistics
            for key in sorted(k for k in stats if k != "flair_share"):
                for name in ROW_STATISTICS:
                    row[f"{key}_{name}"] = finite_or_none(stats[key].get(name))
            for method, share in sorted(stats.get("flair_share", {}).items()):
                row[f"{method}_flair_share"] = finite_or_none(share)
            if self.explanation.fidelity:
                from LesionXAILib.explain.output import fidelity_columns

                row.update(fidelity_columns(self.explanation.fidelity))
        if self.curve is not None:
            d = self.curve.to_dict()
            row["context_status"] = self.curve.status
            row["context_needed_mm"] = d["context_needed_mm"]
            row["context_needed_beyond_max_radius"] = d["context_needed_beyond_max_radius"]
            row["full_context_mean_probability"] = finite_or_none(self.curve.full_context.mean_probability)
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


class SubjectAnalysis:
    """One segmented subject (model + segmentation result) analysed lesion by lesion, sharing subject-wide work.

    The CAM layer's gradient-free whole-volume activations depend only on the model and the normalised
    image, not on the lesion: they are computed on first need, once per layer, and reused for every
    lesion (``activation_passes`` counts the passes). Thread-safe: a worker thread may analyse lesions
    while another asks for the activations. Hold one per subject (``analyse_lesions`` makes one per
    call; the Slicer/browser session keeps one per run) and drop it with the result.
    """

    def __init__(self, model: LesionModel, result: "SegmentationResult") -> None:
        self.model = model
        self.result = result
        self.activation_passes = 0
        self._activations: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._fidelity_memo: dict = {}  # per-lesion crop checks, reused by staged explanations
        self.margin_source: Optional[str] = None

    def margin_settings(self, settings: ExplainSettings, progress: Optional[ProgressReporter] = None) -> ExplainSettings:
        """Return ``settings`` with the model's margin fixed; an uncalibrated model is auto-calibrated on this subject's lesions."""
        from LesionXAILib.explain.api import check_image, instance_targets, margin_settings
        from LesionXAILib.explain.model_state import check_model, explaining

        if settings.full_volume or settings.roi_margin_mm is not None:
            return settings
        model = check_model(self.model)
        with self._lock:
            image = check_image(model, self.result.normalized, self.result.geometry)
            masks = [t.mask for t in instance_targets(self.result.instances, None, settings.aggregation)]
            with explaining(model):
                fixed, self.margin_source = margin_settings(model, image, masks, self.result.geometry, settings, progress)
        return fixed

    def cam_activations(self, layer: Optional[str] = None, progress: Optional[ProgressReporter] = None) -> Any:
        """Return the whole-volume LayerActivations of a CAM layer (None: the model's default), computed once."""
        from LesionXAILib.explain.api import check_image
        from LesionXAILib.explain.cam import layer_activations, resolve_layer
        from LesionXAILib.explain.model_state import check_model, explaining

        name = resolve_layer(self.model, layer)[0]
        with self._lock:
            cached = self._activations.get(name)
            if cached is None:
                if progress is not None:
                    progress(0.0, "CAM layer activations (whole volume, once per subject)")
                model = check_model(self.model)
                image = check_image(model, self.result.normalized, self.result.geometry)
                with explaining(model):
                    cached = layer_activations(model, image, name)
                self._activations[name] = cached
                self.activation_passes += 1
            return cached

    def explain(
        self,
        lesion_id: int,
        settings: ExplainSettings,
        progress: Optional[ProgressCallback | ProgressReporter] = None,
        cancel: Optional[CancelToken] = None,
    ) -> Explanation:
        """Return the explanation of one instance with ``settings`` (CAMs use the shared activations)."""
        from LesionXAILib.explain.api import instance_targets, iter_explanations

        reporter = as_reporter(progress, cancel)
        target = instance_targets(self.result.instances, [lesion_id], settings.aggregation)[0]
        settings = self.margin_settings(settings, reporter)
        activations = None
        if settings.cam_methods and not settings.full_volume:
            activations = self.cam_activations(settings.cam_layer, reporter.sub(0.0, 0.0))
        explanations = iter_explanations(
            self.model, self.result.normalized, [target], self.result.geometry, settings, reporter, None, activations,
            self._fidelity_memo,
        )  # fmt: skip
        return next(explanations)

    def probe(
        self,
        lesion_id: int,
        settings: ContextSettings,
        progress: Optional[ProgressCallback | ProgressReporter] = None,
        cancel: Optional[CancelToken] = None,
    ) -> ContextCurve:
        """Return the perilesional-context curve of one instance."""
        from LesionXAILib.probes.context import context_probe_instances

        return context_probe_instances(self.model, self.result, [lesion_id], settings, as_reporter(progress, cancel))[int(lesion_id)]

    def analyse(
        self,
        lesion_id: int,
        settings: AnalysisSettings = AnalysisSettings(),
        progress: Optional[ProgressCallback | ProgressReporter] = None,
        cancel: Optional[CancelToken] = None,
        first: Sequence[str] = (),
        on_partial: Optional[Callable[[LesionAnalysis], None]] = None,
        start: Optional[LesionAnalysis] = None,
    ) -> LesionAnalysis:
        """Return one lesion's analysis, computed in stages: what ``first`` names, the other explainers, the probe.

        ``first`` lists explainer methods (e.g. ``("smoothgrad",)``) and/or ``"context"`` (the probe).

        ``on_partial(analysis)`` receives the analysis so far after every stage but the last (e.g. to show
        a map before the context probe is done); ``start`` is such a partial analysis to resume from
        (its explainers and curve are kept). With ``first`` empty all explainers form one stage, exactly
        as ``analyse_lesion`` computes them; split or not, the maps are the same (see
        :func:`LesionXAILib.explain.api.combine_explanations`).
        """
        started = time.perf_counter()
        instance = self.result.instances.get(lesion_id)
        reporter = as_reporter(progress, cancel)
        if settings.explain is not None:  # the model's margin, so split stages combine to what one stage gives
            settings = AnalysisSettings(explain=self.margin_settings(settings.explain, reporter), context=settings.context)
        done_parts = [start.explanation] if start is not None and start.explanation is not None else []
        done_methods = {m for p in done_parts for m in p.settings.methods}
        curve = start.curve if start is not None else None
        stages: list[tuple[str, Any]] = []
        probe = [("context", settings.context)] if settings.context is not None and curve is None else []
        if "context" in first:  # e.g. to show the context shells first
            stages += probe
            probe = []
        if settings.explain is not None:
            todo = [m for m in settings.explain.methods if m not in done_methods]
            early = [m for m in todo if m in first]
            for methods in (early, [m for m in todo if m not in early]):
                if methods:
                    stages.append(("explain", settings.explain.replace(methods=tuple(methods))))
        stages += probe
        seconds = start.seconds if start is not None else 0.0
        parts = list(done_parts)
        for n, (kind, stage_settings) in enumerate(stages):
            sub = reporter.sub(n / len(stages), (n + 1) / len(stages))
            if kind == "explain":
                parts.append(self.explain(lesion_id, stage_settings, sub))
            else:
                curve = self.probe(lesion_id, stage_settings, sub)
            if on_partial is not None and n < len(stages) - 1:
                on_partial(self._assemble(instance, parts, curve, settings, seconds + time.perf_counter() - started, partial=True))
        reporter(1.0, f"lesion {lesion_id}")
        return self._assemble(instance, parts, curve, settings, seconds + time.perf_counter() - started, partial=False)

    @staticmethod
    def _assemble(
        instance: Instance, parts: list, curve: Optional[ContextCurve], settings: AnalysisSettings, seconds: float, partial: bool
    ) -> LesionAnalysis:
        from LesionXAILib.explain.api import combine_explanations

        explanation = None
        if parts:
            if len(parts) == 1 and not partial and parts[0].settings == settings.explain:
                explanation = parts[0]
            else:
                methods = tuple(m for m in settings.explain.methods if any(m in p.settings.methods for p in parts))
                explanation = combine_explanations(parts, settings.explain.replace(methods=methods))
        return LesionAnalysis(instance, explanation, curve, seconds)


def analyse_lesion(
    model: LesionModel,
    result: "SegmentationResult",
    lesion_id: int,
    settings: AnalysisSettings = AnalysisSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
    subject: Optional[SubjectAnalysis] = None,
) -> LesionAnalysis:
    """Return the analysis (explanation and context curve, as selected) of one instance of ``result``.

    Pass the subject's :class:`SubjectAnalysis` (same model and result) when analysing several lesions
    one call at a time, so that subject-wide work (CAM layer activations) is done once.
    """
    return next(analyse_lesions(model, result, [lesion_id], settings, progress, cancel, subject))


def analyse_lesions(
    model: LesionModel,
    result: "SegmentationResult",
    ids: Optional[Sequence[int]] = None,
    settings: AnalysisSettings = AnalysisSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
    subject: Optional[SubjectAnalysis] = None,
) -> Iterator[LesionAnalysis]:
    """Yield a LesionAnalysis per id (default: every instance, FN included), in order; unknown ids fail first.

    Lesions share one :class:`SubjectAnalysis` (``subject``, or one made here), so the CAM layer's
    whole-volume activations are computed once for all of them.
    """
    from LesionXAILib.explain.api import instance_targets

    instances = result.instances
    chosen = list(instances.ids if ids is None else ids)
    if settings.explain:
        instance_targets(instances, chosen, settings.explain.aggregation)  # unknown/duplicate ids fail before any work
    else:
        for i in chosen:
            instances.get(i)
    if subject is None:
        subject = SubjectAnalysis(model, result)
    elif subject.model is not model or subject.result is not result:
        raise ParameterError("the SubjectAnalysis given is of another model or segmentation result")
    reporter = as_reporter(progress, cancel)
    for n, i in enumerate(chosen):
        lo, hi = n / max(len(chosen), 1), (n + 1) / max(len(chosen), 1)
        analysis = subject.analyse(i, settings, reporter.sub(lo, hi))
        reporter(hi, f"lesion {i} ({n + 1}/{len(chosen)})")
        yield analysis


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
        explain = settings.explain
        first = next((a.explanation for a in analyses if a.explanation is not None), None)
        source = None
        if explain.roi_margin_mm is None and first is not None:  # record the margin the model gave them
            start = (first.fidelity.get("checks") or [{}])[0].get("margin_mm", first.settings.roi_margin_mm)
            explain = explain.replace(roi_margin_mm=start)
            source = first.fidelity.get("margin_source")
        paths.update({f"explanations_{k}": v for k, v in write_explanations(out, rows, explain, result, source).items()})
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
