"""Clicks on the browser viewer's slice views -> a RAS point, decided by the shared click policy.

trame-slicer forwards the browser's mouse events to each view's VTK interactor, so observers on
``view.interactor()`` see them with display coordinates in pixels (origin at the bottom left, as VTK
counts). Whether a press/release is a click is :class:`LesionXAILib.session.clicks.ClickDetector`'s
decision (the same rule as the Slicer module); a slice node's XY-to-RAS matrix turns the position into
patient coordinates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from LesionXAILib.session.clicks import ClickDetector, ClickPolicy

# observers run before the slice view's own interactor style (which adjusts window/level on a drag); they never
# abort the event, so dragging keeps working
OBSERVER_PRIORITY = 10.0


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


class ViewClicks:
    """Feeds one view's interactor events to the shared :class:`ClickDetector`; calls ``on_click(Click)`` on a click.

    ``clock`` (seconds, default ``time.monotonic``) stamps press and release; tests pass their own.
    """

    def __init__(
        self,
        name: str,
        interactor: Any,
        slice_node: Callable[[], Any],
        on_click: Callable[[Click], None],
        policy: ClickPolicy = ClickPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.interactor = interactor
        self._slice_node = slice_node
        self._on_click = on_click
        self._clock = clock
        self.detector = ClickDetector(policy)
        self._tags: list[int] = []

    def attach(self) -> "ViewClicks":
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
        self.detector.cancel()

    def _pressed(self, obj: Any, _event: str) -> None:
        modified = obj.GetShiftKey() or obj.GetControlKey() or obj.GetAltKey()
        self.detector.press(obj.GetEventPosition(), self._clock(), bool(modified))

    def _moved(self, obj: Any, _event: str) -> None:
        self.detector.move(obj.GetEventPosition())

    def _released(self, obj: Any, _event: str) -> None:
        x, y = obj.GetEventPosition()
        if self.detector.release((x, y), self._clock()):
            self._on_click(Click(self.name, float(x), float(y), display_to_ras(self._slice_node(), x, y)))
