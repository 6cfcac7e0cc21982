"""The viewer's counterfactual action and similar-lesions panel (beside the lesion panel of :mod:`LesionXAILib.viewer.app`).

Counterfactual: the same Qt-free :class:`~LesionXAILib.slicer_app.jobs.JobRunner` as the Slicer module
runs :func:`LesionXAILib.session.counterfactual.compute_counterfactual` on a worker thread (progress and
Cancel like a lesion's explanation); the event loop polls it and the finished view is shown by the
shared :class:`~LesionXAILib.mrml.writer.SceneWriter` (counterfactual FLAIR as background, log-Jacobian
as overlay). The lesion worker and the counterfactual never run at once: both drive the same network.

Similar lesions: with ``lesionxai view --library LIB`` a :class:`~LesionXAILib.session.similar.LibraryLink`
finds the selected lesion's nearest library lesions (on the lesion worker, after its explanation); a
library of another model is refused once, with its message in the panel.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Optional

from LesionXAILib.errors import LesionXAIError

if TYPE_CHECKING:
    from LesionXAILib.viewer.app import LesionViewer

log = logging.getLogger("LesionXAILib.viewer")

COUNTERFACTUAL_TRIGGER = "lx_counterfactual"
EXPLANATION_TRIGGER = "lx_show_explanation"
POLL_S = 0.1


class CasePanels:
    """Counterfactual job and similar-lesions lookups of one viewer; every method but ``similar_for`` runs on the event loop."""

    def __init__(self, viewer: "LesionViewer") -> None:
        from LesionXAILib.slicer_app.jobs import JobRunner

        self.viewer = viewer
        self.jobs = JobRunner()
        self.library: Any = None  # session.similar.LibraryLink
        self.library_path = ""
        self.shown: Optional[dict[str, Any]] = None  # the counterfactual on show: lesion id, summary
        self.state = viewer.state
        self.state.update({
            "lx_cf_text": "", "lx_cf_shown": False, "lx_cf_busy": False, "lx_similar_enabled": False,
            "lx_similar_message": "", "lx_similar_rows": [], "lx_similar_query": "",
        })  # fmt: skip

    # ------------------------------------------------------------------ similar lesions
    def attach_library(self, path: str) -> str:
        """Open the library at ``path`` for the session's model; return (and show) the panel's message."""
        from LesionXAILib.session.similar import LibraryLink

        self.library_path = str(path)
        self.library = LibraryLink(path, self.viewer.session.model)
        message = self.library.error or f"Library {path}: {len(self.library.table)} lesions; select a lesion."
        with self.state:
            self.state.lx_similar_enabled = True
            self.state.lx_similar_message = message
        if self.library.error:
            log.error("lesion library refused: %s", self.library.error)
        return message

    def similar_for(self, lesion_id: int) -> Any:
        """Return the SimilarPanel of a lesion (worker thread or event loop; None without a library)."""
        from LesionXAILib.slicer_app.side_plans import similar_panel

        return similar_panel(self.library, self.viewer.session, lesion_id)

    def needs_lookup(self, lesion_id: int) -> bool:
        """Return True when the lesion's similar lesions are still to be looked up (on the lesion worker)."""
        return self.library is not None and not self.library.error and self.library.cached(self.viewer.session, lesion_id) is None

    def show_similar(self, lesion_id: int) -> None:
        """Fill the panel for the lesion on show (cached when the worker already looked it up)."""
        if self.library is None:
            return
        panel = self.library.cached(self.viewer.session, lesion_id) or self.similar_for(lesion_id)
        self.viewer.writer.show_similar(panel)
        self.state.lx_similar_message = f"Lesion {lesion_id}: {panel.message}" if panel.ok else panel.message
        self.state.lx_similar_rows = [r.to_dict() for r in panel.rows]
        from LesionXAILib.session.similar import png_data_uri

        self.state.lx_similar_query = png_data_uri(panel.query_thumbnail_png)

    # ------------------------------------------------------------------ counterfactual
    @property
    def busy(self) -> bool:
        """Return True while a counterfactual is computed."""
        return self.jobs.busy

    def request_counterfactual(self) -> None:
        """Start the selected lesion's counterfactual on the worker; say in the panel why not when it cannot start."""
        from LesionXAILib.counterfactual import CounterfactualSettings
        from LesionXAILib.session.counterfactual import compute_counterfactual

        viewer = self.viewer
        lesion_id = None if viewer.writer is None else viewer.writer.selected_id
        # the lesion worker (background precomputation included) and the search must not share the network:
        # forward hooks of one would record the other's activations
        reason = ("Select a lesion first: its counterfactual is computed." if lesion_id is None
                  else "A counterfactual is already being computed." if self.jobs.busy
                  else "Wait until the lesion explanations (and background precomputation) finish, or cancel them, "
                       "then ask for the counterfactual." if viewer.worker is None or not viewer.worker.wait_idle(0)
                  else "")  # fmt: skip
        if reason:
            with self.state:
                self.state.lx_error = reason
            return
        session = viewer.session

        def compute(progress: Any, cancel: Any) -> Any:
            return compute_counterfactual(session, lesion_id, CounterfactualSettings(), progress, cancel)

        self.jobs.submit("counterfactual", compute, apply=self._apply, on_error=self._failed, on_cancelled=self._cancelled)
        log.info("counterfactual of lesion %d started", lesion_id)
        with self.state:
            self.state.lx_error = ""
            self.state.lx_busy = True
            self.state.lx_cf_busy = True
            self.state.lx_progress = 0.0
            self.state.lx_progress_message = f"Counterfactual of lesion {lesion_id}…"
            self.state.lx_message = f"Searching the smallest change that flips lesion {lesion_id}."
        self._schedule()

    def cancel(self) -> None:
        """Cancel a running counterfactual (nothing when none runs)."""
        self.jobs.cancel()

    def _schedule(self) -> None:
        loop = self.viewer.loop
        if loop is not None and not loop.is_closed():
            loop.call_later(POLL_S, self._poll)

    def _poll(self) -> None:
        status = self.jobs.poll()  # applies the outcome (on this, the event loop's, thread) once finished
        if status is None or status.finished:
            return
        with self.state:
            self.state.lx_progress = round(100.0 * status.fraction, 1)
            if status.message:
                self.state.lx_progress_message = f"Counterfactual: {status.message}"
        self._schedule()

    def _done(self) -> None:
        self.state.lx_busy = False
        self.state.lx_cf_busy = False
        self.state.lx_progress_message = ""

    def _apply(self, view: Any) -> None:
        from LesionXAILib.viewer.panel import legend_view

        viewer = self.viewer
        with self.state:
            self._done()
            viewer.writer.show_counterfactual(view)
            self.shown = {"lesion_id": int(view.lesion_id), "summary": view.summary, "text": view.text}
            self.state.lx_cf_text = view.text
            self.state.lx_cf_shown = True
            self.state.lx_legend = legend_view(viewer.writer.counterfactual_legend())
            self.state.lx_message = (f"Counterfactual of lesion {view.lesion_id} shown: the changed FLAIR with its "
                                     "log-Jacobian (blue shrinkage, red growth).")  # fmt: skip
        viewer.render()
        log.info("counterfactual of lesion %d: %s", view.lesion_id, view.text.splitlines()[0])

    def _failed(self, exc: BaseException) -> None:
        log.error("counterfactual failed: %s: %s", type(exc).__name__, exc)
        from LesionXAILib.viewer.app import _one_line

        with self.state:
            self._done()
            self.state.lx_error = f"Counterfactual: {_one_line(exc)}"

    def _cancelled(self) -> None:
        with self.state:
            self._done()
            self.state.lx_message = "Counterfactual cancelled."

    def show_explanation(self) -> None:
        """Go back from the counterfactual to the selected lesion's explanation overlay over the FLAIR."""
        viewer = self.viewer
        if viewer.writer is None or viewer.writer.selected_id is None:
            return
        try:
            viewer.writer.set_overlay(viewer._good["lx_overlay"])
        except LesionXAIError as exc:
            with self.state:
                self.state.lx_error = str(exc)
            return
        self.forget()
        with self.state:
            viewer._refresh_legend()
        viewer.render()

    def forget(self) -> None:
        """The explanation layers are back (a lesion shown, an overlay chosen): the counterfactual is off screen."""
        self.shown = None
        self.state.lx_cf_shown = False

    def snapshot(self) -> dict[str, Any]:
        """Return the panels' state for the /lesionxai/state endpoint (with the slice views' layer names)."""
        from LesionXAILib.mrml.views import composite_nodes

        scene = self.viewer.scene
        composite = next(iter(composite_nodes(scene)), None)
        name = lambda node_id: None if not node_id else scene.GetNodeByID(node_id).GetName()  # noqa: E731
        return {
            "layers": None if composite is None else {"background": name(composite.GetBackgroundVolumeID()),
                                                      "foreground": name(composite.GetForegroundVolumeID())},
            "counterfactual": None if self.shown is None else {"lesion_id": self.shown["lesion_id"],
                                                               "flipped": bool(self.shown["summary"].get("flipped")),
                                                               "text": self.shown["text"]},
            "counterfactual_busy": self.jobs.busy,
            "similar": {"library": self.library_path, "message": self.state.lx_similar_message,
                        "rows": [{k: v for k, v in r.items() if k != "thumbnail"} for r in self.state.lx_similar_rows]},
        }  # fmt: skip
