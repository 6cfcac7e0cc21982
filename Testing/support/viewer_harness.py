"""Driving the viewer from outside, as a user would: a server subprocess and Debian's Chromium through Playwright.

Used by the browser tests and ``benchmarks/bench_viewer.py``. The server runs ``lesionxai view`` on a
free localhost port and is always stopped by its PID; Chromium runs headless from a fresh profile
directory with networking extras off. Page coordinates of a RAS point come from the view geometry the
server reports (``xy_to_ras`` of each slice view) and the on-page box of that view's image.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from LesionXAILib.viewer.security import SECRET_PARAMETER
from LesionXAILib.viewer.server import STATE_ROUTE, URL_PREFIX

CHROMIUM = os.environ.get("LESIONXAI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
VIEWPORT = {"width": 1400, "height": 860}


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ViewerServer:
    """``lesionxai view ARGS --port P`` as a subprocess: started on a free port, stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, args: Sequence[str], log_path: Optional[str | os.PathLike] = None, env: Optional[dict] = None) -> None:
        self.args = list(args)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/"
        self.url = self.base_url  # the page URL with the launch's secret once started (read from its output)
        self.secret = ""
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="lesionxai-view-", suffix=".log")[1])
        self.env = dict(os.environ if env is None else env)
        self.process: Optional[subprocess.Popen] = None
        self.start_seconds: Optional[float] = None

    def start(self, timeout: float = 180.0) -> "ViewerServer":
        """Start the server and wait until it printed its URL; raise RuntimeError (with the log tail) if it fails."""
        cmd = [sys.executable, "-m", "LesionXAILib", "view", *self.args, "--host", "127.0.0.1", "--port", str(self.port)]
        t0 = time.perf_counter()
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"viewer exited with code {self.process.returncode} before serving:\n{self.log_tail()}")
            printed = self.log_path.read_text(errors="replace")
            if URL_PREFIX in printed:
                self.start_seconds = time.perf_counter() - t0
                self.url = printed.split(URL_PREFIX, 1)[1].split()[0]
                self.secret = urllib.parse.parse_qs(urllib.parse.urlsplit(self.url).query).get(SECRET_PARAMETER, [""])[0]
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"viewer did not start within {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        """Return the last lines of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def state(self, timeout: float = 10.0) -> dict[str, Any]:
        """Return the server's /lesionxai/state snapshot."""
        query = urllib.parse.urlencode({SECRET_PARAMETER: self.secret})
        with urllib.request.urlopen(f"{self.base_url.rstrip('/')}{STATE_ROUTE}?{query}", timeout=timeout) as response:
            return json.loads(response.read().decode())

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 60.0, interval: float = 0.05) -> dict[str, Any]:
        """Poll the state until ``predicate(state)`` holds; return that state (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.state()
            if predicate(state):
                return state
            time.sleep(interval)
        raise TimeoutError(f"viewer state did not reach the expected condition in {timeout:.0f} s; last state: "
                           f"{ {k: state.get(k) for k in ('selected_id', 'pending_id', 'busy', 'error', 'last_click')} }")  # fmt: skip

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """Stop the server by its PID (SIGTERM, SIGKILL after ``grace`` seconds); return its exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(grace)
        self._log.close()
        return proc.returncode

    def __enter__(self) -> "ViewerServer":
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


@contextlib.contextmanager
def serving(args: Sequence[str], log_path: str | os.PathLike, timeout: float = 240.0) -> Iterator[ViewerServer]:
    """Yield a started ViewerServer for ``lesionxai view ARGS``; it is stopped by its PID however the block ends."""
    srv = ViewerServer(args, log_path=log_path)
    try:
        srv.start(timeout=timeout)
        yield srv
    finally:
        srv.stop()
        assert srv.process is None or srv.process.poll() is not None, "the viewer server is still running"


@contextlib.contextmanager
def chromium_page(viewport: Optional[dict] = None) -> Iterator[Any]:
    """Yield a Playwright page in headless Debian Chromium with a fresh, deleted-afterwards profile directory."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise FileNotFoundError(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set LESIONXAI_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="lesionxai-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS), viewport=viewport or VIEWPORT
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def open_viewer(page: Any, url: str, timeout: float = 60.0) -> None:
    """Load the viewer page and wait until every slice view shows an image."""
    page.goto(url, timeout=timeout * 1000)
    page.wait_for_function(
        "() => ['Red','Green','Yellow'].every(n => { const m = document.getElementById('lx-view-' + n);"
        " const img = m && m.parentElement.querySelector('img'); return img && img.naturalWidth > 0; })",
        timeout=timeout * 1000,
    )


def view_image_box(page: Any, view: str) -> dict[str, float]:
    """Return the on-page box {x, y, width, height} of a view's rendered image (the element receiving mouse events)."""
    box = page.evaluate(
        "(n) => { const m = document.getElementById('lx-view-' + n); const img = m.parentElement.querySelector('img');"
        " const r = img.getBoundingClientRect(); return {x: r.x, y: r.y, width: r.width, height: r.height}; }",
        view,
    )
    return {k: float(v) for k, v in box.items()}


def ras_to_page(state: dict[str, Any], box: dict[str, float], view: str, ras: Sequence[float]) -> tuple[float, float, float]:
    """Return (page x, page y, distance in slice units to the view plane) of RAS point ``ras`` in ``view``.

    The slice node's XY-to-RAS matrix maps render-window pixels (origin bottom left) to RAS; the image
    element stretches the render window over ``box`` with y pointing down.
    """
    info = state["views"][view]
    xy = np.linalg.solve(np.asarray(info["xy_to_ras"], dtype=float), np.array([*map(float, ras), 1.0]))
    width, height = info["size"]
    px = box["x"] + (xy[0] + 0.5) * box["width"] / width
    py = box["y"] + (height - xy[1] - 0.5) * box["height"] / height
    return float(px), float(py), float(xy[2])


def click(page: Any, x: float, y: float) -> None:
    """Press and release the left button at page position (x, y) without moving in between."""
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.up()


def install_frame_clock(page: Any) -> None:
    """Record in the page the wall-clock time (ms) of every image load and of every mouse-up (for latencies)."""
    page.evaluate(
        "() => { if (window.__lx) return; window.__lx = {loads: [], ups: []};"
        " document.addEventListener('load', e => { if (e.target.tagName === 'IMG') {"
        "   const m = e.target.parentElement && e.target.closest('.layout-grid-item');"
        "   const mk = m && m.querySelector('[id^=lx-view-]');"
        "   window.__lx.loads.push({t: Date.now(), view: mk ? mk.id.slice(8) : ''}); } }, true);"
        " document.addEventListener('mouseup', () => window.__lx.ups.push(Date.now()), true); }"
    )


def frame_times(page: Any) -> dict[str, list]:
    """Return the recorded {'loads': [{t, view}], 'ups': [t]} (milliseconds since the epoch)."""
    return page.evaluate("() => window.__lx")


def lesion_targets(instances: Any) -> dict[int, tuple[float, float, float]]:
    """Return, per instance id, the RAS centre of its voxel deepest inside it (a safe place to click)."""
    from scipy import ndimage

    targets = {}
    for lesion_id in instances.ids:
        box = instances.bbox_slices(lesion_id, (1, 1, 1))
        mask = instances.labels[box] == int(lesion_id)
        depth = ndimage.distance_transform_edt(mask)
        k, j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
        ijk = (i + box[2].start, j + box[1].start, k + box[0].start)
        ras = instances.geometry.ijk_to_ras_points(np.array([ijk], dtype=float))[0]
        targets[int(lesion_id)] = (float(ras[0]), float(ras[1]), float(ras[2]))
    return targets


def scroll_to(page: Any, server: ViewerServer, view: str, ras: Sequence[float], max_steps: int = 200) -> dict[str, Any]:
    """Scroll ``view`` with the mouse wheel, one slice at a time, until its plane passes through ``ras``; return the state."""
    box = view_image_box(page, view)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    state = server.state()
    for _ in range(max_steps):
        _, _, dz = ras_to_page(state, box, view, ras)
        if abs(dz) < 0.5:
            return state
        offset = state["views"][view]["slice_offset"]
        page.mouse.wheel(0, -100 if dz > 0 else 100)  # one slice per wheel event; scrolling down lowers the offset
        # wheel events queue up on the server: wait for this one before deciding on the next
        state = server.wait_for(lambda s, before=offset: s["views"][view]["slice_offset"] != before, timeout=10)
    raise RuntimeError(f"could not scroll {view} to RAS {tuple(ras)}")


def crop(png: bytes, box: dict[str, float]) -> np.ndarray:
    """Return the RGB pixels of a full-page PNG screenshot inside ``box`` (page coordinates, device scale 1)."""
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    x0, y0 = int(round(box["x"])), int(round(box["y"]))
    x1, y1 = int(round(box["x"] + box["width"])), int(round(box["y"] + box["height"]))
    return image[y0:y1, x0:x1]


def require_browser() -> None:
    """Skip without Playwright or trame-slicer; fail (with the fix) when Chromium is missing."""
    import pytest

    pytest.importorskip("playwright.sync_api")
    pytest.importorskip("trame_slicer")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is missing at {CHROMIUM}: install it with 'apt-get install chromium' (.ci/run does)")
