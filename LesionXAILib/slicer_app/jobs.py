"""One long job at a time off the GUI thread, polled by the GUI: the desktop module's worker (Qt-free).

Slicer's Python and MRML belong to the main thread, and a progress dialog that calls
``processEvents`` lets every other control start a second computation on the same session. So the
module splits each long task in two: ``compute(progress, cancel)``, which touches no MRML and runs on
a worker thread, and ``apply(result)``, which writes the scene. :class:`JobRunner` runs the first and
hands its outcome to the second *only from* :meth:`JobRunner.poll`, which the module calls from a
``qt.QTimer`` on the main thread; ``poll`` also returns the progress to show. While a job runs,
:meth:`JobRunner.submit` refuses another one (:class:`Busy`), and :meth:`JobRunner.cancel` asks the
running one to stop at its next progress check.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

from LesionXAILib.errors import Cancelled, LesionXAIError
from LesionXAILib.progress import CancelToken

RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class Busy(LesionXAIError):
    """A job is already running: the GUI must not start a second one."""


@dataclass
class JobStatus:
    """What :meth:`JobRunner.poll` reports: the job's name, state, progress (0..1) and latest message."""

    name: str
    state: str
    fraction: float = 0.0
    message: str = ""
    error: Optional[BaseException] = None
    seconds: float = 0.0

    @property
    def finished(self) -> bool:
        """Return True once the job is done, failed or cancelled (its outcome was applied by this poll)."""
        return self.state != RUNNING


class Job:
    """A submitted job: its callables, cancel token and, once the worker returns, its outcome."""

    def __init__(
        self,
        name: str,
        compute: Callable[[Callable[[float, str], None], CancelToken], Any],
        apply: Optional[Callable[[Any], None]],
        on_error: Optional[Callable[[BaseException], None]],
        on_cancelled: Optional[Callable[[], None]],
    ) -> None:
        self.name = name
        self.compute = compute
        self.apply = apply
        self.on_error = on_error
        self.on_cancelled = on_cancelled
        self.token = CancelToken()
        self.started = time.perf_counter()
        self.fraction = 0.0
        self.message = ""
        self.outcome: Any = None
        self.failed = False
        self.finished = threading.Event()
        self.thread_id: Optional[int] = None  # the worker thread's ident (tests check nothing was applied there)


class JobRunner:
    """Runs at most one job on a worker thread; :meth:`poll` (GUI thread) reports progress and applies outcomes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._job: Optional[Job] = None

    @property
    def busy(self) -> bool:
        """Return True from ``submit`` until ``poll`` has applied the job's outcome."""
        with self._lock:
            return self._job is not None

    @property
    def job_name(self) -> Optional[str]:
        """Return the name of the job in progress (None when idle)."""
        with self._lock:
            return None if self._job is None else self._job.name

    def submit(
        self,
        name: str,
        compute: Callable[[Callable[[float, str], None], CancelToken], Any],
        apply: Optional[Callable[[Any], None]] = None,
        on_error: Optional[Callable[[BaseException], None]] = None,
        on_cancelled: Optional[Callable[[], None]] = None,
    ) -> Job:
        """Start ``compute(progress, cancel)`` on a worker thread; raise :class:`Busy` if a job is in progress.

        ``apply(result)``, ``on_error(exc)`` or ``on_cancelled()`` runs later, inside the ``poll`` that
        sees the job finished, i.e. on the thread that polls.
        """
        with self._lock:
            if self._job is not None:
                raise Busy(f"'{self._job.name}' is still running: wait for it or cancel it first")
            job = Job(name, compute, apply, on_error, on_cancelled)
            self._job = job
        thread = threading.Thread(target=self._work, args=(job,), name=f"lesionxai-job-{name}", daemon=True)
        thread.start()
        return job

    def cancel(self) -> bool:
        """Ask the running job to stop at its next progress check; return False when nothing runs."""
        with self._lock:
            job = self._job
        if job is None:
            return False
        job.token.cancel()
        return True

    def poll(self) -> Optional[JobStatus]:
        """Return the job's status (None when idle); if it finished, first apply its outcome on this thread."""
        with self._lock:
            job = self._job
        if job is None:
            return None
        seconds = time.perf_counter() - job.started
        if not job.finished.is_set():
            return JobStatus(job.name, RUNNING, job.fraction, job.message, seconds=seconds)
        with self._lock:
            self._job = None  # before the callbacks: they may submit the next job
        if job.token.cancelled or isinstance(job.outcome, Cancelled):
            if job.on_cancelled is not None:
                job.on_cancelled()
            return JobStatus(job.name, CANCELLED, job.fraction, "cancelled", seconds=seconds)
        if job.failed:
            if job.on_error is not None:
                job.on_error(job.outcome)
            return JobStatus(job.name, FAILED, job.fraction, str(job.outcome), error=job.outcome, seconds=seconds)
        try:
            if job.apply is not None:
                job.apply(job.outcome)
        except Exception as exc:  # applying to the scene failed: reported like a failed computation
            if job.on_error is not None:
                job.on_error(exc)
            return JobStatus(job.name, FAILED, 1.0, str(exc), error=exc, seconds=seconds)
        return JobStatus(job.name, DONE, 1.0, job.message, seconds=seconds)

    def wait(self, timeout: float = 60.0, interval: float = 0.01) -> Optional[JobStatus]:
        """Poll until the job finished (scripts, tests; the GUI polls from a timer instead); return the last status."""
        deadline = time.monotonic() + timeout
        status = self.poll()
        while status is not None and not status.finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"job '{status.name}' still running after {timeout:.0f} s")
            time.sleep(interval)
            status = self.poll()
        return status

    def _work(self, job: Job) -> None:
        job.thread_id = threading.get_ident()

        def progress(fraction: float, message: str = "") -> None:
            job.fraction = min(max(float(fraction), 0.0), 1.0)
            if message:
                job.message = str(message)
            job.token.check()

        try:
            job.outcome = job.compute(progress, job.token)
        except BaseException as exc:  # delivered to the GUI thread by poll()
            job.outcome, job.failed = exc, True
        finally:
            job.finished.set()
