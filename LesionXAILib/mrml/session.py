"""LesionSession: one FLAIR/MPRAGE pair in a Slicer scene -> lesion segments, table, per-lesion overlays and chart.

``run`` segments the inputs and adds (in a subject-hierarchy folder) a segmentation node with one
segment per instance, the instance label map, the probability map and the instance table.
``select_lesion(id)`` = ``show_lesion(compute_lesion(id))``: ``compute_lesion`` runs the analysis
of :mod:`LesionXAILib.analysis` (explanations + context probe, through the run's
:class:`~LesionXAILib.analysis.SubjectAnalysis`, so the CAM layer's whole-volume activations are
computed once per run, not once per lesion) without touching the scene, so it may run in a worker
thread, and caches the result under a key made of the input voxels and geometry, ground truth, model
weights and every setting. With ``on_partial`` it delivers the lesion in stages (the explainer of the
overlay to show first, then the other explainers, then the context probe), each stage a
``LesionResult`` with ``complete=False`` that ``show_lesion`` can show. ``show_lesion`` (main thread)
writes only the overlay being shown into its volume node (the others when first shown or asked for),
the context curve into a table and chart, and sets every slice composite node (background FLAIR,
foreground the chosen overlay, label the lesions) keeping the foreground opacity the user chose.

Input nodes are only read: their voxels, geometry, display and references are never changed.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from LesionXAILib.cam_methods import CAM_LABELS, CAM_METHODS
from LesionXAILib.errors import InputImageError, ParameterError
from LesionXAILib.mrml import colors, hierarchy, segments, tables, views
from LesionXAILib.session.cache import ResultCache, digest_arrays, model_fingerprint
from LesionXAILib.mrml.volumes import (
    array_from_volume_node,
    ensure_display_node,
    node_label,
    update_volume_node,
    volume_fingerprint,
    volume_node_from_array,
)

OVERLAYS = ("smoothgrad_flair", "smoothgrad_mprage", "gradcampp", "context_shells")
SHELLS_OVERLAY = "context_shells"
STATISTIC_KEYS = ("id", "status", "voxels", "volume_mm3", "mean_probability", "flair_share", "context_needed_mm",
                  "context_status", "centroid_ras")  # fmt: skip
# maps that are never negative: drawn with the sequential table on [0, M]
NON_NEGATIVE_METHODS = (*CAM_METHODS, "smoothgrad_squared", "smoothgrad_abs")
METHOD_TITLES = {
    "gradient": "Gradient", "smoothgrad": "SmoothGrad", "smoothgrad_squared": "SmoothGrad²",
    "smoothgrad_abs": "|SmoothGrad|", "integrated_gradients": "Integrated gradients",
    **CAM_LABELS,
}  # fmt: skip
# unfinished per-lesion computations kept to resume from (each holds full-grid maps)
MAX_PARTIALS = 4
# window half-width of an overlay = this percentile of |value| over its non-zero voxels (robust to single spikes)
WINDOW_PERCENTILE = 99.5


@dataclass(frozen=True)
class SessionSettings:
    """What the session computes: segmentation (threshold, min size) and per-lesion analysis settings."""

    threshold: Optional[float] = None  # None -> the model's
    min_size: float = 3  # voxels
    methods: tuple[str, ...] = ("smoothgrad", "gradcampp")
    samples: int = 16
    seed: int = 0
    max_radius_mm: float = 15.0
    aggregation: str = "sum"
    connectivity: int = 26  # of lesion instances (the anchor: 18)

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {self.threshold}")
        if not float(self.min_size) >= 0:
            raise ParameterError(f"minimum lesion size must be >= 0 voxels, got {self.min_size}")
        self.analysis_settings()  # validates methods, samples, seed, radius, aggregation

    def segmentation_settings(self) -> Any:
        """Return the SegmentationSettings these settings imply."""
        from LesionXAILib.segmentation import SegmentationSettings

        return SegmentationSettings(threshold=self.threshold, min_size=float(self.min_size), connectivity=int(self.connectivity))

    def analysis_settings(self) -> Any:
        """Return the AnalysisSettings (explainers + context probe) these settings imply."""
        from LesionXAILib.analysis import AnalysisSettings
        from LesionXAILib.explain.settings import ExplainSettings
        from LesionXAILib.probes.context import ContextSettings

        explain = None
        if self.methods:
            explain = ExplainSettings(
                methods=self.methods, aggregation=self.aggregation, samples=int(self.samples), seed=int(self.seed)
            )
        return AnalysisSettings(explain=explain, context=ContextSettings.up_to(float(self.max_radius_mm), seed=int(self.seed)))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        return d

    def replace(self, **changes: Any) -> "SessionSettings":
        """Return a copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def segmentation_fields(self) -> tuple:
        """Return the fields that change the instances themselves (a change needs a new run)."""
        return (self.threshold, float(self.min_size), int(self.connectivity))


@dataclass(frozen=True)
class DisplaySettings:
    """How the session draws into the views (never part of the cache key: nothing computed depends on it).

    ``view_legends``: colour-legend display nodes inside the slice views (Slicer's module keeps them; a
    front end drawing its own colour bar from ``legend()`` turns them off). ``segmentation_in_slices``:
    draw the segmentation node in the 2D views as well as the instance label layer (both show the same
    lesions; the label layer alone halves the lesion drawing per slice render). ``foreground_opacity``:
    initial overlay opacity (``set_overlay_opacity`` changes it). ``lesion_fill_2d``: lesions drawn filled
    in the 2D views; off (the default) they are outlines, so the explanation map shows *inside* each
    lesion, where the attribution the paper reports lives. ``dimmed_opacity_3d``: 3D opacity of the
    lesions other than the selected one (which stays opaque, so it stands out).
    """

    view_legends: bool = True
    segmentation_in_slices: bool = True
    foreground_opacity: float = views.FOREGROUND_OPACITY
    lesion_fill_2d: bool = False
    dimmed_opacity_3d: float = 0.25

    def __post_init__(self) -> None:
        _check_opacity(self.foreground_opacity)
        _check_opacity(self.dimmed_opacity_3d)


@dataclass(frozen=True)
class RunInputs:
    """What ``LesionSession.prepare_run`` read from the scene for one segmentation (no MRML objects inside)."""

    pair: Any  # InputPair on the FLAIR grid
    ground_truth: Optional[np.ndarray]
    stamps: tuple  # the input nodes' fingerprints when read
    settings: SessionSettings


def _check_opacity(opacity: float) -> float:
    value = float(opacity)
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"overlay opacity must be in [0, 1], got {opacity}")
    return value


# explainer methods whose maps make up each overlay; "context" stands for the context probe
def overlay_sources(overlay: str) -> tuple[str, ...]:
    """Return what must be computed to show ``overlay``: an explainer method name, or 'context' for the shells."""
    if overlay == SHELLS_OVERLAY:
        return ("context",)
    if overlay in METHOD_TITLES:
        return (overlay,)
    for method in sorted(METHOD_TITLES, key=len, reverse=True):
        if overlay.startswith(method + "_"):
            return (method,)
    return ()


@dataclass
class LesionResult:
    """One lesion's statistics, context curve and analysis (maps in ``analysis.explanation.maps``).

    ``complete`` is False for a stage delivered before the whole analysis is done (``compute_lesion``
    with ``on_partial``): it holds the maps computed so far, and ``curve`` is None until the probe ran.
    """

    lesion_id: int
    statistics: dict
    curve: Any  # LesionXAILib.probes.curve.ContextCurve
    analysis: Any  # LesionXAILib.analysis.LesionAnalysis
    from_cache: bool
    centroid_ras: tuple[float, float, float]
    key: str = ""  # the session key it was computed under
    complete: bool = True

    def has_overlay(self, overlay: str) -> bool:
        """Return True if this result holds what ``overlay`` shows (a map, or the context curve for the shells)."""
        if overlay == SHELLS_OVERLAY:
            return self.curve is not None
        return overlay in self.maps

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Return the explanation maps by name (empty when no explainer ran)."""
        explanation = self.analysis.explanation if self.analysis is not None else None
        return dict(explanation.maps) if explanation is not None else {}


@dataclass
class _Outputs:
    """The scene nodes a session owns (all under ``folder``)."""

    folder: int = 0
    labels: Any = None
    segmentation: Any = None
    probability: Any = None
    table: Any = None
    overlays: dict = field(default_factory=dict)
    shells: Any = None
    curve_table: Any = None
    chart: Any = None
    series: dict = field(default_factory=dict)
    legends: dict = field(default_factory=dict)
    lesion_colors: Any = None


def overlay_title(name: str) -> str:
    """Return a readable title for an overlay name, e.g. 'smoothgrad_flair' -> 'SmoothGrad FLAIR'."""
    if name == SHELLS_OVERLAY:
        return "Context shells"
    for method in sorted(METHOD_TITLES, key=len, reverse=True):
        if name == method:
            return METHOD_TITLES[method]
        if name.startswith(method + "_"):
            return f"{METHOD_TITLES[method]} {name[len(method) + 1:].upper()}"
    return name


def is_signed_overlay(name: str) -> bool:
    """Return True for maps drawn with the diverging table centred at 0 (signed gradients)."""
    if name == SHELLS_OVERLAY:
        return False
    return not any(name == m or name.startswith(m + "_") for m in NON_NEGATIVE_METHODS)


def overlay_window(values: np.ndarray, signed: bool) -> tuple[float, float]:
    """Return the fixed (min, max) display window of a map: [-M, M] for signed maps, [0, M] otherwise."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[v > 0]
    m = float(np.percentile(v, WINDOW_PERCENTILE)) if v.size else 0.0
    if not np.isfinite(m) or m <= 0:
        m = float(v.max()) if v.size else 1.0
    return (-m, m) if signed else (0.0, m)


class LesionSession:
    """A FLAIR/MPRAGE pair in ``scene`` analysed lesion by lesion (see the module docstring)."""

    def __init__(
        self,
        scene: Any,
        flair_node: Any,
        t1_node: Any,
        model: Any = None,
        settings: SessionSettings = SessionSettings(),
        ground_truth_node: Any = None,
        cache: Optional[ResultCache] = None,
        name: Optional[str] = None,
        display: Optional[DisplaySettings] = None,
        trust_model: bool = False,
    ) -> None:
        for role, node in (("FLAIR", flair_node), ("MPRAGE", t1_node)):
            if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputImageError(f"{role}: expected a scalar volume node, got {node_label(node)}")
            if node.GetScene() is not scene:
                raise InputImageError(f"{role} volume {node_label(node)} is not in this scene")
        if flair_node is t1_node:
            raise InputImageError(f"FLAIR and MPRAGE are the same node {node_label(flair_node)}")
        if ground_truth_node is not None and ground_truth_node.GetScene() is not scene:
            raise InputImageError(f"ground truth {node_label(ground_truth_node)} is not in this scene")
        if not isinstance(settings, SessionSettings):
            raise ParameterError(f"settings must be SessionSettings, got {type(settings).__name__}")
        display = DisplaySettings() if display is None else display
        if not isinstance(display, DisplaySettings):
            raise ParameterError(f"display must be DisplaySettings, got {type(display).__name__}")
        self.display = display
        self._opacity = float(display.foreground_opacity)
        self.scene = scene
        self.flair_node = flair_node
        self.t1_node = t1_node
        self.ground_truth_node = ground_truth_node
        self.name = name or f"LesionXAI {flair_node.GetName()}"
        self.cache = cache if cache is not None else ResultCache()
        self._model_source = model
        self._trust_model = bool(trust_model)  # a model path that runs code when loaded (TorchScript) needs it
        self._model = None
        self._model_digest: Optional[str] = None
        self._settings = settings
        self._run_settings: Optional[SessionSettings] = None
        self._result = None  # SegmentationResult of the last run
        self._input_digest: Optional[str] = None
        self._input_stamps: Optional[tuple] = None
        self._statistics: dict[tuple[str, int], dict] = {}
        self._lock = threading.Lock()
        self._out = _Outputs()
        self._segment_ids: dict[int, str] = {}
        self.selected_id: Optional[int] = None
        self.overlay: str = OVERLAYS[0]
        self._out_shell_radii: list[float] = []
        self._subject: Any = None  # LesionXAILib.analysis.SubjectAnalysis of the last run
        self._partials: "dict[tuple[str, int], Any]" = {}  # (key, id) -> LesionAnalysis of an unfinished compute
        self._shown: Optional[LesionResult] = None  # the result behind the selection
        self._written: dict[str, tuple] = {}  # overlay (or curve) -> (key, lesion id) its node holds
        # counts of volume-node writes by overlay name (tests assert what a show writes)
        self.writes: dict[str, int] = {}

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
        """Change settings: analysis changes take effect at once (new cache key); threshold/min size need ``run()``."""
        if not isinstance(value, SessionSettings):
            raise ParameterError(f"settings must be SessionSettings, got {type(value).__name__}")
        self._settings = value

    @property
    def key(self) -> Optional[str]:
        """Return the cache key of the current inputs + model + settings (None before ``run``)."""
        if self._input_digest is None or self._model_digest is None:
            return None
        return digest_arrays(self._input_digest, self._model_digest, self._settings.to_dict())

    def needs_run(self) -> Optional[str]:
        """Return why ``run()`` must be called (again) before lesions can be computed, or None."""
        if self._result is None:
            return "no segmentation yet: call run() first"
        if self._run_settings.segmentation_fields() != self._settings.segmentation_fields():
            return "the threshold or minimum size changed since run(); call run() again"
        return None

    def inputs_changed(self) -> bool:
        """Return True if an input node's voxels or geometry changed since ``run`` (main thread: reads MRML)."""
        return self._input_stamps is not None and self._input_stamps != self._stamps()

    def _stamps(self) -> tuple:
        nodes = [self.flair_node, self.t1_node, self.ground_truth_node]
        out = []
        for node in nodes:
            if node is None:
                out.append(None)
            elif node.GetScene() is None:
                out.append(("removed", id(node)))
            elif node.IsA("vtkMRMLSegmentationNode"):
                out.append((node.GetID(), node.GetSegmentation().GetMTime()))
            else:
                out.append(volume_fingerprint(node))
        return tuple(out)

    def _check_current(self) -> Any:
        reason = self.needs_run()
        if reason:
            raise ParameterError(reason)
        return self._result

    # ------------------------------------------------------------------ segmentation
    def read_inputs(self) -> tuple[Any, Optional[np.ndarray]]:
        """Return (InputPair on the FLAIR grid, ground-truth mask or None) read from the nodes (validated like the CLI)."""
        from LesionXAILib.geometry import array_to_image
        from LesionXAILib.image_io import pair_from_images

        images = []
        for node in (self.flair_node, self.t1_node):
            if node.GetScene() is None:
                raise InputImageError(f"volume {node_label(node)} was removed from the scene")
            array, geometry = array_from_volume_node(node)
            images.append(array_to_image(array.astype(np.float32, copy=False), geometry))
        pair = pair_from_images(images[0], images[1], self.flair_node.GetName(), self.t1_node.GetName())
        gt = None
        if self.ground_truth_node is not None:
            gt = segments.ground_truth_mask(self.ground_truth_node, pair.geometry)
        return pair, gt

    def run(self, progress: Any = None, cancel: Any = None) -> Any:
        """Segment the inputs and show the instances (segments, label map, probability, table); return the SegmentationResult."""
        from LesionXAILib.progress import as_reporter

        reporter = as_reporter(progress, cancel)
        reporter(0.0, "reading the input volumes")
        inputs = self.prepare_run()
        result = self.compute_run(inputs, reporter.sub(0.0, 0.9))
        reporter(0.9, "adding segments and table to the scene")
        self.apply_run(inputs, result)
        reporter(1.0, f"{len(result.instances.ids)} lesions")
        return result

    def prepare_run(self, settings: Optional[SessionSettings] = None) -> "RunInputs":
        """Read what ``run`` segments from the input nodes (main thread: reads MRML); the scene is not changed.

        ``settings`` (default: the current ones) become the session's settings when the run is applied.
        """
        settings = self._settings if settings is None else settings
        if not isinstance(settings, SessionSettings):
            raise ParameterError(f"settings must be SessionSettings, got {type(settings).__name__}")
        stamps = self._stamps()
        pair, gt = self.read_inputs()
        return RunInputs(pair, gt, stamps, settings)

    def compute_run(self, inputs: "RunInputs", progress: Any = None, cancel: Any = None) -> Any:
        """Load the model and segment ``inputs`` without touching the scene (a worker thread may run it)."""
        from LesionXAILib.progress import as_reporter
        from LesionXAILib.segmentation import segment

        reporter = as_reporter(progress, cancel)
        reporter(0.0, "loading the model")
        model = self.model
        return segment(inputs.pair, model, inputs.settings.segmentation_settings(), inputs.ground_truth, reporter.sub(0.05, 1.0))

    def apply_run(self, inputs: "RunInputs", result: Any) -> None:
        """Make ``result`` the session's segmentation and show it in the scene (main thread)."""
        from LesionXAILib.analysis import SubjectAnalysis

        if inputs.stamps != self._stamps():
            raise InputImageError("an input volume changed while the lesions were being found; find them again")
        self._settings = inputs.settings
        self._result = result
        self._subject = SubjectAnalysis(self.model, result)
        with self._lock:
            self._partials.clear()
        self._run_settings = inputs.settings
        self._input_stamps = inputs.stamps
        self._input_digest = digest_arrays(inputs.pair.flair, inputs.pair.t1, inputs.pair.geometry.to_dict(), inputs.ground_truth)
        self.selected_id = None
        self._shown = None
        self._written.clear()
        self._show_segmentation(result)

    @property
    def result(self) -> Any:
        """Return the SegmentationResult of the last run (None before)."""
        return self._result

    @property
    def instance_ids(self) -> list[int]:
        """Return every instance id (predicted first, then missed ground-truth lesions); empty before ``run``."""
        return list(self._result.instances.ids) if self._result is not None else []

    def _show_segmentation(self, result: Any) -> None:
        scene, out = self.scene, self._out
        if not out.folder or hierarchy.subject_hierarchy(scene).GetItemName(out.folder) is None:
            out.folder = hierarchy.create_folder(scene, self.name)
        names = {r.id: segments.lesion_name(r) for r in result.instances.instances}
        out.lesion_colors = colors.lesion_colors(scene, f"{self.name} lesion colours", names)
        out.labels = segments.instance_labels_node(scene, result.instances, f"{self.name} lesion labels", out.labels)
        out.labels.GetDisplayNode().SetAndObserveColorNodeID(out.lesion_colors.GetID())
        if out.segmentation is None:
            segments.ensure_surface_rule()  # before the node exists: a segmentation copies the rules it is made with
            out.segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{self.name} lesions")
            out.segmentation.CreateDefaultDisplayNodes()
        self._segment_ids = segments.fill_segmentation(out.segmentation, out.labels, result.instances)
        if out.probability is None:
            out.probability = volume_node_from_array(scene, result.probability, result.geometry, f"{self.name} probability")
        else:
            update_volume_node(out.probability, result.probability, result.geometry)
        display = ensure_display_node(out.probability)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.SetAndObserveColorNodeID(colors.sequential_colors(scene).GetID())
        if out.table is None:
            out.table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.name} lesion table")
        tables.fill_instance_table(out.table, self.table_rows())
        for node in (out.labels, out.segmentation, out.probability, out.table):
            hierarchy.place_in_folder(scene, node, out.folder)
        out.segmentation.GetDisplayNode().SetVisibility2D(bool(self.display.segmentation_in_slices))
        self._apply_lesion_style()
        for node in list(out.overlays.values()) + [out.shells]:  # maps of a previous run's lesion are stale now
            if node is not None:
                node.SetAttribute("LesionXAI.lesion_id", "")
        views.set_layers(scene, self.flair_node, None, out.labels, self._opacity)

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

    def segment_id(self, lesion_id: int) -> str:
        """Return the segment id of a lesion in the segmentation node."""
        self._check_current().instances.get(lesion_id)
        return self._segment_ids[int(lesion_id)]

    def lesion_statistics(self, lesion_id: int) -> dict:
        """Return one lesion's statistics (STATISTIC_KEYS + extras); computed ones are None until ``compute_lesion``."""
        result = self._result
        if result is None:
            raise ParameterError("no segmentation yet: call run() first")
        row = result.instances.get(lesion_id)
        key = self.key
        with self._lock:
            computed = self._statistics.get((key, int(lesion_id)))
        if computed is not None:
            return dict(computed)
        return self._base_statistics(row)

    def _base_statistics(self, row: Any) -> dict:
        return {
            "id": int(row.id),
            "status": row.status,
            "voxels": int(row.voxels),
            "volume_mm3": float(row.volume_mm3),
            "mean_probability": tables.finite_or_none(row.mean_probability),
            "max_probability": tables.finite_or_none(row.max_probability),
            "flair_share": None,
            "flair_share_method": None,
            "context_needed_mm": None,
            "context_needed_beyond_max_radius": None,
            "context_status": None,
            "context_description": None,
            "centroid_ras": tuple(float(v) for v in row.centroid_ras),
            "name": segments.lesion_name(row),
            "computed": False,
        }

    def _computed_statistics(self, analysis: Any, complete: bool = True) -> dict:
        stats = self._base_statistics(analysis.instance)
        explanation = analysis.explanation
        if explanation is not None:
            shares = explanation.statistics.get("flair_share", {})
            method = next((m for m in explanation.settings.gradient_methods if m in shares), None)
            if method is not None:
                stats["flair_share"] = tables.finite_or_none(shares[method])
                stats["flair_share_method"] = method
        if analysis.curve is not None:
            stats["context_needed_mm"] = analysis.curve.context_needed_mm
            stats["context_needed_beyond_max_radius"] = bool(
                analysis.curve.context_needed_mm is not None and np.isinf(analysis.curve.context_needed_mm)
            )
            stats["context_status"] = analysis.curve.status
            stats["context_description"] = analysis.curve.description
        stats["computed"] = bool(complete)
        return stats

    def table_rows(self) -> list[dict]:
        """Return one statistics dict per instance (same keys as ``lesion_statistics``)."""
        return [self.lesion_statistics(i) for i in self.instance_ids]

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
        """Return the lesion's explanations + context probe (cached); no scene access, safe in a worker thread.

        ``on_partial(result)`` (called on this thread) receives each finished stage as a LesionResult with
        ``complete=False``: the explainer behind overlay ``first`` (default: ``default_overlay()``), then the
        other explainers, then the probe completes the returned result. A computation cancelled after a
        stage resumes from it on the next call (same key). Maps do not depend on the staging.
        """
        from LesionXAILib.analysis import AnalysisSettings

        result = self._check_current()
        lesion_id = int(lesion_id)
        row = result.instances.get(lesion_id)  # unknown id -> InstanceError listing the valid ones
        settings = self._settings
        key = self.key
        subject = self._subject
        cached = self.cache.get(key, lesion_id)
        if cached is not None:
            with self._lock:
                self._statistics[(key, lesion_id)] = cached.statistics
            return dataclasses.replace(cached, from_cache=True)
        analysis_settings: AnalysisSettings = settings.analysis_settings()
        centroid = tuple(float(v) for v in row.centroid_ras)
        with self._lock:
            start = self._partials.get((key, lesion_id))
        sources = overlay_sources(first or self.default_overlay()) if on_partial is not None else ()

        def make(analysis: Any, complete: bool) -> LesionResult:
            stats = self._computed_statistics(analysis, complete)
            return LesionResult(lesion_id, stats, analysis.curve, analysis, False, centroid, key, complete)  # type: ignore[arg-type]

        def partial(analysis: Any) -> None:
            with self._lock:
                self._partials[(key, lesion_id)] = analysis
                while len(self._partials) > MAX_PARTIALS:
                    self._partials.pop(next(iter(self._partials)))
            if on_partial is not None:
                value = make(analysis, False)
                with self._lock:
                    self._statistics[(key, lesion_id)] = value.statistics
                on_partial(value)

        if start is not None and on_partial is not None:
            partial(start)  # what an interrupted computation had finished: show it at once
        analysis = subject.analyse(lesion_id, analysis_settings, progress, cancel, sources, partial, start)
        value = make(analysis, True)
        self.cache.put(key, lesion_id, value)
        with self._lock:
            self._statistics[(key, lesion_id)] = value.statistics
            self._partials.pop((key, lesion_id), None)
        return value

    @property
    def subject_analysis(self) -> Any:
        """Return the run's SubjectAnalysis (shared per-subject work, e.g. CAM activations; None before ``run``)."""
        return self._subject

    def available_overlays(self) -> tuple[str, ...]:
        """Return the overlay names the current settings produce (maps of the explainers, then the shells)."""
        sequences = [s.lower() for s in self.model.config.input_order]
        names: list[str] = []
        for method in self._settings.methods:
            if method in CAM_METHODS:
                names.append(method)
            else:
                names.extend(f"{method}_{s}" for s in sequences)
        return tuple(names) + (SHELLS_OVERLAY,)

    def show_lesion(self, result: LesionResult, overlay: Optional[str] = None) -> None:
        """Show a computed lesion (main thread): the chosen overlay, curve table + chart, table row, slice layers, jump.

        Only the overlay shown is written into its volume node; the others are written when first shown
        (``set_overlay``) or asked for (``overlay_node``). A partial result (``complete=False``) whose
        stages do not hold the overlay yet shows the lesion without a foreground layer.
        """
        self._check_current()
        overlay = overlay or self.default_overlay()
        if result.key != self.key:
            raise ParameterError(
                f"lesion {result.lesion_id} was computed for other inputs or settings; compute it again"
            )
        if self.inputs_changed():
            raise InputImageError("an input volume changed since run(); call run() again")
        overlay = self._check_overlay(overlay, result if result.complete else None)
        out = self._out
        lesion_id = int(result.lesion_id)
        same_lesion = self._shown is not None and (self._shown.key, self._shown.lesion_id) == (result.key, lesion_id)
        self._shown = result
        self.selected_id = lesion_id
        self.overlay = overlay
        if result.curve is not None and self._written.get("curve") != (result.key, lesion_id):
            self._update_curve(result.curve, lesion_id)
            self._written["curve"] = (result.key, lesion_id)
        tables.update_instance_row(out.table, result.statistics)
        self._show_overlay(overlay)
        if not same_lesion:  # a later stage of the lesion on show keeps the user's scrolling
            views.jump_slices_to(self.scene, result.centroid_ras)
        if self._segment_ids.get(lesion_id):
            out.segmentation.GetDisplayNode().SetSegmentVisibility(self._segment_ids[lesion_id], True)
        self._apply_lesion_style()

    def set_lesion_fill(self, fill: bool) -> None:
        """Draw the lesions filled (True) or as outlines (False, the default) in every 2D view."""
        self.display = dataclasses.replace(self.display, lesion_fill_2d=bool(fill))
        self._apply_lesion_style()

    def _apply_lesion_style(self) -> None:
        """Outline or fill the lesions in 2D (label layer and segmentation), and highlight the selected one in 3D.

        Applied on every show, so slice views created after the run (a new layout) get the style too.
        """
        fill = bool(self.display.lesion_fill_2d)
        views.set_label_outline(self.scene, not fill)
        node = self._out.segmentation
        if node is None:
            return
        display = node.GetDisplayNode()
        was = display.StartModify()
        display.SetVisibility2DFill(fill)
        display.SetOpacity2DFill(0.5 if fill else 0.0)
        display.SetVisibility2DOutline(True)
        display.SetOpacity2DOutline(1.0)
        selected = self._segment_ids.get(self.selected_id) if self.selected_id is not None else None
        for segment_id in self._segment_ids.values():
            highlight = selected is None or segment_id == selected
            display.SetSegmentOpacity3D(segment_id, 1.0 if highlight else float(self.display.dimmed_opacity_3d))
        display.EndModify(was)

    def default_overlay(self) -> str:
        """Return the overlay shown when none is named: SmoothGrad FLAIR if computed, else the first map."""
        names = self.available_overlays()
        return OVERLAYS[0] if OVERLAYS[0] in names else names[0]

    def select_lesion(
        self, lesion_id: int, overlay: Optional[str] = None, progress: Any = None, cancel: Any = None
    ) -> LesionResult:
        """Compute (or take from the cache) and show one lesion (overlay None: ``default_overlay()``); return its result."""
        if self.inputs_changed():
            raise InputImageError("an input volume changed since run(); call run() again")
        overlay = self._check_overlay(overlay or self.default_overlay(), None)
        result = self.compute_lesion(lesion_id, progress, cancel)
        self.show_lesion(result, overlay)
        return result

    def set_overlay(self, overlay: str) -> None:
        """Switch the foreground layer to another overlay of the selected lesion (written now if not yet)."""
        if self.selected_id is None:
            raise ParameterError("no lesion selected: call select_lesion(id) first")
        self.overlay = self._check_overlay(overlay, None)
        self._show_overlay(self.overlay)

    def set_overlay_opacity(self, opacity: float) -> None:
        """Set the foreground (overlay) opacity of every slice view, kept across ``show_lesion``/``set_overlay``."""
        self._opacity = _check_opacity(opacity)
        for composite in views.composite_nodes(self.scene):
            composite.SetForegroundOpacity(self._opacity)

    @property
    def overlay_opacity(self) -> float:
        """Return the foreground opacity the session applies."""
        return self._opacity

    def show_in_3d(self, visible: bool = True) -> None:
        """Show (or hide) the lesion segments as closed surfaces in the 3D views (surfaces built once)."""
        node = self._out.segmentation
        if node is None:
            raise ParameterError("no segmentation yet: call run() first")
        if visible and not node.CreateClosedSurfaceRepresentation():
            raise ParameterError("the lesion segments could not be converted to closed surfaces for 3D")
        node.GetDisplayNode().SetVisibility3D(bool(visible))

    def set_segmentation_in_slices(self, visible: bool) -> None:
        """Draw the segmentation node in the slice views too (True) or leave the lesions to the label layer (False)."""
        self.display = dataclasses.replace(self.display, segmentation_in_slices=bool(visible))
        if self._out.segmentation is not None:
            self._out.segmentation.GetDisplayNode().SetVisibility2D(bool(visible))

    def overlay_node(self, overlay: str) -> Any:
        """Return the volume node of an overlay of the selected lesion (a labelmap for the context shells).

        The node is written from the selected lesion's result if it does not hold that overlay yet.
        """
        overlay = self._check_overlay(overlay, None)
        shown = self._shown
        if self.selected_id is None or shown is None or not shown.has_overlay(overlay):
            raise ParameterError(f"overlay '{overlay}' is not available: select a lesion first")
        return self._ensure_overlay(overlay, shown)

    def legend(self, overlay: str) -> dict:
        """Return the colour bar of an overlay: colormap name, min/max, units, (value, rgb) samples."""
        node = self.overlay_node(overlay)
        if overlay == SHELLS_OVERLAY:
            radii = [float(r) for r in self._out_shell_radii]
            rgba = colors.shells_rgba(radii)
            return {
                "colormap": colors.SHELLS, "min": 0.0, "max": max(radii) if radii else 0.0, "units": "mm",
                "colors": [(r, tuple(float(c) for c in rgba[i + 1, :3])) for i, r in enumerate(radii)],
                "title": "Context kept around the lesion", "transparent_below": None,
            }  # fmt: skip
        display = node.GetDisplayNode()
        vmin, vmax = display.GetWindowLevelMin(), display.GetWindowLevelMax()
        signed = is_signed_overlay(overlay)
        rgba = colors.diverging_rgba() if signed else colors.sequential_rgba()
        units = "a.u. (CAM)" if overlay in CAM_METHODS else "d logit / d normalised input"
        half = max(abs(vmin), abs(vmax))
        return {
            "colormap": colors.DIVERGING if signed else colors.SEQUENTIAL,
            "min": float(vmin), "max": float(vmax), "units": units,
            "colors": colors.legend_entries(rgba, vmin, vmax),
            "title": overlay_title(overlay),
            "transparent_below": float(colors.TRANSPARENT_FRACTION * half),
        }  # fmt: skip

    # ------------------------------------------------------------------ scene plumbing
    @property
    def segmentation_node(self) -> Any:
        """Return the lesion segmentation node (None before ``run``)."""
        return self._out.segmentation

    @property
    def labels_node(self) -> Any:
        """Return the instance labelmap node (label layer of the slice views; None before ``run``)."""
        return self._out.labels

    @property
    def probability_node(self) -> Any:
        """Return the probability volume node (None before ``run``)."""
        return self._out.probability

    @property
    def table_node(self) -> Any:
        """Return the instance table node (None before ``run``)."""
        return self._out.table

    @property
    def chart_node(self) -> Any:
        """Return the context-curve plot chart node (None before a lesion is shown)."""
        return self._out.chart

    @property
    def curve_table_node(self) -> Any:
        """Return the table node behind the context-curve chart (None before a lesion is shown)."""
        return self._out.curve_table

    @property
    def folder_item(self) -> int:
        """Return the subject-hierarchy folder item holding every output (0 before ``run``)."""
        return self._out.folder

    def output_nodes(self) -> list:
        """Return every node the session added (not colour tables, which are shared)."""
        out = self._out
        nodes = [out.labels, out.segmentation, out.probability, out.table, out.shells, out.curve_table, out.chart]
        nodes += list(out.overlays.values()) + list(out.series.values())
        return [n for n in nodes if n is not None]

    def remove_outputs(self) -> None:
        """Remove every output node and the folder from the scene (inputs stay)."""
        for node in self.output_nodes():
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        if self._out.folder:
            hierarchy.remove_folder(self.scene, self._out.folder)
        self._out = _Outputs()
        self.selected_id = None
        self._shown = None
        self._written.clear()

    def _check_overlay(self, overlay: str, result: Optional[LesionResult]) -> str:
        names = self.available_overlays()
        if overlay not in names:
            raise ParameterError(f"unknown overlay '{overlay}'; available: {', '.join(names)}")
        if result is not None and overlay != SHELLS_OVERLAY and overlay not in result.maps:
            raise ParameterError(f"lesion {result.lesion_id} has no '{overlay}' map")
        return overlay

    def _update_overlay(self, name: str, array: np.ndarray, lesion_id: int, geometry: Any) -> None:
        scene, out = self.scene, self._out
        node = out.overlays.get(name)
        title = f"{self.name} {overlay_title(name)}"
        if node is None or node.GetScene() is None:
            node = volume_node_from_array(scene, array, geometry, title)
            out.overlays[name] = node
            hierarchy.place_in_folder(scene, node, out.folder)
        else:
            update_volume_node(node, array, geometry)
        node.SetName(f"{title} · lesion {lesion_id}")
        node.SetAttribute("LesionXAI.lesion_id", str(lesion_id))
        node.SetAttribute("LesionXAI.overlay", name)
        signed = is_signed_overlay(name)
        vmin, vmax = overlay_window(array, signed)
        display = ensure_display_node(node)
        was = display.StartModify()
        display.SetAndObserveColorNodeID((colors.diverging_colors(scene) if signed else colors.sequential_colors(scene)).GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(vmin, vmax)
        display.EndModify(was)

    def _update_shells(self, curve: Any, lesion_id: int, geometry: Any) -> None:
        scene, out = self.scene, self._out
        shells = curve.shells(geometry)
        title = f"{self.name} context shells"
        if out.shells is None or out.shells.GetScene() is None:
            out.shells = volume_node_from_array(scene, shells, geometry, title, labelmap=True)
            hierarchy.place_in_folder(scene, out.shells, out.folder)
        else:
            update_volume_node(out.shells, shells, geometry)
        out.shells.SetName(f"{title} · lesion {lesion_id}")
        out.shells.SetAttribute("LesionXAI.lesion_id", str(lesion_id))
        out.shells.SetAttribute("LesionXAI.overlay", SHELLS_OVERLAY)
        self._out_shell_radii = [float(r) for r in curve.radii_mm]
        ensure_display_node(out.shells).SetAndObserveColorNodeID(colors.shells_colors(scene, curve.radii_mm).GetID())

    def _update_curve(self, curve: Any, lesion_id: int) -> None:
        scene, out = self.scene, self._out
        if out.curve_table is None or out.curve_table.GetScene() is None:
            out.curve_table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.name} context curve")
            hierarchy.place_in_folder(scene, out.curve_table, out.folder)
        tables.fill_curve_table(out.curve_table, curve)
        out.curve_table.SetName(f"{self.name} context curve · lesion {lesion_id}")
        title = f"Lesion {lesion_id}: {curve.description}"
        out.chart, out.series = tables.curve_chart(scene, out.curve_table, title, out.chart, out.series)
        for node in [out.chart, *out.series.values()]:
            hierarchy.place_in_folder(scene, node, out.folder)
        tables.show_chart_in_plot_views(scene, out.chart)

    def _ensure_overlay(self, overlay: str, result: LesionResult) -> Any:
        """Return the overlay's node holding ``result``'s map (or shells), writing it only if it holds another."""
        geometry = self._result.geometry
        lesion_id = int(result.lesion_id)
        node = self._out.shells if overlay == SHELLS_OVERLAY else self._out.overlays.get(overlay)
        fresh = node is None or node.GetScene() is None or node.GetAttribute("LesionXAI.lesion_id") != str(lesion_id)
        if fresh or self._written.get(overlay) != (result.key, lesion_id):
            if overlay == SHELLS_OVERLAY:
                self._update_shells(result.curve, lesion_id, geometry)
            else:
                self._update_overlay(overlay, result.maps[overlay], lesion_id, geometry)
            self._written[overlay] = (result.key, lesion_id)
            self.writes[overlay] = self.writes.get(overlay, 0) + 1
        return self._out.shells if overlay == SHELLS_OVERLAY else self._out.overlays[overlay]

    def _show_overlay(self, overlay: str) -> None:
        shown = self._shown
        if shown is None or not shown.has_overlay(overlay):  # a stage that does not hold it yet
            views.set_layers(self.scene, self.flair_node, None, self._out.labels, self._opacity)
            for legend in self._out.legends.values():
                legend.SetVisibility(False)
            return
        node = self._ensure_overlay(overlay, shown)
        views.set_layers(self.scene, self.flair_node, node, self._out.labels, self._opacity)
        if self.display.view_legends:
            self._show_legend(overlay, node)

    def _show_legend(self, overlay: str, node: Any) -> None:
        """Show a colour legend for the foreground overlay (hide the others), where the scene supports legends."""
        import slicer

        legend_class = getattr(slicer, "vtkMRMLColorLegendDisplayNode", None)
        if legend_class is None:
            return
        scene, out = self.scene, self._out
        if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
            scene.RegisterNodeClass(legend_class())
        legend = out.legends.get(overlay)
        if legend is None or legend.GetScene() is None:
            legend = scene.AddNewNodeByClass("vtkMRMLColorLegendDisplayNode", f"{overlay_title(overlay)} legend")
            legend.SetAndObservePrimaryDisplayNode(node.GetDisplayNode())
            node.AddAndObserveDisplayNodeID(legend.GetID())
            out.legends[overlay] = legend
        legend.SetTitleText(overlay_title(overlay))
        for name, other in out.legends.items():
            other.SetVisibility(name == overlay)
