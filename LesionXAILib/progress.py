"""Progress reporting and cooperative cancellation shared by every long-running operation."""

from __future__ import annotations

import threading
from typing import Callable, Optional, Protocol

from LesionXAILib.errors import Cancelled


class ProgressCallback(Protocol):
    """Receives the fraction done (0..1) and a short message."""

    def __call__(self, fraction: float, message: str) -> None: ...


class CancelToken:
    """Thread-safe flag that long work polls; ``check()`` raises :class:`Cancelled` once set."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work holding this token to stop at its next check."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Return True once :meth:`cancel` was called."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("operation cancelled")


class ProgressReporter:
    """Maps a sub-task's own 0..1 progress into a slice of a parent callback, and polls cancellation."""

    def __init__(
        self,
        callback: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        start: float = 0.0,
        stop: float = 1.0,
    ) -> None:
        self.callback = callback
        self.cancel_token = cancel
        self.start = start
        self.stop = stop

    def __call__(self, fraction: float, message: str = "") -> None:
        """Report progress ``fraction`` of this slice, then raise if cancelled."""
        if self.callback is not None:
            f = min(max(fraction, 0.0), 1.0)
            self.callback(self.start + (self.stop - self.start) * f, message)
        self.check()

    def check(self) -> None:
        """Raise :class:`Cancelled` if the attached token was cancelled."""
        if self.cancel_token is not None:
            self.cancel_token.check()

    def sub(self, start: float, stop: float) -> "ProgressReporter":
        """Return a reporter for the [start, stop] part of this one's range."""
        span = self.stop - self.start
        return ProgressReporter(
            self.callback, self.cancel_token, self.start + span * start, self.start + span * stop
        )


def as_reporter(
    progress: Optional[ProgressCallback | ProgressReporter] = None, cancel: Optional[CancelToken] = None
) -> ProgressReporter:
    """Return a ProgressReporter wrapping a plain callback (or None), sharing the cancel token."""
    if isinstance(progress, ProgressReporter):
        if cancel is not None and progress.cancel_token is None:
            progress.cancel_token = cancel
        return progress
    return ProgressReporter(progress, cancel)


def tqdm_callback(desc: str, disable: bool = False) -> tuple[Callable[[float, str], None], Callable[[], None]]:
    """Return (callback, close) driving a tqdm bar in percent, for CLI commands."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=desc, unit="%", disable=disable, leave=False, dynamic_ncols=True)

    def callback(fraction: float, message: str) -> None:
        target = int(round(100 * fraction))
        if target > bar.n:
            bar.update(target - bar.n)
        if message:
            bar.set_postfix_str(message, refresh=False)

    return callback, bar.close
