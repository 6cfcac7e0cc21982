"""An exclusive lock on a cohort output folder, so that two runs never write into one ``--out`` at once.

The lock is an ``flock`` on ``OUT/.lesionxai-cohort.lock``; the file records who holds it (pid, host,
start time, command) so that a refused run can name the first. The kernel releases an flock when its
process dies, so a crashed run never leaves a stale lock behind. The file itself stays (removing it
while another run waits on it would let a third run lock a different file). flock is reliable on local
file systems; on network file systems it depends on the server (NFSv4 and most cluster file systems map
it to their own locks).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.errors import Cancelled, ParameterError
from LesionXAILib.progress import CancelToken

LOCK_FILE = ".lesionxai-cohort.lock"
POLL_SECONDS = 0.5


def describe_holder(info: dict[str, Any]) -> str:
    """Return 'pid 123 on host h, started 2026-01-01T10:00:00Z (lesionxai cohort ...)' from a lock record."""
    if not info:
        return "another process"
    text = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
    command = info.get("command")
    return f"{text} ({command})" if command else text


class OutputLock:
    """Exclusive, process-wide lock on a cohort output folder; use as a context manager."""

    def __init__(self, out: str | os.PathLike, wait: bool = False, cancel: Optional[CancelToken] = None) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_FILE
        self.wait = wait
        self.cancel = cancel
        self._fd: Optional[int] = None

    def holder(self) -> dict[str, Any]:
        """Return the lock record of the current holder ({} if none is readable)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "OutputLock":
        """Take the lock (waiting if asked); raise ParameterError naming the holder if another run has it."""
        self.out.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        announced = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    who = describe_holder(self.holder())
                    if not self.wait:
                        raise ParameterError(
                            f"output '{self.out}' is in use by another cohort run ({who}); wait for it to finish, "
                            "pass --wait to queue behind it, or choose another --out"
                        ) from None
                    if not announced:
                        print(f"lesionxai: waiting for the cohort run holding '{self.out}' ({who})", file=sys.stderr)
                        announced = True
                    if self.cancel is not None and self.cancel.cancelled:
                        raise Cancelled("cancelled while waiting for the output folder's lock") from None
                    time.sleep(POLL_SECONDS)
            record = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "command": " ".join(["lesionxai", *sys.argv[1:]])[:300] if sys.argv and "lesionxai" in sys.argv[0] else None,
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Release the lock (clearing the holder record); safe to call twice."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
