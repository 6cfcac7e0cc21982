"""Session: one subject analysed lesion by lesion, with no scene (Slicer module and browser viewer share it).

Data flow: a front end reads its inputs into :class:`RunInputs` (image pair, ground truth, stamps);
``compute_run`` segments them (no shared state: a worker thread may run it) and ``apply_run`` makes
the result the session's, fixing the cache key (input voxels and geometry, ground truth, model
weights, every setting). ``compute_lesion`` then runs the analysis of :mod:`LesionXAILib.analysis`
for one lesion (through the run's :class:`~LesionXAILib.analysis.SubjectAnalysis`, so the CAM
layer's whole-volume activations are computed once per run), caches it under that key and, with
``on_partial``, delivers it in stages (the explainer of the overlay to show first, then the other
explainers, then the context probe). A stage cancelled half way is kept (at most ``MAX_PARTIALS``)
and resumed on the next call. A lock guards the partial results and statistics, which the worker
writes while the front end's thread reads them. Front ends put results on screen themselves
(:class:`LesionXAILib.mrml.writer.SceneWriter` for an MRML scene).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.session.cache import ResultCache, digest_arrays, model_fingerprint
from LesionXAILib.session.overlays import SHELLS_OVERLAY, default_overlay, overlay_names, overlay_sources
from LesionXAILib.session.results import LesionResult, base_statistics, computed_statistics
from LesionXAILib.session.settings import RunInputs, SessionSettings, check_settings

# unfinished per-lesion computations kept to resume from (each holds full-grid maps)
MAX_PARTIALS = 4


class Session:
    """A subject's segmentation and per-lesion analyses, cached (see the module docstring)."""

    def __init__(
        self,
        model: Any = None,
        settings: SessionSettings = SessionSettings(),
        cache: Optional[ResultCache] = None,
        trust_model: bool = False,
    ) -> None:
        self._settings = check_settings(settings)
        self.cache = cache if cache is not None else ResultCache()
        self._model_source = model
        self._trust_model = bool(trust_model)  # a model path that runs code when loaded (TorchScript) needs it
        self._model = None
        self._model_digest: Optional[str] = None
        self._run_settings: Optional[SessionSettings] = None
        self._result: Any = None  # SegmentationResult of the last run
        self._subject: Any = None  # LesionXAILib.analysis.SubjectAnalysis of the last run
        self._input_digest: Optional[str] = None
        self.input_stamps: Optional[tuple] = None  # RunInputs.stamps of the last run
        self._lock = threading.Lock()
        self._statistics: dict[tuple[str, int], dict] = {}
        self._partials: "dict[tuple[str, int], Any]" = {}  # (key, id) -> LesionAnalysis of an unfinished compute

    # ------------------------------------------------------------------ model and settings
    @property
    def model(self) -> Any:
        """Return the LesionModel (loaded on first use: None -> demo model, a path -> that checkpoint)."""
        if self._model is None:
            from LesionXAILib.lesion_model import LesionModel

            source = self._model_source
            if isinstance(source, LesionModel):
                model = source.eval()
            else:
                from LesionXAILib.model_loading import load_model

                model = load_model(None if source in (None, "") else source, trust=self._trust_model)
            self._model = model
            self._model_digest = model_fingerprint(model)
        return self._model

    @property
    def settings(self) -> SessionSettings:
        """Return the current settings."""
        return self._settings

    @settings.setter
    def settings(self, value: SessionSettings) -> None:
        """Change settings: analysis changes take effect at once (new cache key); threshold/min size need a new run."""
        self._settings = check_settings(value)

    @property
    def key(self) -> Optional[str]:
        """Return the cache key of the current inputs + model + settings (None before a run)."""
        if self._input_digest is None or self._model_digest is None:
            return None
        return digest_arrays(self._input_digest, self._model_digest, self._settings.to_dict())

    def needs_run(self) -> Optional[str]:
        """Return why a run must happen (again) before lesions can be computed, or None."""
        if self._result is None:
            return "no segmentation yet: call run() first"
        if self._run_settings.segmentation_fields() != self._settings.segmentation_fields():
            return "the threshold or minimum size changed since run(); call run() again"
        return None

    def check_current(self) -> Any:
        """Return the SegmentationResult of the last run, or raise why lesions cannot be computed now."""
        reason = self.needs_run()
        if reason:
            raise ParameterError(reason)
        return self._result

    # ------------------------------------------------------------------ segmentation
    def compute_run(self, inputs: RunInputs, progress: Any = None, cancel: Any = None) -> Any:
        """Load the model and segment ``inputs`` without changing the session (a worker thread may run it)."""
        from LesionXAILib.progress import as_reporter
        from LesionXAILib.segmentation import segment

        reporter = as_reporter(progress, cancel)
        reporter(0.0, "loading the model")
        model = self.model
        return segment(inputs.pair, model, inputs.settings.segmentation_settings(), inputs.ground_truth, reporter.sub(0.05, 1.0))

    def apply_run(self, inputs: RunInputs, result: Any) -> None:
        """Make ``result`` (segmented from ``inputs``) the session's segmentation; its settings become current."""
        from LesionXAILib.analysis import SubjectAnalysis

        self._settings = inputs.settings
        self._result = result
        self._subject = SubjectAnalysis(self.model, result)
        with self._lock:
            self._partials.clear()
        self._run_settings = inputs.settings
        self.input_stamps = inputs.stamps
        self._input_digest = digest_arrays(inputs.pair.flair, inputs.pair.t1, inputs.pair.geometry.to_dict(), inputs.ground_truth)

    @property
    def result(self) -> Any:
        """Return the SegmentationResult of the last run (None before)."""
        return self._result

    @property
    def subject_analysis(self) -> Any:
        """Return the run's SubjectAnalysis (shared per-subject work, e.g. CAM activations; None before a run)."""
        return self._subject

    @property
    def instance_ids(self) -> list[int]:
        """Return every instance id (predicted first, then missed ground-truth lesions); empty before a run."""
        return list(self._result.instances.ids) if self._result is not None else []

    # ------------------------------------------------------------------ lookup and statistics
    def lesion_at(self, ras: Sequence[float]) -> Optional[int]:
        """Return the instance id under a world RAS point, or None on background/outside the FLAIR grid."""
        if self._result is None:
            return None
        ras = np.asarray(ras, dtype=float).reshape(-1)
        if ras.size != 3 or not np.isfinite(ras).all():
            raise ParameterError(f"RAS point must be three finite numbers, got {list(ras)}")
        ijk = self._result.geometry.ras_to_ijk_points(ras[None])[0]
        return self._result.instances.at_voxel(tuple(int(np.floor(v + 0.5)) for v in ijk))

    def lesion_statistics(self, lesion_id: int) -> dict:
        """Return one lesion's statistics (STATISTIC_KEYS + extras); computed ones are None until ``compute_lesion``."""
        result = self._result
        if result is None:
            raise ParameterError("no segmentation yet: call run() first")
        row = result.instances.get(lesion_id)
        key = self.key
        with self._lock:
            computed = self._statistics.get((key, int(lesion_id)))
        return dict(computed) if computed is not None else base_statistics(row)

    def table_rows(self) -> list[dict]:
        """Return one statistics dict per instance (same keys as ``lesion_statistics``)."""
        return [self.lesion_statistics(i) for i in self.instance_ids]

    # ------------------------------------------------------------------ overlays
    def available_overlays(self) -> tuple[str, ...]:
        """Return the overlay names the current settings produce (maps of the explainers, then the shells)."""
        return overlay_names(self._settings.methods, self.model.config.input_order)

    def default_overlay(self) -> str:
        """Return the overlay shown when none is named: SmoothGrad FLAIR if computed, else the first map."""
        return default_overlay(self.available_overlays())

    def check_overlay(self, overlay: str, result: Optional[LesionResult] = None) -> str:
        """Return ``overlay`` if these settings produce it (and a complete ``result`` holds its map), else raise."""
        names = self.available_overlays()
        if overlay not in names:
            raise ParameterError(f"unknown overlay '{overlay}'; available: {', '.join(names)}")
        if result is not None and overlay != SHELLS_OVERLAY and overlay not in result.maps:
            raise ParameterError(f"lesion {result.lesion_id} has no '{overlay}' map")
        return overlay

    # ------------------------------------------------------------------ one lesion
    def is_cached(self, lesion_id: int) -> bool:
        """Return True if ``compute_lesion(lesion_id)`` would come from the cache."""
        key = self.key
        return key is not None and self.needs_run() is None and self.cache.contains(key, int(lesion_id))

    def compute_lesion(
        self,
        lesion_id: int,
        progress: Any = None,
        cancel: Any = None,
        on_partial: Optional[Callable[[LesionResult], None]] = None,
        first: Optional[str] = None,
    ) -> LesionResult:
        """Return the lesion's explanations + context probe (cached); safe in a worker thread.

        ``on_partial(result)`` (called on this thread) receives each finished stage as a LesionResult with
        ``complete=False``: the explainer behind overlay ``first`` (default: ``default_overlay()``), then the
        other explainers, then the probe completes the returned result. A computation cancelled after a
        stage resumes from it on the next call (same key). Maps do not depend on the staging.
        """
        result = self.check_current()
        lesion_id = int(lesion_id)
        row = result.instances.get(lesion_id)  # unknown id -> InstanceError listing the valid ones
        settings, key, subject = self._settings, self.key, self._subject
        cached = self.cache.get(key, lesion_id)
        if cached is not None:
            self._store_statistics(key, lesion_id, cached.statistics)
            return dataclasses.replace(cached, from_cache=True)
        centroid = tuple(float(v) for v in row.centroid_ras)
        with self._lock:
            start = self._partials.get((key, lesion_id))
        sources = overlay_sources(first or self.default_overlay()) if on_partial is not None else ()

        def make(analysis: Any, complete: bool) -> LesionResult:
            stats = computed_statistics(analysis, complete)
            return LesionResult(lesion_id, stats, analysis.curve, analysis, False, centroid, key, complete)  # type: ignore[arg-type]

        def partial(analysis: Any) -> None:
            with self._lock:
                self._partials[(key, lesion_id)] = analysis
                while len(self._partials) > MAX_PARTIALS:
                    self._partials.pop(next(iter(self._partials)))
            if on_partial is not None:
                value = make(analysis, False)
                self._store_statistics(key, lesion_id, value.statistics)
                on_partial(value)

        if start is not None and on_partial is not None:
            partial(start)  # what an interrupted computation had finished: show it at once
        analysis = subject.analyse(lesion_id, settings.analysis_settings(), progress, cancel, sources, partial, start)
        value = make(analysis, True)
        self.cache.put(key, lesion_id, value)
        self._store_statistics(key, lesion_id, value.statistics)
        with self._lock:
            self._partials.pop((key, lesion_id), None)
        return value

    def check_result(self, result: LesionResult) -> None:
        """Raise unless ``result`` was computed under the current key (same inputs, model and settings)."""
        self.check_current()
        if result.key != self.key:
            raise ParameterError(f"lesion {result.lesion_id} was computed for other inputs or settings; compute it again")

    def _store_statistics(self, key: Optional[str], lesion_id: int, statistics: dict) -> None:
        with self._lock:
            self._statistics[(key, lesion_id)] = statistics
