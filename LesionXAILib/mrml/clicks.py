"""Telling a click on a lesion from a window/level drag in a slice view (pure logic; the GUI feeds it events).

In Slicer's default mouse mode a left-button drag in a slice view changes window/level, so "select
the lesion under the cursor" must fire only for a press and release close together in space and
time. The desktop module feeds every left press/release of the slice-view interactors (display
coordinates in pixels, times in seconds) to a :class:`ClickDetector`; on a click it reads the
crosshair node's cursor position (RAS) and calls ``lesion_at``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

# a hand holding a mouse still moves 1-2 px; a deliberate W/L drag moves tens of pixels
DEFAULT_MAX_DISTANCE_PX = 4.0
# longer presses are a hold-and-drag even if the pointer ended where it started
DEFAULT_MAX_DURATION_S = 0.6


@dataclass(frozen=True)
class ClickPolicy:
    """Thresholds for a click: pointer travel (max over the whole press, pixels) and press duration (seconds)."""

    max_distance_px: float = DEFAULT_MAX_DISTANCE_PX
    max_duration_s: float = DEFAULT_MAX_DURATION_S


def is_click(
    press_xy: Sequence[float],
    release_xy: Sequence[float],
    press_time: float,
    release_time: float,
    policy: ClickPolicy = ClickPolicy(),
    max_travel_px: float = 0.0,
) -> bool:
    """Return True if a press/release pair is a click (short and still), False for a drag or a long hold."""
    distance = math.dist(press_xy, release_xy)
    duration = release_time - press_time
    travel = max(distance, max_travel_px)
    return 0.0 <= duration <= policy.max_duration_s and travel <= policy.max_distance_px


class ClickDetector:
    """Follows one view's left-button events and reports clicks (a drag that returns to its start is still a drag)."""

    def __init__(self, policy: ClickPolicy = ClickPolicy()) -> None:
        self.policy = policy
        self._press: Optional[tuple[tuple[float, float], float]] = None
        self._travel = 0.0

    def press(self, xy: Sequence[float], time_s: float, modified: bool = False) -> None:
        """Record a left-button press; presses with a modifier key (Shift/Ctrl/Alt: other tools) are ignored."""
        self._press = None if modified else ((float(xy[0]), float(xy[1])), float(time_s))
        self._travel = 0.0

    def move(self, xy: Sequence[float]) -> None:
        """Record pointer motion while the button is down."""
        if self._press is not None:
            self._travel = max(self._travel, math.dist(self._press[0], xy))

    def release(self, xy: Sequence[float], time_s: float) -> bool:
        """Return True if this release completes a click; resets for the next press."""
        if self._press is None:
            return False
        (start, t0), travel = self._press, self._travel
        self._press = None
        self._travel = 0.0
        return is_click(start, xy, t0, float(time_s), self.policy, travel)

    def cancel(self) -> None:
        """Forget a pending press (e.g. the view lost focus)."""
        self._press = None
        self._travel = 0.0
