"""The one click policy of every front end: when a left press and release selects the lesion under the pointer.

Rule (desktop Slicer module and browser viewer alike): a left-button press **without a modifier key**,
released **at most 0.6 s** later, the pointer having stayed **within 4 px** of the press position the
whole time (a drag that comes back to its start is still a drag).

Why these numbers: a hand holding a mouse still moves 1-2 px (4 px also absorbs a trackpad tap and
HiDPI rounding), while a window/level or pan drag moves tens of pixels; a press held longer than about
half a second is a hold-and-drag or a hesitation, not a selection, so it is not reported even without
motion. Shift/Ctrl/Alt presses belong to other tools (Slicer's crosshair, the browser's own gestures).
The desktop rule was kept rather than the browser's former 3 px / no time limit because it is the
stricter of the two on holds, and the browser measures press and release on the same server clock
(network jitter is milliseconds, far below 0.6 s).

The front ends only feed events: Slicer's module observes each slice view's interactor, the browser
viewer (:mod:`LesionXAILib.viewer.clicks`) the trame-slicer views' interactors. Pure logic, no imports
beyond the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

# a hand holding a mouse still moves 1-2 px; a deliberate drag moves tens of pixels
MAX_DISTANCE_PX = 4.0
# longer presses are a hold-and-drag even if the pointer ended where it started
MAX_DURATION_S = 0.6


@dataclass(frozen=True)
class ClickPolicy:
    """Thresholds for a click: pointer travel (max over the whole press, pixels) and press duration (seconds)."""

    max_distance_px: float = MAX_DISTANCE_PX
    max_duration_s: float = MAX_DURATION_S


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
