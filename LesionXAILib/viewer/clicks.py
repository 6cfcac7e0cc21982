"""Clicks on slice views: press and release at the same spot (not a window/level drag) -> a RAS point.

trame-slicer forwards the browser's mouse events to each view's VTK interactor, so observers on
``view.interactor()`` see them with display coordinates in pixels (origin at the bottom left, as VTK
counts). A slice node's XY-to-RAS matrix turns such a position into patient coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

# observers run before the slice view's own interactor style (which adjusts window/level on a drag); they never
# abort the event, so dragging keeps working
OBSERVER_PRIORITY = 10.0
DEFAULT_TOLERANCE_PX = 3.0


@dataclass(frozen=True)
class Click:
    """A click on one view: display position (pixels, origin bottom left) and the RAS point under it."""

    view: str
    x: float
    y: float
    ras: tuple[float, float, float]


def display_to_ras(slice_node: Any, x: float, y: float) -> tuple[float, float, float]:
    """Return the RAS point shown at display position (x, y) of a slice view (via the node's XY-to-RAS matrix)."""
    p = slice_node.GetXYToRAS().MultiplyPoint((float(x), float(y), 0.0, 1.0))
    return (float(p[0]), float(p[1]), float(p[2]))


def ras_to_display(slice_node: Any, ras: tuple[float, float, float]) -> tuple[float, float, float]:
    """Return (x, y, distance to the slice plane in slice units) where RAS point ``ras`` appears in a slice view."""
    from vtkmodules.vtkCommonMath import vtkMatrix4x4

    inverse = vtkMatrix4x4()
    vtkMatrix4x4.Invert(slice_node.GetXYToRAS(), inverse)
    p = inverse.MultiplyPoint((float(ras[0]), float(ras[1]), float(ras[2]), 1.0))
    return (float(p[0]), float(p[1]), float(p[2]))


class ClickDetector:
    """Calls ``on_click(Click)`` when the left button goes down and up at (nearly) the same spot of one view.

    A press followed by a drag further than ``tolerance_px`` from the press position is a window/level
    (or other) drag and is not reported, even if the pointer comes back before the release.
    """

    def __init__(
        self,
        name: str,
        interactor: Any,
        slice_node: Callable[[], Any],
        on_click: Callable[[Click], None],
        tolerance_px: float = DEFAULT_TOLERANCE_PX,
    ) -> None:
        self.name = name
        self.interactor = interactor
        self._slice_node = slice_node
        self._on_click = on_click
        self.tolerance_px = float(tolerance_px)
        self._press: Optional[tuple[int, int]] = None
        self._dragged = False
        self._tags: list[int] = []

    def attach(self) -> "ClickDetector":
        """Start observing the interactor; return self."""
        from vtkmodules.vtkCommonCore import vtkCommand

        if not self._tags:
            for event, handler in (
                (vtkCommand.LeftButtonPressEvent, self._pressed),
                (vtkCommand.MouseMoveEvent, self._moved),
                (vtkCommand.LeftButtonReleaseEvent, self._released),
            ):
                self._tags.append(self.interactor.AddObserver(event, handler, OBSERVER_PRIORITY))
        return self

    def detach(self) -> None:
        """Stop observing the interactor."""
        for tag in self._tags:
            self.interactor.RemoveObserver(tag)
        self._tags = []

    def _far(self, pos: tuple[int, int]) -> bool:
        assert self._press is not None
        return math.hypot(pos[0] - self._press[0], pos[1] - self._press[1]) > self.tolerance_px

    def _pressed(self, obj: Any, _event: str) -> None:
        self._press = tuple(obj.GetEventPosition())
        self._dragged = False

    def _moved(self, obj: Any, _event: str) -> None:
        if self._press is not None and not self._dragged and self._far(tuple(obj.GetEventPosition())):
            self._dragged = True

    def _released(self, obj: Any, _event: str) -> None:
        if self._press is None:
            return
        pos = tuple(obj.GetEventPosition())
        is_click = not self._dragged and not self._far(pos)
        self._press = None
        self._dragged = False
        if is_click:
            x, y = pos
            self._on_click(Click(self.name, float(x), float(y), display_to_ras(self._slice_node(), x, y)))
