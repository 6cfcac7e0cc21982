"""The browser viewer application: trame-slicer slice views over one MRML scene, driven by a Session.

It drives the same scene-free :class:`LesionXAILib.session.core.Session` as the Slicer module: which
lesion is under a click (``lesion_at``), its explanation and context probe (``compute_lesion``, on a
worker thread), statistics and table rows. The same :class:`LesionXAILib.mrml.writer.SceneWriter` puts
the results into the scene on the event loop: overlays, composite nodes and slice jumps
(``show_lesion`` / ``set_overlay``), opacity, 3D surfaces and legends. This class connects browser
events to those calls and mirrors the results into trame state.

A fresh lesion arrives in stages (the session's progressive ``compute_lesion``): the explainer of the
chosen overlay first, shown at once, then the other explainers and the context probe, which complete
the panel and the curve.

Over 400 lines on purpose: one class follows one event flow (browser event -> session -> worker ->
event loop -> writer -> trame state) whose callbacks share the viewer's state; the parts that stand
alone live beside it (``clicks``, ``requests``, ``security``, ``panel``, ``layout``, ``telemetry``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from typing import Any, Callable, Optional

from LesionXAILib.errors import LesionXAIError
from LesionXAILib.viewer.clicks import Click, ViewClicks
from LesionXAILib.viewer.headless import configure_offscreen, prepare_view, render_window_class
from LesionXAILib.viewer.requests import LesionRequest, LesionWorker
from LesionXAILib.viewer.security import StateGuard, check_opacity, new_secret, sort_checker
from LesionXAILib.viewer.telemetry import Timings, memory_mb, slice_views_snapshot

log = logging.getLogger("LesionXAILib.viewer")

DEFAULT_OVERLAY = "smoothgrad_flair"
DEFAULT_OPACITY = 0.7  # as the bridge's default foreground opacity
LAYOUT_ID = "lesionxai"
_SERVER_NAMES = itertools.count(1)


class LesionViewer:
    """A trame server showing one subject in axial/coronal/sagittal slice views (+ optional 3D) with a lesion panel."""

    def __init__(self, server: Any = None, show_3d: bool = False, multisamples: int = 0, title: str = "LesionXAI") -> None:
        configure_offscreen()
        from trame.app import get_server
        from trame_slicer import module as trame_slicer_module
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        from LesionXAILib.viewer import layout as page_layout

        # a server of its own (not trame's process-wide default), so that building a second viewer starts clean
        self.server = server if server is not None else get_server(f"lesionxai-viewer-{next(_SERVER_NAMES)}", client_type="vue3")
        self.server.enable_module(trame_slicer_module)
        self.state = self.server.state
        self.slicer_app = SlicerApp()
        self.scene = self.slicer_app.scene
        self.show_3d = bool(show_3d)
        register_rca_factories(
            self.slicer_app.view_manager,
            self.server,
            slice_view_ui_f=page_layout.slice_view_ui,
            three_d_view_ui_f=page_layout.three_d_view_ui,
        )
        self.layout_manager = LayoutManager(self.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT_ID, _view_layout(self.show_3d))
        self.layout_manager.set_layout(LAYOUT_ID)
        for view in self.slicer_app.view_manager.get_views():
            prepare_view(view, multisamples)
        for view in self.slice_views():
            # the browser reports each view's size only once it connects: fit the anatomy to the real size
            view.interactor().AddObserver("WindowResizeEvent", self._on_view_resized, -1.0)  # after trame-slicer resizes the slice node
        self.detectors = [
            ViewClicks(view.get_singleton_tag(), view.interactor(), view.get_view_node, self.on_click).attach()
            for view in self.slice_views()
        ]
        self.session: Any = None  # LesionXAILib.session.core.Session: every lesion question
        self.writer: Any = None  # LesionXAILib.mrml.writer.SceneWriter: puts the session's answers into the scene
        self.worker: Optional[LesionWorker] = None
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.timings = Timings()
        self.clicks = 0
        self.last_click: Optional[dict[str, Any]] = None
        self.pending_id: Optional[int] = None
        self.url: Optional[str] = None
        self.secret = new_secret()  # per launch: the page gets it in its URL, other sites never see it
        self.bind_host = ""  # the --host given (serve() sets it): a name the Host header may carry
        self._good: dict[str, Any] = {"lx_overlay": DEFAULT_OVERLAY, "lx_opacity": DEFAULT_OPACITY}
        self.state_guard = self._make_state_guard()
        self.refused: list[dict[str, str]] = []  # client values refused (latest 50; tests read them)
        self.ready = threading.Event()
        self.cancelled: list[int] = []  # lesion ids whose computation a newer request cancelled (latest 50)
        self.precomputed: list[int] = []  # lesion ids computed in the background
        self._precompute_count = 0
        self._request_started: dict[int, float] = {}
        self._on_ready_callbacks: list[Callable[[str], None]] = []
        self._overlay_choice = DEFAULT_OVERLAY
        self._init_state()
        from LesionXAILib.viewer.cases import CasePanels

        self.cases = CasePanels(self)  # counterfactual action and similar-lesions panel
        self.page = page_layout.build_page(self, title)
        self.server.controller.on_server_ready.add(self._on_server_ready)
        self.server.controller.on_server_bind.add(self._on_server_bind)

    # ------------------------------------------------------------------ setup

    def slice_views(self) -> list:
        """Return the trame-slicer slice views (Red axial, Green coronal, Yellow sagittal)."""
        return self.slicer_app.view_manager.get_slice_views()

    def view(self, name: str) -> Any:
        """Return the view whose singleton tag is ``name`` (e.g. 'Red')."""
        return self.slicer_app.view_manager.get_view(name)

    def _init_state(self) -> None:
        from LesionXAILib.viewer.panel import table_headers

        self.state.update(
            {
                "trame__title": "LesionXAI viewer",
                "lx_summary": "",
                "lx_title": "No lesion selected",
                "lx_status": "",
                "lx_status_color": "grey",
                "lx_message": "Click a lesion (press and release without dragging) or pick a row of the table.",
                "lx_selected_id": None,
                "lx_busy": False,
                "lx_progress": 0.0,
                "lx_progress_message": "",
                "lx_error": "",
                "lx_overlay": DEFAULT_OVERLAY,
                "lx_overlay_items": [],
                "lx_opacity": DEFAULT_OPACITY,
                "lx_legend": {"gradient": "none", "min": "", "max": "", "units": "", "colormap": ""},
                "lx_stats": [],
                "lx_curve_svg": "",
                "lx_headers": table_headers(),
                "lx_rows": [],
            }
        )
        self.state.change("lx_overlay")(self._overlay_changed)
        self.state.change("lx_opacity")(self._opacity_changed)

    def attach_session(self, writer: Any, summary: str = "") -> None:
        """Use ``writer`` (already run) and its session for every lesion question; fill the table and fit the views."""
        from LesionXAILib.viewer.panel import overlay_items

        self.writer = writer
        self.session = session = writer.session
        self.worker = LesionWorker(
            self._compute,
            self._post,
            on_result=self._on_result,
            on_error=self._on_error,
            on_progress=self._on_progress,
            on_cancelled=self._on_cancelled,
            on_background=self._on_background,
            on_partial=self._on_partial,
        )
        names = session.available_overlays()
        overlay = self.state.lx_overlay if self.state.lx_overlay in names else session.default_overlay()
        self._overlay_choice = overlay
        self._good["lx_overlay"] = overlay
        writer.set_overlay_opacity(float(self._good["lx_opacity"]))
        with self.state:
            self.state.lx_overlay_items = overlay_items(names)
            self.state.lx_overlay = overlay
            self.state.lx_summary = summary
            self._refresh_table()
            self._refresh_legend()
        if self.show_3d:
            self._show_lesions_in_3d()
        for view in self.slicer_app.view_manager.get_views():
            view.reset_view()

    def _show_lesions_in_3d(self) -> None:
        """Make the lesion segments visible in the 3D view (closed surfaces, built by the bridge)."""
        t = time.perf_counter()
        self.writer.show_in_3d()
        log.info("lesion surfaces for the 3D view in %.2f s", time.perf_counter() - t)

    # --------------------------------------------------------------- lifecycle

    def _make_state_guard(self) -> StateGuard:
        from LesionXAILib.viewer.panel import TABLE_COLUMNS

        def overlay(value: Any) -> str:
            names = self.session.available_overlays() if self.session is not None else (self._good["lx_overlay"],)
            if not isinstance(value, str) or value not in names:
                raise ValueError(f"unknown overlay {str(value)[:40]!r} (available: {', '.join(names)})")
            return value

        return StateGuard(
            {"lx_overlay": overlay, "lx_opacity": check_opacity, "lx_sort": sort_checker(k for k, _ in TABLE_COLUMNS)}
        )

    def _on_server_bind(self, wslink_server: Any) -> None:
        from LesionXAILib.viewer.security import guard_middleware, harden_wslink
        from LesionXAILib.viewer.server import add_routes

        add_routes(wslink_server.app, self)
        wslink_server.app.middlewares.append(guard_middleware(self.bind_host))
        harden_wslink(wslink_server, self.state_guard, self._on_client_refused, self._on_client_error)

    def _on_client_refused(self, refused: list[tuple[str, str]]) -> None:
        """Client values the guard refused: say why in the panel and push the last good values back."""
        for key, reason in refused:
            log.warning("refused client value for %s: %s", key or "?", reason)
        self.refused = (self.refused + [{"key": k, "reason": r} for k, r in refused])[-50:]
        with self.state:
            self.state.lx_error = "Refused: " + "; ".join(f"{k}: {r}" if k else r for k, r in refused)[:300]
        keys = [k for k, _ in refused if k in self.state_guard.checkers]
        if keys:
            self.server.force_state_push(*keys)

    def _on_client_error(self, name: str, exc: BaseException) -> None:
        """A client call failed (logged with its traceback by the guard): one line in the panel."""
        with self.state:
            self.state.lx_busy = False
            self.state.lx_error = _one_line(exc)

    def _on_server_ready(self, **_: Any) -> None:
        self.loop = asyncio.get_event_loop()
        for view in self.slicer_app.view_manager.get_views():
            view.reset_view()
        self.ready.set()
        if self._precompute_count:
            self.precompute(self._precompute_count)

    def _on_view_resized(self, *_: Any) -> None:
        """Fit every slice view to the anatomy after a resize, until a lesion is selected (then keep the jump)."""
        if self.session is not None and self.writer.selected_id is None and self.pending_id is None:
            for view in self.slice_views():
                view.fit_view_to_content()

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the server's event loop (the only thread that touches MRML and trame state)."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        """Stop the worker and observers (the server itself is stopped by its owner)."""
        if self.worker is not None:
            self.worker.close()
        for detector in self.detectors:
            detector.detach()

    # ----------------------------------------------------------- interaction

    def on_click(self, click: Click) -> None:
        """Handle a click on a slice view: ask the bridge which lesion is there and select it (or say none is)."""
        t0, wall0 = time.perf_counter(), time.time()
        self.clicks += 1
        lesion_id = self.session.lesion_at(click.ras) if self.session is not None else None
        self.last_click = {
            "view": click.view,
            "x": click.x,
            "y": click.y,
            "ras": list(click.ras),
            "lesion_id": lesion_id,
            "wall_time": wall0,  # when the click event reached the server (the browser's mouse-up is earlier)
            "serial": self.clicks,
        }
        log.info(
            "click %s at (%.0f, %.0f) RAS (%.1f, %.1f, %.1f) -> %s",
            click.view, click.x, click.y, *click.ras, f"lesion {lesion_id}" if lesion_id is not None else "no lesion",
        )  # fmt: skip
        if lesion_id is None:
            with self.state:
                r, a, s = click.ras
                self.state.lx_message = f"No lesion at RAS ({r:.1f}, {a:.1f}, {s:.1f})."
            return
        self.select(int(lesion_id), t0)

    def select_from_table(self, lesion_id: Any) -> None:
        """Select a lesion from its table row (exactly what a click on it does); a bad id is a panel error."""
        t0 = time.perf_counter()
        ids = [] if self.session is None else [int(i) for i in self.session.instance_ids]
        if isinstance(lesion_id, bool) or not isinstance(lesion_id, (int, float, str)):
            lesion_id = None
        try:
            number = int(lesion_id)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is None or number not in ids:
            log.warning("table selection of an unknown lesion %r", lesion_id)
            with self.state:
                self.state.lx_error = f"No lesion {str(lesion_id)[:40]!r} in this subject."
            return
        self.select(number, t0)

    def select(self, lesion_id: int, t0: Optional[float] = None) -> None:
        """Select lesion ``lesion_id``: show it now if cached, else compute it on the worker and show it when done.

        Errors the bridge raises on purpose (unknown lesion, inputs changed, ...) are shown in the panel.
        """
        try:
            self._select(lesion_id, time.perf_counter() if t0 is None else t0)
        except LesionXAIError as exc:
            log.error("lesion %s: %s", lesion_id, exc)
            with self.state:
                self.state.lx_busy = False
                self.state.lx_error = f"Lesion {lesion_id}: {exc}"

    def _select(self, lesion_id: int, t0: float) -> None:
        if self.cases.busy:  # both drive the same network: one at a time
            raise LesionXAIError("a counterfactual is being computed: wait for it or cancel it")
        stats = self.session.lesion_statistics(lesion_id)
        self.pending_id = lesion_id
        with self.state:
            self._show_header(stats)
            self.state.lx_error = ""
        # a cached lesion shows at once, unless its library lookup is still to run (on the worker: one network user)
        if self.session.is_cached(lesion_id) and not self.cases.needs_lookup(lesion_id):
            assert self.worker is not None
            self.worker.cancel()  # an older fresh request must not replace this selection later
            self.timings.click_to_selection_s = time.perf_counter() - t0
            result = self.session.compute_lesion(lesion_id)
            self._show(result, t0, compute_s=0.0)
            return
        assert self.worker is not None
        request = self.worker.submit(lesion_id)
        self._request_started[request.serial] = t0
        self.timings.click_to_selection_s = time.perf_counter() - t0
        with self.state:
            self.state.lx_busy = True
            self.state.lx_progress = 0.0
            self.state.lx_progress_message = f"Explaining lesion {lesion_id}…"
            self.state.lx_message = f"Computing lesion {lesion_id}: explanations and context probe."

    def precompute_on_ready(self, count: int) -> None:
        """Start :meth:`precompute` once the server runs (results are delivered through its event loop)."""
        self._precompute_count = max(int(count), 0)
        if self.ready.is_set():
            self.precompute(self._precompute_count)

    def precompute(self, count: int) -> list[int]:
        """Compute up to ``count`` lesions (largest first) in the background while idle; return their ids."""
        if self.worker is None or count <= 0:
            return []
        rows = sorted(self.session.table_rows(), key=lambda r: (-(r.get("voxels") or 0), r["id"]))
        ids = [int(r["id"]) for r in rows[:count]]
        self.worker.prefetch(ids, skip=self.session.is_cached)
        log.info("precomputing %d lesion(s) in the background: %s", len(ids), ", ".join(map(str, ids)))
        return ids

    def cancel(self) -> None:
        """Cancel the lesion computation or counterfactual in progress (the current selection stays)."""
        if self.worker is not None:
            self.worker.cancel()
        self.cases.cancel()

    def render(self) -> None:
        """Ask every view for a new frame (layer changes alone do not always reach trame-slicer)."""
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    # ------------------------------------------------------ worker callbacks

    def _compute(
        self, lesion_id: int, progress: Callable[[float, str], None], cancel: Any, partial: Callable[[Any], None]
    ) -> tuple[Any, float]:
        """Run the bridge's MRML-free computation (worker thread), stages to ``partial``; return (result, seconds)."""
        t = time.perf_counter()
        overlay = self._overlay_choice  # a plain attribute: trame state belongs to the event loop

        def stage(result: Any) -> None:
            partial((result, time.perf_counter() - t))

        result = self.session.compute_lesion(lesion_id, progress=progress, cancel=cancel, on_partial=stage, first=overlay)
        self.cases.similar_for(lesion_id)  # its nearest library lesions, cached for _show (nothing without a library)
        return result, time.perf_counter() - t

    def _on_progress(self, request: LesionRequest, fraction: float, message: str) -> None:
        if self.worker is None or not self.worker.is_latest(request):
            return
        with self.state:
            self.state.lx_progress = round(100.0 * fraction, 1)
            self.state.lx_progress_message = f"Lesion {request.lesion_id}: {message}" if message else ""

    def _on_partial(self, request: LesionRequest, payload: tuple[Any, float]) -> None:
        """A first stage of the requested lesion (e.g. its maps before the context probe): show it now."""
        if self.worker is None or not self.worker.is_latest(request):
            return
        result, seconds = payload
        self._show(result, self._request_started.get(request.serial), compute_s=seconds)

    def _on_result(self, request: LesionRequest, payload: tuple[Any, float]) -> None:
        t0 = self._request_started.pop(request.serial, None)
        if self.worker is None or not self.worker.is_latest(request):
            return  # a newer click superseded it; the result stays in the bridge's cache
        result, seconds = payload
        self._show(result, t0, compute_s=seconds)

    def _on_error(self, request: LesionRequest, exc: BaseException) -> None:
        self._request_started.pop(request.serial, None)
        log.error("lesion %d failed: %s: %s", request.lesion_id, type(exc).__name__, exc)
        if self.worker is not None and not self.worker.is_latest(request):
            return
        with self.state:
            self.state.lx_busy = False
            self.state.lx_error = f"Lesion {request.lesion_id} could not be explained: {exc}"

    def _on_background(self, request: LesionRequest, outcome: Any) -> None:
        """A background precomputation finished: its statistics now fill its table row."""
        if isinstance(outcome, BaseException):
            log.warning("precomputing lesion %d failed: %s: %s", request.lesion_id, type(outcome).__name__, outcome)
            return
        self.precomputed.append(int(request.lesion_id))
        log.info("lesion %d precomputed in %.1f s", request.lesion_id, outcome[1])
        with self.state:
            self._refresh_table()

    def _on_cancelled(self, request: LesionRequest) -> None:
        self._request_started.pop(request.serial, None)
        log.info("lesion %d: computation cancelled", request.lesion_id)
        self.cancelled = (self.cancelled + [int(request.lesion_id)])[-50:]
        if self.worker is not None and not self.worker.busy:
            with self.state:
                self.state.lx_busy = False
                self.state.lx_progress_message = ""
                if self.pending_id == request.lesion_id:
                    self.pending_id = self.writer.selected_id
                    self.state.lx_message = f"Lesion {request.lesion_id}: cancelled."
                    if self.writer.selected_id is not None:
                        self._show_header(self.session.lesion_statistics(self.writer.selected_id))

    # ------------------------------------------------------------- display

    def _show(self, result: Any, t0: Optional[float], compute_s: float) -> None:
        """Show a computed lesion through the bridge (main thread) and mirror it into the panel."""
        overlay = self._good["lx_overlay"]
        complete = bool(getattr(result, "complete", True))
        with self.state:
            t_bridge = time.perf_counter()
            self.writer.show_lesion(result, overlay=overlay)
            self.cases.forget()
            bridge_s = time.perf_counter() - t_bridge
            stats = self.session.lesion_statistics(result.lesion_id)
            self._show_header(stats)
            self._show_details(result, stats)
            self._refresh_table()
            self._refresh_legend()
            if complete:
                self.cases.show_similar(result.lesion_id)
                self.state.lx_busy = False
                self.state.lx_progress = 100.0
                self.state.lx_progress_message = ""
                self.state.lx_message = (
                    f"Lesion {result.lesion_id} shown ({'from cache' if result.from_cache else f'computed in {compute_s:.1f} s'})."
                )
            else:
                self.state.lx_message = (
                    f"Lesion {result.lesion_id}: maps so far shown after {compute_s:.1f} s; computing the rest…"
                )
        self.timings.record_show(
            result, t0, compute_s, t_bridge, bridge_s, self.writer.selected_id == result.lesion_id and result.has_overlay(overlay)
        )
        log.info(
            "selected lesion %d (%s) in %.3f s",
            result.lesion_id, "cached" if result.from_cache else "computed", self.timings.click_to_shown_s or 0.0,
        )  # fmt: skip

    def _show_header(self, stats: dict) -> None:
        from LesionXAILib.viewer.panel import statistics_items
        from LesionXAILib.vocabulary import status_colour

        lesion_id = int(stats["id"])
        status = str(stats.get("status") or "")
        self.state.lx_title = f"Lesion {lesion_id}"
        self.state.lx_status = status
        self.state.lx_status_color = status_colour(status, "grey")
        self.state.lx_selected_id = lesion_id
        self.state.lx_stats = statistics_items(stats, self._max_radius())

    def _show_details(self, result: Any, stats: dict) -> None:
        from LesionXAILib.viewer.curve_svg import context_curve_svg

        curve = result.curve
        self.state.lx_curve_svg = (
            context_curve_svg(
                curve.radii_mm, curve.mean_probability, curve.detected, curve.threshold, curve.context_needed_mm,
                title=f"Lesion {result.lesion_id}: {curve.description}",
            )  # fmt: skip
            if curve is not None
            else ""
        )

    def _refresh_table(self) -> None:
        from LesionXAILib.viewer.panel import table_items

        self.state.lx_rows = table_items(self.session.table_rows(), self._max_radius())

    def _refresh_legend(self) -> None:
        from LesionXAILib.viewer.panel import legend_view

        overlay = self._good["lx_overlay"]
        try:
            legend = self.writer.legend(overlay)
        except Exception as exc:  # no legend before a lesion is shown, for some overlays
            log.debug("no legend for %s yet: %s", overlay, exc)
            return
        if legend:
            self.state.lx_legend = legend_view(legend, discrete=(overlay == "context_shells"))

    def _max_radius(self) -> Optional[float]:
        settings = getattr(self.session, "settings", None)
        return getattr(settings, "max_radius_mm", None)

    def _overlay_changed(self, lx_overlay: str, **_: Any) -> None:
        if self.session is None:
            return
        try:
            self.state_guard.checkers["lx_overlay"](lx_overlay)
        except ValueError as exc:
            self._revert("lx_overlay", f"Overlay not available: {exc}")
            return
        error = ""
        if self.writer.selected_id is not None:
            try:
                self.writer.set_overlay(lx_overlay)
                self.cases.forget()
                self._apply_opacity()
            except LesionXAIError as exc:  # e.g. a map this lesion's explainers did not produce
                self._revert("lx_overlay", f"Overlay not available: {exc}")
                return
        self._overlay_choice = lx_overlay
        self._good["lx_overlay"] = lx_overlay
        with self.state:
            self.state.lx_error = error
            self._refresh_legend()

    def _opacity_changed(self, lx_opacity: float, **_: Any) -> None:
        try:
            self._good["lx_opacity"] = check_opacity(lx_opacity)
        except ValueError as exc:
            self._revert("lx_opacity", str(exc))
            return
        self._apply_opacity()

    def _revert(self, key: str, message: str) -> None:
        """Put ``key`` back to its last good value (a bad value must not break later displays); show ``message``."""
        log.warning("%s: %s; keeping %r", key, message, self._good[key])
        with self.state:
            self.state[key] = self._good[key]
            self.state.lx_error = message

    def _apply_opacity(self) -> None:
        """Apply the opacity slider to the overlay layer through the bridge (which keeps it across selections)."""
        if self.session is None:
            return
        self.writer.set_overlay_opacity(float(self._good["lx_opacity"]))
        for view in self.slice_views():  # a composite-node opacity change alone does not ask trame-slicer for a frame
            view.schedule_render()

    # ------------------------------------------------------------- reports

    def snapshot(self) -> dict[str, Any]:
        """Return the viewer's state as JSON-able data (the /lesionxai/state endpoint; tests and benchmark read it)."""
        session = self.session
        return {
            "ready": self.ready.is_set() and session is not None,
            "url": self.url,
            "selected_id": None if session is None else self.writer.selected_id,
            "pending_id": self.pending_id,
            "busy": bool(self.worker is not None and self.worker.busy),
            "progress": self.state.lx_progress,
            "overlay": self.state.lx_overlay,
            "opacity": self.state.lx_opacity,
            "title": self.state.lx_title,
            "error": self.state.lx_error,
            "refused": list(self.refused),
            "clicks": self.clicks,
            "cancelled": list(self.cancelled),
            "precomputed": list(self.precomputed),
            "precompute_left": 0 if self.worker is None else self.worker.background_left,
            "last_click": self.last_click,
            "lesion_ids": [] if session is None else [int(i) for i in session.instance_ids],
            "timings": self.timings.as_dict(),
            "views": slice_views_snapshot(self.slice_views()),
            "render_window": render_window_class(self.slice_views()[0]) if self.slice_views() else None,
            "rss_mb": memory_mb("VmRSS"),
            "peak_rss_mb": memory_mb("VmHWM"),
            "pid": os.getpid(),
            **self.cases.snapshot(),
        }


def _view_layout(show_3d: bool) -> Any:
    """Return the page's view grid: axial large on the left; coronal and sagittal (and 3D) stacked on the right."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    right = [ViewLayoutDefinition.coronal_view(), ViewLayoutDefinition.sagittal_view()]
    if show_3d:
        right.append(ViewLayoutDefinition.threed_view())
    return Layout(
        LayoutDirection.Horizontal,
        [ViewLayoutDefinition.axial_view(), Layout(LayoutDirection.Vertical, right)],
        flex_sizes=["3", "2"],
    )


def _one_line(exc: BaseException) -> str:
    """Return an error as one short line for the panel (the engine's own errors by message, others by type)."""
    if isinstance(exc, LesionXAIError):
        text = str(exc)
    else:
        text = f"internal error ({type(exc).__name__}); details are in the server's log"
    return " ".join(text.split())[:300]
