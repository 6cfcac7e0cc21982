"""ModuleLogic: what the Slicer module's Logic does, Qt-free, on any scene (desktop Slicer, trame-slicer, slicer-core).

``LesionXAI/LesionXAI.py``'s ``LesionXAILogic`` holds one of these and only forwards to it, so the
headless tests exercise the same code paths as the desktop module. It maps the module's parameters
to :class:`SessionSettings`, keeps loaded models, keeps one :class:`LesionSession` (re-running it when
only settings change, so its output nodes are reused) and one result cache shared by all sessions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from LesionXAILib.errors import ParameterError
from LesionXAILib.session.cache import ResultCache
from LesionXAILib.mrml.session import LesionResult, LesionSession, RunInputs, SessionSettings

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


class ModuleLogic:
    """One scene's LesionXAI state: the current session, loaded models and the shared result cache."""

    def __init__(self, scene: Any, cache: Optional[ResultCache] = None) -> None:
        self.scene = scene
        self.cache = cache if cache is not None else ResultCache()
        self.session: Optional[LesionSession] = None
        self.lesion_fill = False  # lesions filled in 2D (False: outlines), kept across runs
        self._models: dict[str, tuple[Optional[float], Any]] = {}

    def model(self, model_path: Any = DEMO_MODEL, trust_model: bool = False) -> Any:
        """Return the LesionModel at ``model_path`` ('' = demo), loaded once and reloaded if the file changed.

        ``trust_model``: the user ticked "Trust model code", allowing a model that runs code when loaded (TorchScript).
        """
        from LesionXAILib.model_loading import load_model
        from LesionXAILib.resources import default_model_path

        key = model_key(model_path)
        path = default_model_path() if key == DEMO_MODEL else Path(key)
        mtime = os.path.getmtime(path) if os.path.exists(path) else None
        cached = self._models.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        model = load_model(None if key == DEMO_MODEL else path, trust=trust_model)
        self._models[key] = (mtime, model)
        return model

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
    ) -> LesionSession:
        """Segment the inputs and show the lesions; reuse the session (and its nodes) when only settings changed."""
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
    ) -> "RunPlan":
        """Read the inputs for a run (main thread; the scene is not changed): compute it off the GUI thread, then finish it.

        The model is loaded here (once per file; kept while it is unchanged) so that the worker only segments.
        """
        model = self.model(model_path, trust_model)
        session = self.session
        same = (
            session is not None
            and session.flair_node is flair_node
            and session.t1_node is t1_node
            and session.ground_truth_node is ground_truth_node
            and session.model is model
        )
        replaces = None
        if not same:
            replaces = session if session is not None and session.flair_node is flair_node else None
            session = LesionSession(self.scene, flair_node, t1_node, model, settings, ground_truth_node, cache=self.cache)
        assert session is not None
        return RunPlan(session, session.prepare_run(settings), replaces)

    def finish_run(self, plan: "RunPlan", result: Any) -> LesionSession:
        """Apply a computed run to the scene (main thread) and make its session the current one; return it."""
        if plan.replaces is not None and plan.replaces is self.session:
            plan.replaces.remove_outputs()  # same FLAIR, other inputs: replace its outputs rather than pile up
        plan.session.apply_run(plan.inputs, result)
        plan.session.set_lesion_fill(self.lesion_fill)
        self.session = plan.session
        return plan.session

    def set_lesion_fill(self, fill: bool) -> None:
        """Draw lesions filled (True) or as outlines (False) in 2D, now and for later runs."""
        self.lesion_fill = bool(fill)
        if self.session is not None and self.session.result is not None:
            self.session.set_lesion_fill(self.lesion_fill)

    def prepare_lesion(self, lesion_id: Any, overlay: Optional[str] = None) -> "LesionPlan":
        """Check a lesion selection (main thread): its id, the overlay to show and that the inputs did not change."""
        session = self.require_session()
        reason = session.needs_run()
        if reason:
            raise ParameterError(reason)
        if session.inputs_changed():
            raise ParameterError("an input volume changed since the lesions were found; find them again")
        try:
            number = int(lesion_id)
        except (TypeError, ValueError):
            number = -1
        if number not in session.instance_ids:
            raise ParameterError(f"no lesion {lesion_id!r} in this segmentation")
        return LesionPlan(session, number, self.resolve_overlay(overlay))

    def finish_lesion(self, plan: "LesionPlan", result: LesionResult) -> LesionResult:
        """Show a lesion computed off the GUI thread (main thread); return it."""
        if plan.session is not self.session:
            raise ParameterError("the lesions were found again while this one was computed; select it again")
        plan.session.show_lesion(result, plan.overlay)
        return result

    def combo_overlay(self, name: Optional[str]) -> Optional[str]:
        """Return the overlay to show for a combo-box choice, or None to leave the display alone.

        Slicer's GUI binding clears and refills the combo on every module entry, which reports index 0
        (or an empty text) before the saved choice returns; with no lesion shown, or a map these settings
        do not produce, there is nothing to switch and that is not an error.
        """
        session = self.session
        if session is None or session.result is None or session.selected_id is None or not name:
            return None
        if name not in session.available_overlays():
            return None
        return None if name == session.overlay else name

    def require_session(self) -> LesionSession:
        """Return the current session or raise a clear error before the first run."""
        if self.session is None or self.session.result is None:
            raise ParameterError("run LesionXAI first (Apply), then select a lesion")
        return self.session

    def lesion_at(self, ras: Sequence[float]) -> Optional[int]:
        """Return the lesion id under a RAS point (None on background, or before any run)."""
        if self.session is None:
            return None
        return self.session.lesion_at(ras)

    def select_lesion(self, lesion_id: int, overlay: Optional[str] = None, progress: Any = None, cancel: Any = None) -> LesionResult:
        """Compute (or take from the cache) and show one lesion."""
        return self.require_session().select_lesion(lesion_id, overlay, progress, cancel)

    def select_at(self, ras: Sequence[float], overlay: Optional[str] = None, progress: Any = None, cancel: Any = None) -> Optional[LesionResult]:
        """Select the lesion under a RAS point (a click); return None and change nothing on background."""
        lesion_id = self.lesion_at(ras)
        if lesion_id is None:
            return None
        return self.select_lesion(lesion_id, overlay, progress, cancel)

    def resolve_overlay(self, overlay: Optional[str]) -> str:
        """Return ``overlay`` if the current settings produce it, else the session's default (GUI choices may be stale)."""
        session = self.require_session()
        return overlay if overlay in session.available_overlays() else session.default_overlay()

    def set_overlay(self, overlay: str) -> None:
        """Switch the foreground overlay of the selected lesion."""
        self.require_session().set_overlay(overlay)

    def table_rows(self) -> list[dict]:
        """Return the instance table rows (empty before any run)."""
        return self.session.table_rows() if self.session is not None and self.session.result is not None else []

    def legend(self, overlay: str) -> dict:
        """Return the colour bar description of an overlay of the selected lesion."""
        return self.require_session().legend(overlay)

    def clear(self) -> None:
        """Forget the session (its nodes stay in the scene) and the cache, e.g. when the scene is closed."""
        self.session = None
        self.cache.clear()


@dataclass
class RunPlan:
    """A run read from the scene (``ModuleLogic.prepare_run``): ``compute`` it anywhere, then ``finish_run`` it."""

    session: LesionSession
    inputs: RunInputs
    replaces: Optional[LesionSession] = None  # the session whose outputs the finished run replaces

    def compute(self, progress: Any = None, cancel: Any = None) -> Any:
        """Segment (no MRML: a worker thread may run this); return the SegmentationResult."""
        return self.session.compute_run(self.inputs, progress, cancel)


@dataclass
class LesionPlan:
    """A checked lesion selection (``ModuleLogic.prepare_lesion``): ``compute`` it anywhere, then ``finish_lesion``."""

    session: LesionSession
    lesion_id: int
    overlay: str

    def compute(self, progress: Any = None, cancel: Any = None) -> LesionResult:
        """Explain the lesion and probe its context (no MRML: a worker thread may run this)."""
        return self.session.compute_lesion(self.lesion_id, progress, cancel)


# ---------------------------------------------------------------- text for the module panel
DISPLAY_COLUMNS = (
    ("id", "Lesion"), ("status", "Status"), ("volume_mm3", "Volume (mm³)"), ("mean_probability", "Mean p"),
    ("flair_share", "FLAIR share"), ("context_needed_mm", "Context (mm)"),
)  # fmt: skip


def format_value(key: str, value: Any) -> str:
    """Return a table cell: '' for not yet computed, '> max' style text for context beyond the largest radius."""
    if value is None:
        return ""
    if key == "context_needed_mm":
        return "beyond probe" if value == float("inf") else f"{float(value):g}"
    if key == "volume_mm3":
        return f"{float(value):.1f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def display_table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """Return (column titles, rows of cell texts) for the module's lesion table widget."""
    titles = [title for _, title in DISPLAY_COLUMNS]
    return titles, [[format_value(key, row.get(key)) for key, _ in DISPLAY_COLUMNS] for row in rows]


def statistics_text(stats: dict) -> str:
    """Return a few lines describing one lesion's statistics (for the module panel)."""
    lines = [f"<b>{stats.get('name') or 'Lesion ' + str(stats['id'])}</b>"]
    if stats.get("mean_probability") is not None:
        lines.append(f"mean probability {stats['mean_probability']:.3f}")
    if stats.get("flair_share") is not None:
        lines.append(f"FLAIR share of {stats.get('flair_share_method') or 'attribution'}: {stats['flair_share']:.0%}")
    if stats.get("context_description"):
        lines.append("context probe: " + stats["context_description"])
    return "<br>".join(lines)


def legend_text(legend: dict) -> str:
    """Return a one-line description of an overlay's colour scale."""
    if legend.get("units") == "mm":
        return f"{legend['title']}: rings every mm, red (lesion) to blue ({legend['max']:g} mm)"
    low = legend.get("transparent_below")
    below = f"; |value| < {low:.3g} transparent" if low else ""
    return f"{legend['title']}: {legend['min']:.3g} … {legend['max']:.3g} {legend['units']}{below}"
