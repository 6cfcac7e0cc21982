"""One lesion computation at a time, off the UI event loop; a newer request cancels the older one.

The bridge's ``compute_lesion`` touches no MRML, so it runs on a worker thread; everything it produces is
handed back to the UI loop through ``post`` (e.g. ``loop.call_soon_threadsafe``), where MRML and trame
state may be changed. Cancellation is cooperative (:class:`LesionXAILib.progress.CancelToken`): the
running computation stops at its next progress check, so a burst of clicks never piles up work.

When no user request is waiting, the worker can precompute lesions in the background (``prefetch``) so
that later clicks find them cached; a user request for another lesion interrupts that work (the
interrupted lesion goes back to the front of the queue), one for the same lesion takes it over.

With ``on_partial`` the computation may deliver stages before it finishes (e.g. the explanation maps
before the context probe): ``compute`` then gets a fourth argument, ``partial(value)``, and each value
reaches ``on_partial(request, value)`` on the UI loop while the request is still the latest one.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

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
    background: bool = False  # a precomputation nobody asked to see (yet)

    @property
    def cancelled(self) -> bool:
        """Return True once the request was cancelled."""
        return self.token.cancelled


class LesionWorker:
    """Runs ``compute(lesion_id, progress, cancel)`` on one daemon thread, at most one request running and one waiting.

    Callbacks run on the UI thread through ``post``: ``on_result(request, result)``, ``on_error(request, exc)``,
    ``on_progress(request, fraction, message)`` (throttled), ``on_cancelled(request)`` and, when given,
    ``on_partial(request, stage)`` for stages delivered before the result (then ``compute`` is called as
    ``compute(lesion_id, progress, cancel, partial)``); background work reports through
    ``on_background(request, result_or_exception)`` instead.
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
        on_background: Optional[Callable[[LesionRequest, Any], None]] = None,
        on_partial: Optional[Callable[[LesionRequest, Any], None]] = None,
    ) -> None:
        self._compute = compute
        self._post = post
        self._on_result = on_result
        self._on_error = on_error
        self._on_progress = on_progress
        self._on_cancelled = on_cancelled
        self._on_background = on_background
        self._on_partial = on_partial
        self._interval = float(progress_interval_s)
        self._background: deque[int] = deque()
        self._skip: Callable[[int], bool] = lambda _id: False
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
        """Return True while a user request runs or waits (background precomputation does not count)."""
        with self._cond:
            running = self._running is not None and not self._running.background
            return running or self._pending is not None

    def prefetch(self, lesion_ids: Iterable[int], skip: Optional[Callable[[int], bool]] = None) -> None:
        """Queue lesions to compute in the background when idle, in order; ``skip(id)`` (e.g. cached) is checked before each."""
        with self._cond:
            if skip is not None:
                self._skip = skip
            queued = set(self._background)
            self._background.extend(int(i) for i in lesion_ids if int(i) not in queued)
            self._cond.notify_all()

    @property
    def background_left(self) -> int:
        """Return how many lesions wait for background precomputation."""
        with self._cond:
            return len(self._background)

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
                    current.background = False  # a precomputation the user now wants to see: keep it going
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
            if self._running.background and not self._running.cancelled:
                self._background.appendleft(self._running.lesion_id)  # interrupted, not abandoned
            self._running.token.cancel()  # the worker reports it once compute() returns
        if self._pending is not None:
            self._pending.token.cancel()
            self._post_cancelled(self._pending)
            self._pending = None

    def close(self, timeout: float = 5.0) -> None:
        """Cancel everything and stop the worker thread (waiting up to ``timeout`` seconds)."""
        with self._cond:
            self._background.clear()
            self._cancel_locked()
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until nothing runs or waits, background work included (tests, scripts); return False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._running is not None or self._pending is not None or self._background:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _post_cancelled(self, request: LesionRequest) -> None:
        if self._on_cancelled is not None and not request.background:
            self._post(self._on_cancelled, request)

    def _next_locked(self) -> Optional[LesionRequest]:
        """Return the next request to run: the user's, else the next background lesion not to skip."""
        if self._pending is not None:
            request, self._pending = self._pending, None
            return request
        while self._background:
            lesion_id = self._background.popleft()
            try:
                skip = self._skip(lesion_id)
            except Exception:  # e.g. the session was re-run and the id is gone: nothing to precompute
                skip = True
            if not skip:
                return LesionRequest(lesion_id, next(self._serials), background=True)
        return None

    def _progress_for(self, request: LesionRequest) -> Callable[[float, str], None]:
        last = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            now = time.monotonic()
            # throttled: the UI needs a few updates per second, not one per SmoothGrad sample
            due = now - last[0] >= self._interval or fraction >= 1.0
            if self._on_progress is not None and due and not request.background:
                last[0] = now
                self._post(self._on_progress, request, float(fraction), str(message))
            request.token.check()

        return progress

    def _partial_for(self, request: LesionRequest) -> Callable[[Any], None]:
        def partial(value: Any) -> None:
            # read under the lock: submit() may promote a background request the user now asks for
            with self._cond:
                wanted = not request.background and not request.cancelled
            if wanted and self._on_partial is not None:
                self._post(self._on_partial, request, value)
            request.token.check()

        return partial

    def _loop(self) -> None:
        while True:
            with self._cond:
                request = None
                while not self._closed:
                    request = self._next_locked()
                    if request is not None:
                        break
                    self._cond.notify_all()  # wake wait_idle: the background queue may have drained by skipping
                    self._cond.wait()
                if self._closed:
                    return
                self._running = request
            try:
                args: tuple = (request.lesion_id, self._progress_for(request), request.token)
                if self._on_partial is not None:
                    args += (self._partial_for(request),)
                outcome: Any = self._compute(*args)
                failed = False
            except BaseException as exc:  # delivered to the UI; the worker keeps serving
                outcome, failed = exc, True
            with self._cond:
                self._running = None
                background = request.background  # read under the lock: submit() may have promoted it
                self._cond.notify_all()
            if request.cancelled or isinstance(outcome, Cancelled):
                self._post_cancelled(request)
            elif background:
                if self._on_background is not None:
                    self._post(self._on_background, request, outcome)
            elif failed:
                self._post(self._on_error, request, outcome)
            else:
                self._post(self._on_result, request, outcome)
