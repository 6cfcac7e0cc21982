"""What the browser viewer measures and reports: interaction latencies, slice-view geometry, process memory.

Read through the ``/lesionxai/state`` endpoint (:meth:`LesionXAILib.viewer.app.LesionViewer.snapshot`) by
the browser tests and the viewer benchmark; nothing here changes what the viewer shows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

HISTORY = 50  # shows kept in the history


@dataclass
class Timings:
    """Latencies of the last interaction, in seconds (None until measured); wall-clock stamps for the browser."""

    click_to_selection_s: Optional[float] = None  # click event -> lesion known and requested
    click_to_shown_s: Optional[float] = None  # click event -> show_lesion done (render scheduled), first stage
    click_to_complete_s: Optional[float] = None  # click event -> the whole analysis shown (curve, statistics)
    compute_s: Optional[float] = None  # worker time of the last fresh computation
    shown_wall_time: Optional[float] = None  # time.time() when the last show_lesion finished
    from_cache: Optional[bool] = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def record_show(
        self, result: Any, t0: Optional[float], compute_s: float, started: float, show_s: float, overlay_shown: bool
    ) -> None:
        """Record one shown stage of a lesion: ``started`` when the show began, ``show_s`` the scene writer's share.

        ``t0`` is the click's ``time.perf_counter()`` (None for a background result); the stages of one
        click share it, so the first stage sets ``click_to_shown_s`` and a complete one ``click_to_complete_s``.
        """
        now = time.perf_counter()
        complete = bool(getattr(result, "complete", True))
        serial = f"{int(result.lesion_id)}@{t0!r}"
        self.shown_wall_time = time.time()
        self.from_cache = bool(result.from_cache)
        self.compute_s = compute_s if not result.from_cache else self.compute_s
        first_stage = not self.history or self.history[-1].get("serial") != serial
        if t0 is not None:
            if first_stage:
                self.click_to_shown_s = now - t0
            self.click_to_complete_s = now - t0 if complete else None
        self.history.append(
            {
                "lesion_id": int(result.lesion_id),
                "serial": serial,
                "complete": complete,
                "overlay_shown": bool(overlay_shown),
                "from_cache": bool(result.from_cache),
                "show_lesion_s": show_s,  # the writer putting overlays/shells/chart in the scene and setting the layers
                "panel_s": now - started - show_s,  # the viewer: statistics, curve SVG, table, legend, state push
                "click_to_shown_s": None if t0 is None else now - t0,
                "compute_s": compute_s,
                "shown_wall_time": self.shown_wall_time,
            }
        )
        del self.history[:-HISTORY]

    def as_dict(self) -> dict[str, Any]:
        """Return the timings as JSON-able data."""
        return {
            "click_to_selection_s": self.click_to_selection_s,
            "click_to_shown_s": self.click_to_shown_s,
            "click_to_complete_s": self.click_to_complete_s,
            "compute_s": self.compute_s,
            "shown_wall_time": self.shown_wall_time,
            "from_cache": self.from_cache,
            "history": list(self.history),
        }


def slice_views_snapshot(slice_views: list) -> dict[str, dict[str, Any]]:
    """Return each slice view's orientation, size, XY-to-RAS matrix and slice offset, by singleton tag."""
    views = {}
    for view in slice_views:
        m = view.get_view_node().GetXYToRAS()
        views[view.get_singleton_tag()] = {
            "orientation": view.get_orientation(),
            "size": list(view.render_window().GetSize()),
            "xy_to_ras": [[m.GetElement(r, c) for c in range(4)] for r in range(4)],
            "slice_offset": view.get_slice_value(),
        }
    return views


def memory_mb(key: str) -> Optional[float]:
    """Return a /proc/self/status memory figure (VmRSS: resident now, VmHWM: peak) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        return None
    return None
