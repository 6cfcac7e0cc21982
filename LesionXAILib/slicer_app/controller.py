"""ModuleController: what the Slicer module's Logic holds, Qt-free, on any scene (desktop Slicer, slicer-core).

It keeps the scene's :class:`~LesionXAILib.session.core.Session` and the
:class:`~LesionXAILib.mrml.writer.SceneWriter` that shows it (re-running the same pair when only
settings change, so the output nodes are reused), loaded models, and one result cache shared by every
session of the scene. Each long task is split for the module's job runner: ``prepare_*`` reads the
scene (main thread), the plan's ``compute`` runs on a worker (no MRML), ``finish_*`` writes the scene
(main thread) and returns everything the panel shows, so the Widget makes one call per step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from LesionXAILib.errors import ParameterError
from LesionXAILib.mrml.scene_inputs import SceneInputs
from LesionXAILib.mrml.writer import SceneWriter
from LesionXAILib.session.cache import ResultCache
from LesionXAILib.session.core import Session
from LesionXAILib.session.results import LesionResult
from LesionXAILib.session.settings import RunInputs, SessionSettings
from LesionXAILib.slicer_app.panel import display_table, legend_text, statistics_text
from LesionXAILib.slicer_app.side_plans import CounterfactualPanel, CounterfactualPlan, similar_panel

DEMO_MODEL = ""  # empty model path = the shipped demo model


def settings_from_parameters(
    use_model_threshold: bool = True,
    threshold: float = 0.5,
    min_size: float = 3,
    smoothgrad: bool = True,
    gradcampp: bool = True,
    samples: int = 16,
    seed: int = 0,
    max_radius_mm: float = 15.0,
) -> SessionSettings:
    """Return SessionSettings from the module's parameter-node values (checked; a clear error names the bad one)."""
    methods = tuple(m for m, on in (("smoothgrad", smoothgrad), ("gradcampp", gradcampp)) if on)
    return SessionSettings(
        threshold=None if use_model_threshold else float(threshold),
        min_size=float(min_size),
        methods=methods,
        samples=int(samples),
        seed=int(seed),
        max_radius_mm=float(max_radius_mm),
    )


def model_key(model_path: Any) -> str:
    """Return the canonical key of a model path ('' for the demo model; '.' from an empty path widget counts as empty)."""
    text = "" if model_path is None else str(model_path).strip()
    if text in ("", "."):
        return DEMO_MODEL
    return str(Path(text).expanduser().resolve())


@dataclass
class RunPlan:
    """A run read from the scene (``prepare_run``): ``compute`` it anywhere, then ``finish_run`` it."""

    writer: SceneWriter
    inputs: RunInputs
    replaces: Optional[SceneWriter] = None  # the writer whose outputs the finished run replaces

    def compute(self, progress: Any = None, cancel: Any = None) -> Any:
        """Segment (no MRML: a worker thread may run this); return the SegmentationResult."""
        return self.writer.session.compute_run(self.inputs, progress, cancel)


@dataclass
class LesionPlan:
    """A checked lesion selection (``prepare_lesion``): ``compute`` it anywhere, then ``finish_lesion``."""

    session: Session
    lesion_id: int
    overlay: str
    library: Any = None  # session.similar.LibraryLink when a lesion library is chosen
    similar: Any = None  # its SimilarPanel for this lesion, once computed

    def compute(self, progress: Any = None, cancel: Any = None) -> LesionResult:
        """Explain the lesion, probe its context and find its similar library lesions (no MRML: a worker thread may run this)."""
        result = self.session.compute_lesion(self.lesion_id, progress, cancel)
        self.similar = similar_panel(self.library, self.session, self.lesion_id)
        return result


@dataclass
class LesionPanel:
    """What the module panel shows after a lesion was shown: its id, overlay, statistics, legend and table."""

    lesion_id: int
    overlay: str
    statistics_text: str
    legend_text: str
    table: tuple[list[str], list[list[str]]]
    similar: Any = None  # session.similar.SimilarPanel (None without a library)


class ModuleController:
    """One scene's LesionXAI state: the current Session and its SceneWriter, loaded models, the shared cache."""

    def __init__(self, scene: Any, cache: Optional[ResultCache] = None) -> None:
        self.scene = scene
        self.cache = cache if cache is not None else ResultCache()
        self.session: Optional[Session] = None
        self.writer: Optional[SceneWriter] = None
        self.lesion_fill = False  # lesions filled in 2D (False: outlines), kept across runs
        self._models: dict[str, tuple[Optional[float], Any]] = {}
        self.library_path = ""  # lesion library folder for the similar-lesions panel ('' = none)
        self._library: Any = None  # its LibraryLink for the current model, opened on first use

    def model(self, model_path: Any = DEMO_MODEL, trust_model: bool = False) -> Any:
        """Return the LesionModel at ``model_path`` ('' = demo; a LesionModel: itself), loaded once and reloaded if the file changed.

        ``trust_model``: the user ticked "Trust model code", allowing a model that runs code when loaded (TorchScript).
        """
        from LesionXAILib.lesion_model import LesionModel
        from LesionXAILib.model_loading import load_model
        from LesionXAILib.resources import default_model_path

        if isinstance(model_path, LesionModel):  # a model built in a script (or a test) is used as it is
            return model_path.eval()
        key = model_key(model_path)
        path = default_model_path() if key == DEMO_MODEL else Path(key)
        mtime = os.path.getmtime(path) if os.path.exists(path) else None
        cached = self._models.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        model = load_model(None if key == DEMO_MODEL else path, trust=trust_model)
        self._models[key] = (mtime, model)
        return model

    # ------------------------------------------------------------------ finding the lesions
    def run(
        self,
        flair_node: Any,
        t1_node: Any,
        ground_truth_node: Any = None,
        model_path: Any = DEMO_MODEL,
        settings: SessionSettings = SessionSettings(),
        progress: Any = None,
        cancel: Any = None,
        trust_model: bool = False,
    ) -> SceneWriter:
        """Segment the inputs and show the lesions; reuse the writer (and its nodes) when only settings changed."""
        plan = self.prepare_run(flair_node, t1_node, ground_truth_node, model_path, settings, trust_model)
        return self.finish_run(plan, plan.compute(progress, cancel))

    def prepare_run(
        self,
        flair_node: Any,
        t1_node: Any,
        ground_truth_node: Any = None,
        model_path: Any = DEMO_MODEL,
        settings: SessionSettings = SessionSettings(),
        trust_model: bool = False,
    ) -> RunPlan:
        """Read the inputs for a run (main thread; the scene is not changed): compute it off the GUI thread, then finish it.

        The model is loaded here (once per file; kept while it is unchanged) so that the worker only segments.
        """
        model = self.model(model_path, trust_model)
        inputs = SceneInputs(self.scene, flair_node, t1_node, ground_truth_node)
        writer = self.writer
        replaces = None
        if writer is None or not writer.inputs.same_nodes(inputs) or writer.session.model is not model:
            replaces = writer if writer is not None and writer.flair_node is flair_node else None
            writer = SceneWriter(Session(model, settings, self.cache), inputs)
        return RunPlan(writer, writer.prepare_run(settings), replaces)

    def finish_run(self, plan: RunPlan, result: Any) -> SceneWriter:
        """Apply a computed run to the scene (main thread) and make its session the current one; return its writer."""
        if plan.replaces is not None and plan.replaces is self.writer:
            plan.replaces.remove_outputs()  # same FLAIR, other inputs: replace its outputs rather than pile up
        plan.writer.apply_run(plan.inputs, result)
        plan.writer.set_lesion_fill(self.lesion_fill)
        self.writer, self.session = plan.writer, plan.writer.session
        return plan.writer

    def has_results(self) -> bool:
        """Return True once a run was applied (lesions can be selected)."""
        return self.session is not None and self.session.result is not None

    def require_writer(self) -> SceneWriter:
        """Return the current writer or raise a clear error before the first run."""
        if not self.has_results():
            raise ParameterError("run LesionXAI first (Apply), then select a lesion")
        assert self.writer is not None
        return self.writer

    # ------------------------------------------------------------------ one lesion
    def prepare_lesion(self, lesion_id: Any, overlay: Optional[str] = None) -> LesionPlan:
        """Check a lesion selection (main thread): its id, the overlay to show and that the inputs did not change."""
        writer = self.require_writer()
        session = writer.session
        reason = session.needs_run()
        if reason:
            raise ParameterError(reason)
        if writer.inputs_changed():
            raise ParameterError("an input volume changed since the lesions were found; find them again")
        try:
            number = int(lesion_id)
        except (TypeError, ValueError):
            number = -1
        if number not in session.instance_ids:
            raise ParameterError(f"no lesion {lesion_id!r} in this segmentation")
        return LesionPlan(session, number, self.resolve_overlay(overlay), self.library_link())

    def finish_lesion(self, plan: LesionPlan, result: LesionResult) -> LesionPanel:
        """Show a lesion computed off the GUI thread (main thread); return what the panel shows for it."""
        if plan.session is not self.session:
            raise ParameterError("the lesions were found again while this one was computed; select it again")
        writer = self.require_writer()
        writer.show_lesion(result, plan.overlay)
        if plan.similar is not None:
            writer.show_similar(plan.similar)
        return LesionPanel(
            int(result.lesion_id), writer.overlay, statistics_text(self.session.lesion_statistics(result.lesion_id)),
            self.legend_text(writer.overlay), display_table(self.session.table_rows()), plan.similar,
        )  # fmt: skip

    def select_lesion(self, lesion_id: int, overlay: Optional[str] = None, progress: Any = None, cancel: Any = None) -> LesionResult:
        """Compute (or take from the cache) and show one lesion, on this thread (scripts, self-test)."""
        return self.require_writer().select_lesion(lesion_id, overlay, progress, cancel)

    def lesion_at(self, ras: Sequence[float]) -> Optional[int]:
        """Return the lesion id under a RAS point (None on background, or before any run)."""
        return self.session.lesion_at(ras) if self.session is not None else None

    def select_at(self, ras: Sequence[float], overlay: Optional[str] = None, progress: Any = None, cancel: Any = None) -> Optional[LesionResult]:
        """Select the lesion under a RAS point (a click); return None and change nothing on background."""
        lesion_id = self.lesion_at(ras)
        if lesion_id is None:
            return None
        return self.select_lesion(lesion_id, overlay, progress, cancel)

    def selected_lesion(self) -> Optional[int]:
        """Return the id of the lesion on show (None before)."""
        return self.writer.selected_id if self.has_results() and self.writer is not None else None

    # ------------------------------------------------------------------ counterfactual
    def prepare_counterfactual(self, lesion_id: Any = None, settings: Any = None) -> CounterfactualPlan:
        """Check a counterfactual request (main thread): the lesion (default: the one on show) and the inputs."""
        from LesionXAILib.counterfactual import CounterfactualSettings

        chosen = self.selected_lesion() if lesion_id in (None, 0, "") else lesion_id
        if chosen is None:
            raise ParameterError("select a lesion first: its counterfactual is computed")
        plan = self.prepare_lesion(chosen)
        return CounterfactualPlan(plan.session, plan.lesion_id, settings if settings is not None else CounterfactualSettings())

    def finish_counterfactual(self, plan: CounterfactualPlan, view: Any) -> CounterfactualPanel:
        """Show a counterfactual computed off the GUI thread (main thread); return what the panel shows for it."""
        if plan.session is not self.session:
            raise ParameterError("the lesions were found again while the counterfactual was computed; compute it again")
        writer = self.require_writer()
        writer.show_counterfactual(view)
        return CounterfactualPanel(view.lesion_id, view.text, legend_text(writer.counterfactual_legend()), view.summary)

    def counterfactual(self, lesion_id: Any = None, settings: Any = None, progress: Any = None, cancel: Any = None) -> CounterfactualPanel:
        """Compute and show a lesion's counterfactual on this thread (scripts, self-test)."""
        plan = self.prepare_counterfactual(lesion_id, settings)
        return self.finish_counterfactual(plan, plan.compute(progress, cancel))

    # ------------------------------------------------------------------ similar lesions
    def set_library(self, path: Any) -> str:
        """Use the lesion library at ``path`` ('' or '.': none) for the similar-lesions panel; return the panel's message."""
        text = "" if path is None else str(path).strip()
        self.library_path = "" if text in ("", ".") else text
        self._library = None
        link = self.library_link()
        if link is None:
            return "" if not self.library_path else "the library is checked against the model when the lesions are found"
        return link.error or f"library with {len(link.table)} lesions"

    def library_link(self) -> Any:
        """Return the LibraryLink of the chosen library for the current session's model (None: no library or no run)."""
        from LesionXAILib.session.similar import LibraryLink

        if not self.library_path or self.session is None:
            return None
        model = self.session.model
        link = self._library
        if link is None or link.model is not model or str(link.path) != str(Path(self.library_path).expanduser()):
            link = self._library = LibraryLink(self.library_path, model)
        return link

    def similar(self, lesion_id: Any = None) -> Any:
        """Return (and write into the table node) the similar-lesions panel of a lesion (default: the one on show)."""
        chosen = self.selected_lesion() if lesion_id in (None, 0, "") else lesion_id
        if chosen is None:
            raise ParameterError("select a lesion first: its similar lesions are looked up")
        plan = self.prepare_lesion(chosen)
        panel = similar_panel(self.library_link(), plan.session, plan.lesion_id)
        if panel is not None:
            self.require_writer().show_similar(panel)
        return panel

    # ------------------------------------------------------------------ display
    def resolve_overlay(self, overlay: Optional[str]) -> str:
        """Return ``overlay`` if the current settings produce it, else the session's default (GUI choices may be stale)."""
        session = self.require_writer().session
        return overlay if overlay in session.available_overlays() else session.default_overlay()

    def combo_overlay(self, name: Optional[str]) -> Optional[str]:
        """Return the overlay to show for a combo-box choice, or None to leave the display alone.

        Slicer's GUI binding clears and refills the combo on every module entry, which reports index 0
        (or an empty text) before the saved choice returns; with no lesion shown, or a map these settings
        do not produce, there is nothing to switch and that is not an error.
        """
        if not self.has_results() or self.writer.selected_id is None or not name:
            return None
        if name not in self.session.available_overlays():
            return None
        return None if name == self.writer.overlay else name

    def set_overlay(self, overlay: str) -> str:
        """Switch the foreground overlay of the selected lesion; return its legend line."""
        self.require_writer().set_overlay(overlay)
        return self.legend_text(overlay)

    def legend_text(self, overlay: str) -> str:
        """Return the one-line colour scale of an overlay of the selected lesion."""
        return legend_text(self.require_writer().legend(overlay))

    def set_lesion_fill(self, fill: bool) -> None:
        """Draw lesions filled (True) or as outlines (False) in 2D, now and for later runs."""
        self.lesion_fill = bool(fill)
        if self.has_results():
            self.writer.set_lesion_fill(self.lesion_fill)

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Return (column titles, cell texts) of the lesion table (no rows before any run)."""
        return display_table(self.session.table_rows() if self.has_results() else [])

    def clear(self) -> None:
        """Forget the session and writer (their nodes stay in the scene) and the cache, e.g. when the scene is closed."""
        self.session = None
        self.writer = None
        self.cache.clear()
