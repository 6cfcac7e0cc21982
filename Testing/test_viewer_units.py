"""Browser-viewer parts that need no browser: clicks -> RAS, the worker's cancel semantics, panel content, CLI checks."""

from __future__ import annotations

import math
import socket
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from LesionXAILib.viewer import curve_svg, panel
from LesionXAILib.viewer.headless import EGL_WINDOW, WINDOW_VARIABLE, configure_offscreen
from LesionXAILib.viewer.requests import LesionWorker

SVG = "{http://www.w3.org/2000/svg}"


# ---------------------------------------------------------------- headless


def test_offscreen_selects_egl_but_keeps_a_users_choice():
    env: dict[str, str] = {}
    assert configure_offscreen(env) == EGL_WINDOW and env[WINDOW_VARIABLE] == EGL_WINDOW
    env = {WINDOW_VARIABLE: "vtkOSOpenGLRenderWindow"}
    assert configure_offscreen(env) == "vtkOSOpenGLRenderWindow"


# ---------------------------------------------------------------- clicks


@pytest.fixture()
def axial_slice_node():
    slicer = pytest.importorskip("slicer")
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    node = scene.AddNewNodeByClass("vtkMRMLSliceNode")
    node.SetOrientation("Axial")
    node.SetDimensions(200, 100, 1)
    node.SetFieldOfView(100.0, 50.0, 1.0)
    node.JumpSliceByCentering(10.0, 20.0, 30.0)
    return node


def expected_axial_ras(x: float, y: float) -> tuple[float, float, float]:
    """RAS under display (x, y) of the fixture's view, by hand: 0.5 mm per pixel, centre pixel (100, 50) at (10, 20, 30), screen left = patient right."""
    return (10.0 - (x - 100.0) * 0.5, 20.0 + (y - 50.0) * 0.5, 30.0)


@pytest.mark.slicer
def test_display_to_ras_and_back(axial_slice_node):
    from LesionXAILib.viewer.clicks import display_to_ras, ras_to_display

    for x, y in ((100, 50), (0, 0), (137, 12), (199, 99)):
        ras = display_to_ras(axial_slice_node, x, y)
        assert ras == pytest.approx(expected_axial_ras(x, y))
        back = ras_to_display(axial_slice_node, ras)
        assert back == pytest.approx((x, y, 0.0))
    # a point off the plane reports its distance in slice units (mm along S here)
    assert ras_to_display(axial_slice_node, (10.0, 20.0, 32.5))[2] == pytest.approx(2.5)


def _interactor():
    from vtkmodules.vtkRenderingCore import vtkRenderWindowInteractor

    return vtkRenderWindowInteractor()


def _event(interactor, name: str, x: int, y: int) -> None:
    interactor.SetEventInformation(x, y)
    interactor.InvokeEvent(name)


@pytest.mark.slicer
def test_click_is_press_and_release_at_the_same_spot(axial_slice_node):
    from LesionXAILib.viewer.clicks import ViewClicks

    iren = _interactor()
    clicks = []
    now = [0.0]
    detector = ViewClicks("Red", iren, lambda: axial_slice_node, clicks.append, clock=lambda: now[0]).attach()
    _event(iren, "LeftButtonPressEvent", 120, 40)
    _event(iren, "MouseMoveEvent", 121, 41)  # a jitter within the tolerance is still a click
    _event(iren, "LeftButtonReleaseEvent", 121, 41)
    assert len(clicks) == 1
    c = clicks[0]
    assert (c.view, c.x, c.y) == ("Red", 121.0, 41.0)
    assert c.ras == pytest.approx(expected_axial_ras(121, 41))

    # a window/level drag that comes back to where it started is not a click
    _event(iren, "LeftButtonPressEvent", 50, 50)
    _event(iren, "MouseMoveEvent", 80, 60)
    _event(iren, "MouseMoveEvent", 50, 50)
    _event(iren, "LeftButtonReleaseEvent", 50, 50)
    # nor is a release far from the press (no move events in between)
    _event(iren, "LeftButtonPressEvent", 10, 10)
    _event(iren, "LeftButtonReleaseEvent", 30, 10)
    # a release without a press (button went down elsewhere) is ignored
    _event(iren, "LeftButtonReleaseEvent", 10, 10)
    assert len(clicks) == 1

    # the shared policy, as in the Slicer module: a long hold is not a click, nor a press with a modifier key
    _event(iren, "LeftButtonPressEvent", 60, 60)
    now[0] += 2.0
    _event(iren, "LeftButtonReleaseEvent", 60, 60)
    iren.SetEventInformation(60, 60, 0, 1)  # control 0, shift 1
    iren.InvokeEvent("LeftButtonPressEvent")
    _event(iren, "LeftButtonReleaseEvent", 60, 60)
    assert len(clicks) == 1
    # 4 px (the policy's limit, inclusive) within 0.6 s is a click
    _event(iren, "LeftButtonPressEvent", 60, 60)
    now[0] += 0.5
    _event(iren, "LeftButtonReleaseEvent", 64, 60)
    assert len(clicks) == 2

    detector.detach()
    _event(iren, "LeftButtonPressEvent", 5, 5)
    _event(iren, "LeftButtonReleaseEvent", 5, 5)
    assert len(clicks) == 2


def test_both_front_ends_use_the_one_click_policy():
    """The Slicer module and the browser viewer import the same detector; no front end defines its own thresholds."""
    from pathlib import Path

    from LesionXAILib.session import clicks as shared
    from LesionXAILib.viewer import clicks as browser

    assert browser.ClickDetector is shared.ClickDetector and browser.ClickPolicy is shared.ClickPolicy
    root = Path(__file__).resolve().parents[1]
    module = (root / "LesionXAI" / "LesionXAI.py").read_text()
    assert "from LesionXAILib.session.clicks import ClickDetector" in module
    for path in [root / "LesionXAI" / "LesionXAI.py", *(root / "LesionXAILib").rglob("*.py")]:
        if path.name == "clicks.py" and path.parent.name == "session":
            continue
        text = path.read_text()
        assert "tolerance_px" not in text and "max_distance_px=" not in text, path


# ---------------------------------------------------------------- worker


class UiThread:
    """The role of the server's event loop: callbacks posted from the worker run here, in order."""

    def __init__(self) -> None:
        self.calls: list = []
        self.lock = threading.Lock()
        self.thread_ids: set[int] = set()

    def post(self, fn, *args) -> None:
        with self.lock:
            self.calls.append((fn, args))

    def run_pending(self) -> None:
        with self.lock:
            calls, self.calls = self.calls, []
        for fn, args in calls:
            self.thread_ids.add(threading.get_ident())
            fn(*args)


def make_worker(compute, ui: UiThread, log: list, interval: float = 0.0) -> LesionWorker:
    return LesionWorker(
        compute,
        ui.post,
        on_result=lambda r, v: log.append(("result", r.lesion_id, v)),
        on_error=lambda r, e: log.append(("error", r.lesion_id, str(e))),
        on_progress=lambda r, f, m: log.append(("progress", r.lesion_id, f)),
        on_cancelled=lambda r: log.append(("cancelled", r.lesion_id)),
        progress_interval_s=interval,
        on_background=lambda r, v: log.append(("background", r.lesion_id, v)),
    )


def test_a_new_request_cancels_the_running_one_and_replaces_the_waiting_one():
    started = {i: threading.Event() for i in (1, 2, 3)}
    release = threading.Event()
    computed = []

    def compute(lesion_id, progress, cancel):
        started[lesion_id].set()
        computed.append(lesion_id)
        while not release.is_set():
            progress(0.5, "working")  # raises Cancelled once the token is set
            time.sleep(0.005)
        return lesion_id * 10

    ui, log = UiThread(), []
    worker = make_worker(compute, ui, log)
    try:
        first = worker.submit(1)
        assert started[1].wait(5)
        second = worker.submit(2)  # cancels 1, waits
        third = worker.submit(3)  # replaces 2 before it starts
        assert first.cancelled and second.cancelled and not third.cancelled
        assert started[3].wait(5)
        assert worker.submit(3) is third  # the same lesion again does not restart it
        release.set()
        assert worker.wait_idle(5)
        ui.run_pending()
    finally:
        worker.close()
    assert computed == [1, 3]  # 2 never started
    outcomes = [e for e in log if e[0] != "progress"]
    assert ("cancelled", 1) in outcomes and ("cancelled", 2) in outcomes
    assert outcomes[-1] == ("result", 3, 30)
    assert not any(e[0] == "result" and e[1] in (1, 2) for e in log)
    assert worker.is_latest(third)


def test_errors_are_delivered_and_the_worker_keeps_serving():
    def compute(lesion_id, progress, cancel):
        if lesion_id == 4:
            raise ValueError("lesion 4 is broken")
        progress(1.0, "done")
        return "ok"

    ui, log = UiThread(), []
    worker = make_worker(compute, ui, log)
    try:
        worker.submit(4)
        assert worker.wait_idle(5)
        worker.submit(5)
        assert worker.wait_idle(5)
        ui.run_pending()
    finally:
        worker.close()
    assert ("error", 4, "lesion 4 is broken") in log
    assert ("result", 5, "ok") in log
    assert ("progress", 5, 1.0) in log
    assert ui.thread_ids == {threading.get_ident()}  # every callback ran on the 'UI' thread


def test_background_precomputation_yields_to_clicks():
    gates = {i: threading.Event() for i in (1, 3, 5)}
    started: list[int] = []
    started_event = {i: threading.Event() for i in (1, 3, 5)}

    def compute(lesion_id, progress, cancel):
        started.append(lesion_id)
        started_event[lesion_id].set()
        while not gates[lesion_id].is_set():
            progress(0.5, "working")
            time.sleep(0.005)
        return lesion_id * 10

    ui, log = UiThread(), []
    worker = make_worker(compute, ui, log)
    try:
        worker.prefetch([1, 2, 3], skip=lambda i: i == 2)  # 2 is 'cached' already
        assert started_event[1].wait(5) and not worker.busy  # background work is not 'busy' for the UI
        request = worker.submit(5)  # a click on another lesion interrupts 1 (re-queued first) ...
        assert started_event[5].wait(5) and worker.busy
        gates[5].set()
        started_event[1].clear()
        assert started_event[1].wait(5)  # ... which restarts once 5 is done
        gates[1].set()
        assert started_event[3].wait(5)
        promoted = worker.submit(3)  # a click on the lesion being precomputed takes it over
        assert promoted is not request and not promoted.background and worker.is_latest(promoted)
        gates[3].set()
        assert worker.wait_idle(5)
        ui.run_pending()
    finally:
        worker.close()
    assert started == [1, 5, 1, 3]
    assert ("result", 5, 50) in log and ("background", 1, 10) in log and ("result", 3, 30) in log
    assert not any(e[0] == "cancelled" for e in log)  # interrupting background work is not reported as a cancel
    assert not any(e[0] == "progress" and e[1] == 1 for e in log)  # nor is its progress
    assert worker.background_left == 0


def test_progress_is_throttled_but_the_end_is_always_reported():
    def compute(lesion_id, progress, cancel):
        for i in range(1, 201):
            progress(i / 200.0, "step")
        return None

    ui, log = UiThread(), []
    worker = make_worker(compute, ui, log, interval=10.0)
    try:
        worker.submit(1)
        assert worker.wait_idle(5)
        ui.run_pending()
    finally:
        worker.close()
    fractions = [e[2] for e in log if e[0] == "progress"]
    assert fractions[0] == pytest.approx(1 / 200.0) and fractions[-1] == 1.0 and len(fractions) == 2


# ---------------------------------------------------------------- panel content


def test_context_curve_svg_matches_the_curve():
    radii = [0, 1, 2, 3, 4, 5]
    probs = [0.05, 0.1, 0.2, 0.6, 0.8, 0.9]
    detected = [False, False, False, True, True, True]
    svg = curve_svg.context_curve_svg(radii, probs, detected, threshold=0.5, context_needed_mm=3.0, title="Lesion 2")
    root = ET.fromstring(svg)
    circles = root.findall(f"{SVG}circle")
    assert [c.get("class") for c in circles] == ["missed"] * 3 + ["detected"] * 3
    # the plot area spans LEFT..WIDTH-RIGHT for 0..5 mm and TOP..HEIGHT-BOTTOM for p = 1..0
    width = curve_svg.WIDTH - curve_svg.LEFT - curve_svg.RIGHT
    height = curve_svg.HEIGHT - curve_svg.TOP - curve_svg.BOTTOM
    for c, r, p in zip(circles, radii, probs):
        assert float(c.get("cx")) == pytest.approx(curve_svg.LEFT + width * r / 5, abs=0.06)
        assert float(c.get("cy")) == pytest.approx(curve_svg.TOP + height * (1 - p), abs=0.06)
    threshold = root.find(f"{SVG}line[@class='threshold']")
    assert float(threshold.get("y1")) == pytest.approx(curve_svg.TOP + height * 0.5, abs=0.06)
    needed = root.find(f"{SVG}line[@class='context-needed']")
    assert float(needed.get("x1")) == pytest.approx(curve_svg.LEFT + width * 3 / 5, abs=0.06)
    assert root.find(f"{SVG}title").text == "Lesion 2"
    # a lesion never detected has no context-needed line; NaN probabilities are drawn at 0
    svg = curve_svg.context_curve_svg([0, 1], [float("nan"), 0.2], [False, False], 0.5, None)
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}line[@class='context-needed']") is None
    with pytest.raises(ValueError):
        curve_svg.context_curve_svg([0, 1], [0.1], [True, True])


def test_statistics_rows_and_table_items():
    stats = {
        "id": 7, "status": "TP", "voxels": 42, "volume_mm3": 42.0, "mean_probability": 0.8123,
        "flair_share": 0.634, "context_needed_mm": 7.0, "context_status": "needs_context",
        "centroid_ras": (1.0, -2.25, 3.5),
    }  # fmt: skip
    rows = {r["label"]: r["value"] for r in panel.statistics_items(stats, 15.0)}
    assert rows == {
        "Status": "TP",
        "Volume": "42.0 mm³ (42 voxels)",
        "Mean probability": "0.812",
        "FLAIR share": "63 %",
        "Context needed": "7 mm",
        "Centroid (RAS mm)": "(1.0, -2.2, 3.5)",
    }
    before = dict(stats, flair_share=None, context_needed_mm=None, context_status=None)
    rows = {r["label"]: r["value"] for r in panel.statistics_items(before, 15.0)}
    assert rows["FLAIR share"] == panel.NONE_TEXT and rows["Context needed"] == panel.NONE_TEXT
    assert panel.format_context(math.inf, "needs_context", 15.0) == "> 15 mm"
    assert panel.format_context(None, "not_detected") == "not detected even with full context"
    assert panel.format_context(0.0, "detected_without_context").startswith("0 mm")

    items = panel.table_items([stats, dict(stats, id=8, context_needed_mm=math.inf), dict(stats, id=9, mean_probability=None)], 15.0)
    assert [i["id"] for i in items] == [7, 8, 9]
    assert items[0]["context_needed_mm"] == 7.0 and items[0]["context_needed_mm_text"] == "7"
    assert items[1]["context_needed_mm"] > 1e6 and items[1]["context_needed_mm_text"] == "> 15"  # sorts last
    assert items[2]["mean_probability"] is None and items[2]["mean_probability_text"] == panel.NONE_TEXT
    keys = [h["key"] for h in panel.table_headers()]
    assert keys == [k for k, _ in panel.TABLE_COLUMNS] and all(k in items[0] for k in keys)
    assert panel.overlay_items(["smoothgrad_flair", "context_shells"]) == [
        {"title": "SmoothGrad · FLAIR", "value": "smoothgrad_flair"},
        {"title": "Context shells", "value": "context_shells"},
    ]


def test_legend_gradient_places_each_colour_at_its_value():
    legend = {"colormap": "div", "min": -2.0, "max": 2.0, "units": "a.u.",
              "colors": [(-2.0, (0.0, 0.0, 1.0)), (0.0, (1.0, 1.0, 1.0)), (1.0, (1.0, 0.5, 0.0)), (2.0, (1.0, 0.0, 0.0))]}  # fmt: skip
    view = panel.legend_view(legend)
    assert view["gradient"] == (
        "linear-gradient(to right, rgb(0,0,255) 0.0%, rgb(255,255,255) 50.0%, rgb(255,128,0) 75.0%, rgb(255,0,0) 100.0%)"
    )
    assert (view["min"], view["max"], view["units"]) == ("-2", "2", "a.u.")
    shells = {"min": 0.0, "max": 2.0, "units": "mm", "colors": [(0.0, (255, 0, 0)), (1.0, (0, 255, 0)), (2.0, (0, 0, 255))]}
    view = panel.legend_view(shells, discrete=True)
    assert view["gradient"] == (
        "linear-gradient(to right, rgb(255,0,0) 0.0% 50.0%, rgb(0,255,0) 50.0% 100.0%, rgb(0,0,255) 100.0% 100.0%)"
    )
    assert panel.legend_view({})["gradient"] == "none"


# ---------------------------------------------------------------- command line checks (before any server)


def run_view(argv, capsys):
    from LesionXAILib.cli.main import main

    code = main(["view", *argv])
    captured = capsys.readouterr()
    assert "LesionXAI viewer running" not in captured.out  # the server never started
    return code, captured.err, None


def test_bad_paths_fail_in_the_terminal_before_the_server(tmp_path, capsys):
    code, err, _ = run_view(["--flair", str(tmp_path / "missing.nii.gz"), "--t1", str(tmp_path / "t1.nii.gz")], capsys)
    assert code == 2 and "FLAIR" in err and "missing.nii.gz" in err and "not found" in err
    (tmp_path / "flair.nii.gz").write_bytes(b"")
    code, err, _ = run_view(["--flair", str(tmp_path / "flair.nii.gz")], capsys)
    assert code == 2 and "--t1 is missing" in err
    code, err, _ = run_view(["--gt", str(tmp_path / "gt.nii.gz")], capsys)
    assert code == 2 and "--gt needs --flair and --t1" in err
    code, err, _ = run_view(["--flair", str(tmp_path / "flair.txt"), "--t1", str(tmp_path / "flair.nii.gz")], capsys)
    assert code == 2 and "unsupported file type" in err
    code, err, _ = run_view(["--model", str(tmp_path / "nope.pt")], capsys)
    assert code == 2 and "nope.pt" in err and "not found" in err


def test_a_busy_port_fails_before_loading_anything(tmp_path, capsys):
    from LesionXAILib.cli.commands.view import check_port
    from LesionXAILib.errors import ParameterError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(ParameterError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port("127.0.0.1", port)
    with pytest.raises(ParameterError, match="0..65535"):
        check_port("127.0.0.1", 70000)
    check_port("127.0.0.1", 0)


@pytest.mark.parametrize("secret", ["-leading-dash_token", "--looks-like-an-option", "plain_Token-123"])
def test_trame_reads_the_session_secret_whatever_character_it_starts_with(secret):
    # token_urlsafe starts with "-" once in 64 launches; trame's own parser must still hand wslink the whole token
    pytest.importorskip("trame_server")
    from trame_server.core import Server

    from LesionXAILib.viewer.server import trame_argv

    argv = trame_argv(["lesionxai"], secret)
    assert argv[0] == "lesionxai"
    options, unknown = Server(f"lesionxai-argv-{abs(hash(secret))}").cli.parse_known_args(argv[1:])
    assert options.authKey == secret and unknown == []
