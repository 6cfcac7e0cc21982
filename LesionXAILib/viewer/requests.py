"""One lesion computation at a time, off the UI event loop; a newer request cancels the older one.

The bridge's ``compute_lesion`` touches no MRML, so it runs on a worker thread; everything it produces is
handed back to the UI loop through ``post`` (e.g. ``loop.call_soon_threadsafe``), where MRML and trame
state may be changed. Cancellation is cooperative (:class:`LesionXAILib.progress.CancelToken`): the
running computation stops at its next progress check, so a burst of clicks never piles up work.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from LesionXAILib.errors import Cancelled
from LesionXAILib.progress import CancelToken

Post = Callable[..., None]


@dataclass(eq=False)
class LesionRequest:
    """One request to compute a lesion: its id, cancel token, submission time and serial number."""

    lesion_id: int
    serial: int
    token: CancelToken = field(default_factory=CancelToken)
    submitted: float = field(default_factory=time.perf_counter)

    @property
    def cancelled(self) -> bool:
        """Return True once the request was cancelled."""
        return self.token.cancelled


class LesionWorker:
    """Runs ``compute(lesion_id, progress, cancel)`` on one daemon thread, at most one request running and one waiting.

    Callbacks run on the UI thread through ``post``: ``on_result(request, result)``, ``on_error(request, exc)``,
    ``on_progress(request, fraction, message)`` (throttled) and ``on_cancelled(request)``.
    """

    def __init__(
        self,
        compute: Callable[[int, Callable[[float, str], None], CancelToken], Any],
        post: Post,
        on_result: Callable[[LesionRequest, Any], None],
        on_error: Callable[[LesionRequest, BaseException], None],
        on_progress: Optional[Callable[[LesionRequest, float, str], None]] = None,
        on_cancelled: Optional[Callable[[LesionRequest], None]] = None,
        progress_interval_s: float = 0.1,
    ) -> None:
        self._compute = compute
        self._post = post
        self._on_result = on_result
        self._on_error = on_error
        self._on_progress = on_progress
        self._on_cancelled = on_cancelled
        self._interval = float(progress_interval_s)
        self._cond = threading.Condition()
        self._pending: Optional[LesionRequest] = None
        self._running: Optional[LesionRequest] = None
        self._latest: Optional[LesionRequest] = None
        self._serials = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="lesionxai-viewer-worker", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Return True while a request runs or waits."""
        with self._cond:
            return self._running is not None or self._pending is not None

    def is_latest(self, request: LesionRequest) -> bool:
        """Return True if ``request`` is the most recent one submitted and was not cancelled."""
        with self._cond:
            return request is self._latest and not request.cancelled

    def submit(self, lesion_id: int) -> LesionRequest:
        """Queue lesion ``lesion_id``, cancelling the running and waiting requests for other lesions; return its request.

        A request for the lesion already running or waiting is not restarted: that request is returned.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("the lesion worker is closed")
            for current in (self._pending, self._running):
                if current is not None and current.lesion_id == lesion_id and not current.cancelled:
                    self._latest = current
                    return current
            self._cancel_locked()
            request = LesionRequest(int(lesion_id), next(self._serials))
            self._pending = request
            self._latest = request
            self._cond.notify_all()
            return request

    def cancel(self) -> None:
        """Cancel the running and the waiting request (if any)."""
        with self._cond:
            self._cancel_locked()
            self._latest = None

    def _cancel_locked(self) -> None:
        if self._running is not None:
            self._running.token.cancel()  # the worker reports it once compute() returns
        if self._pending is not None:
            self._pending.token.cancel()
            self._post_cancelled(self._pending)
            self._pending = None

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker thread (waiting up to ``timeout`` seconds)."""
        with self._cond:
            self._cancel_locked()
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing runs or waits (for tests and scripts); return False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running is not None or self._pending is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _post_cancelled(self, request: LesionRequest) -> None:
        if self._on_cancelled is not None:
            self._post(self._on_cancelled, request)

    def _progress_for(self, request: LesionRequest) -> Callable[[float, str], None]:
        last = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            now = time.monotonic()
            # throttled: the UI needs a few updates per second, not one per SmoothGrad sample
            if self._on_progress is not None and (now - last[0] >= self._interval or fraction >= 1.0):
                last[0] = now
                self._post(self._on_progress, request, float(fraction), str(message))
            request.token.check()

        return progress

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                request, self._pending = self._pending, None
                self._running = request
            try:
                result = self._compute(request.lesion_id, self._progress_for(request), request.token)
            except Cancelled:
                self._post_cancelled(request)
            except BaseException as exc:  # delivered to the UI; the worker keeps serving
                if request.cancelled:
                    self._post_cancelled(request)
                else:
                    self._post(self._on_error, request, exc)
            else:
                if request.cancelled:
                    self._post_cancelled(request)
                else:
                    self._post(self._on_result, request, result)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()
