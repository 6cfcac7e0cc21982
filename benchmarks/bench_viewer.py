"""Browser-viewer benchmark: server start, click -> selection, click -> overlay visible (fresh and cached), RSS.

Runs ``lesionxai view`` as a user would (a subprocess on a free localhost port, default: no arguments =
the phantom + demo model) and drives it from headless Debian Chromium with real mouse events. Latencies
are measured from the browser's mouse-up (``Date.now()`` in the page) to
  - selection: the server knowing which lesion is under the click and having requested it,
  - overlay visible: the first image of the axial view that the browser loaded after ``show_lesion`` ran,
for lesions never computed (fresh) and for lesions computed before (cached). The render part compares one
slice-view frame with trame-slicer's 8x multisampling against none (the viewer's setting) on this
machine's renderer, for a slice view and a 3D view showing the lesion surfaces. Targets: cached <= 0.3 s, fresh <= 2.5 s (demo model).

    .venv/bin/python benchmarks/bench_viewer.py [--lesions 3] [--small] [--json out.json] [--screenshot PNG]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_CACHED_S = 0.3
TARGET_FRESH_S = 2.5
VIEW = "Red"


def _subject(small: bool, workdir: Path) -> tuple[list[str], object]:
    """Return (viewer arguments, instances computed here with the engine) for the benchmark subject."""
    from LesionXAILib.image_io import load_pair, read_label_image
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import SegmentationSettings, segment
    from LesionXAILib.viewer.inputs import DEFAULT_PHANTOM_FOV_MM, DEFAULT_PHANTOM_LESIONS, DEFAULT_PHANTOM_SEED

    if small:
        settings, seed = PhantomSettings(n_lesions=6, fov_mm=(64.0, 64.0, 64.0)), 7
    else:  # exactly what `lesionxai view` with no arguments shows
        settings, seed = PhantomSettings(n_lesions=DEFAULT_PHANTOM_LESIONS, fov_mm=DEFAULT_PHANTOM_FOV_MM), DEFAULT_PHANTOM_SEED
    phantom = generate_phantom(seed, settings)
    paths = phantom.write(workdir)
    pair = load_pair(paths["flair"], paths["t1"])
    gt = read_label_image(paths["lesions"], pair.geometry)
    instances = segment(pair, load_model(), SegmentationSettings(min_size=3), gt).instances
    args = [] if not small else ["--flair", str(paths["flair"]), "--t1", str(paths["t1"]), "--gt", str(paths["lesions"])]
    return args, instances


def _click_and_measure(page, server, lesion_id: int, ras, timeout: float = 180.0) -> dict:
    """Click lesion ``lesion_id`` in the axial view and return its latencies (seconds)."""
    from LesionXAILib.viewer import harness as h

    state = h.scroll_to(page, server, VIEW, ras)
    box = h.view_image_box(page, VIEW)
    x, y, _ = h.ras_to_page(state, box, VIEW, ras)
    clicks, shown_before = state["clicks"], len(state["timings"]["history"])
    ups_before = len(h.frame_times(page)["ups"])
    page.mouse.move(x, y)
    time.sleep(0.5)  # as a user pauses on the lesion: the scroll's renders are done before the click
    h.click(page, x, y)
    state = server.wait_for(lambda s: s["clicks"] == clicks + 1, timeout=30)
    if state["last_click"]["lesion_id"] != lesion_id:
        raise RuntimeError(f"clicked lesion {lesion_id} but the server found {state['last_click']['lesion_id']}")
    state = server.wait_for(lambda s: len(s["timings"]["history"]) > shown_before or s["error"], timeout=timeout)
    if state["error"]:
        raise RuntimeError(state["error"])
    shown = state["timings"]["history"][-1]
    page.wait_for_function(
        "([v, t]) => window.__lx.loads.some(e => e.view === v && e.t >= t)", arg=[VIEW, shown["shown_wall_time"] * 1000.0],
        timeout=30000,
    )  # fmt: skip
    clock = h.frame_times(page)
    up = clock["ups"][ups_before] / 1000.0
    visible = min(e["t"] for e in clock["loads"] if e["view"] == VIEW and e["t"] >= shown["shown_wall_time"] * 1000.0) / 1000.0
    server_click = state["last_click"]["wall_time"]
    selection = server_click + state["timings"]["click_to_selection_s"]
    return {
        "lesion_id": lesion_id,
        "from_cache": shown["from_cache"],
        "browser_to_server_s": server_click - up,
        "click_to_selection_s": selection - up,
        "click_to_shown_s": shown["shown_wall_time"] - up,
        "click_to_overlay_visible_s": visible - up,
        "compute_s": shown["compute_s"],
        "show_lesion_s": shown.get("show_lesion_s"),
        "panel_s": shown.get("panel_s"),
    }


def _render_worker(frames: int) -> dict:
    """Time frames of trame-slicer slice and 3D views with 8x and with no multisampling, alternating, in one process.

    Both members of a pair show the same scene (a small phantom with one lesion's overlay selected through the
    bridge), so they see the same machine load; each frame follows a slice change (as scrolling does) or a
    camera turn (3D).
    """
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import SliceView, ThreeDView

    from LesionXAILib.mrml.session import SessionSettings
    from LesionXAILib.viewer.headless import configure_offscreen, prepare_view
    from LesionXAILib.viewer.inputs import ViewerInputs
    from LesionXAILib.viewer.subject import load_subject_nodes, start_session

    configure_offscreen()
    app = SlicerApp()
    pairs = {}
    for kind, make in (("axial", lambda tag: SliceView(app.scene, app.app_logic, tag)),
                       ("3d", lambda tag: ThreeDView(app.scene, app.app_logic, tag))):  # fmt: skip
        pair = []
        for msaa in (8, 0):
            view = make(f"Bench{kind}{msaa}")
            prepare_view(view, msaa)
            if isinstance(view, SliceView):
                view.set_orientation("Axial")
            view.render_window().SetSize(600, 800)
            view.interactor().UpdateSize(600, 800)
            pair.append((msaa, view))
        pairs[kind] = pair
    inputs = ViewerInputs(phantom_seed=7, phantom_fov_mm=(64.0, 64.0, 64.0), phantom_lesions=6)
    nodes = load_subject_nodes(app.scene, inputs)
    session = start_session(app.scene, nodes, settings=SessionSettings(methods=("smoothgrad",), samples=4))
    session.segmentation_node.CreateClosedSurfaceRepresentation()  # what a 3D view of the lesions draws
    if session.instance_ids:
        session.select_lesion(session.instance_ids[0])
    out = {"render_window": None, "ms_per_frame": {}}
    for kind, pair in pairs.items():
        times: dict[int, list] = {msaa: [] for msaa, _ in pair}
        for _, view in pair:
            view.reset_view()
            view.render_window().Render()
        for i in range(frames):
            for msaa, view in pair:
                if isinstance(view, SliceView):
                    view.set_slice_value(view.get_slice_value() + (1 if i % 2 else -1))
                else:
                    view.renderer().GetActiveCamera().Azimuth(2.0)
                t = time.perf_counter()
                view.render_window().Render()
                times[msaa].append(time.perf_counter() - t)
        for msaa, view in pair:
            out["render_window"] = view.render_window().GetClassName()
            out["ms_per_frame"][f"{kind} {msaa}x"] = round(1000 * statistics.median(times[msaa]), 2)
    return out


def _render_part(frames: int) -> dict:
    """Run the render worker in a fresh process; return its timings."""
    cmd = [sys.executable, __file__, "--render-worker", "--frames", str(frames)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"render worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(line[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=3, help="fresh lesions to click (each then re-clicked cached)")
    parser.add_argument("--small", action="store_true", help="64 mm phantom instead of the default demo phantom")
    parser.add_argument("--frames", type=int, default=20, help="frames per view in the render part")
    parser.add_argument("--no-render", action="store_true", help="skip the multisampling / 3D render part")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--screenshot", default=None, help="save a screenshot of the last selected state here")
    parser.add_argument("--render-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render_worker:
        print(json.dumps(_render_worker(args.frames)), flush=True)
        return 0

    from LesionXAILib.viewer import harness as h

    results: dict = {"subject": "small 64 mm phantom" if args.small else "default demo phantom (lesionxai view, no arguments)"}
    with tempfile.TemporaryDirectory(prefix="bench-viewer-") as tmp:
        t = time.perf_counter()
        viewer_args, instances = _subject(args.small, Path(tmp))
        results["engine_segmentation_here_s"] = round(time.perf_counter() - t, 2)
        targets = h.lesion_targets(instances)
        order = sorted(targets, key=lambda i: -instances.get(i).voxels)  # big lesions first: easy to hit
        picks = order[: max(1, args.lesions)]
        server = h.ViewerServer(viewer_args, log_path=Path(tmp) / "server.log")
        try:
            server.start(timeout=600)
            results["server_start_s"] = round(server.start_seconds, 2)
            results["server_log_ready_line"] = next(
                (ln.split("lesionxai: ", 1)[-1] for ln in server.log_tail(200).splitlines() if "ready in" in ln), None
            )
            state = server.state()
            results["rss_after_start_mb"] = state["rss_mb"]
            with h.chromium_page() as page:
                t = time.perf_counter()
                h.open_viewer(page, server.url)
                results["page_load_s"] = round(time.perf_counter() - t, 2)
                h.install_frame_clock(page)
                time.sleep(1.0)
                fresh = [_click_and_measure(page, server, i, targets[i]) for i in picks]
                cached = [_click_and_measure(page, server, i, targets[i]) for i in picks]
                if args.screenshot:
                    page.screenshot(path=args.screenshot)
            state = server.state()
            results["rss_end_mb"] = state["rss_mb"]
            results["peak_rss_mb"] = state["peak_rss_mb"]
        finally:
            code = server.stop()
        results["server_exit_code"] = code
    results["fresh"] = fresh
    results["cached"] = cached
    if not all(not r["from_cache"] for r in fresh) or not all(r["from_cache"] for r in cached):
        raise RuntimeError("expected the first clicks to compute and the second ones to come from the cache")

    def med(rows, key):
        return round(statistics.median(r[key] for r in rows), 3)

    summary = {
        "click_to_selection_s": med(fresh + cached, "click_to_selection_s"),
        "browser_to_server_s": med(fresh + cached, "browser_to_server_s"),
        "cached_click_to_overlay_visible_s": med(cached, "click_to_overlay_visible_s"),
        "fresh_click_to_overlay_visible_s": med(fresh, "click_to_overlay_visible_s"),
        "fresh_compute_s": med(fresh, "compute_s"),
    }
    summary["cached_target_met"] = summary["cached_click_to_overlay_visible_s"] <= TARGET_CACHED_S
    summary["fresh_target_met"] = summary["fresh_click_to_overlay_visible_s"] <= TARGET_FRESH_S
    results["summary"] = summary
    if not args.no_render:
        render = _render_part(args.frames)
        results["render"] = render
        ms = render["ms_per_frame"]
        results["render_ratio_msaa8_over_none"] = {
            kind: round(ms[f"{kind} 8x"] / ms[f"{kind} 0x"], 2) for kind in ("axial", "3d") if ms.get(f"{kind} 0x")
        }

    print(f"subject: {results['subject']}")
    print(f"server start (process start -> URL printed): {results['server_start_s']} s; page load {results['page_load_s']} s")
    for name, rows in (("fresh", fresh), ("cached", cached)):
        for r in rows:
            print(
                f"  {name:6s} lesion {r['lesion_id']:3d}: mouse-up -> selection {r['click_to_selection_s'] * 1000:7.1f} ms,"
                f" -> shown {r['click_to_shown_s'] * 1000:7.1f} ms, -> overlay visible {r['click_to_overlay_visible_s'] * 1000:7.1f} ms"
                f" (compute {r['compute_s']:.2f} s; show_lesion {r['show_lesion_s'] * 1000:.0f} ms, panel {r['panel_s'] * 1000:.0f} ms)"
            )
    print(
        f"median: selection {summary['click_to_selection_s'] * 1000:.0f} ms; overlay visible cached "
        f"{summary['cached_click_to_overlay_visible_s'] * 1000:.0f} ms (target <= {TARGET_CACHED_S * 1000:.0f}: "
        f"{'met' if summary['cached_target_met'] else 'MISSED'}), fresh {summary['fresh_click_to_overlay_visible_s']:.2f} s "
        f"(target <= {TARGET_FRESH_S} s: {'met' if summary['fresh_target_met'] else 'MISSED'})"
    )
    print(f"server RSS: {results['rss_after_start_mb']} MiB after start, {results['rss_end_mb']} MiB at the end, peak {results['peak_rss_mb']} MiB")
    if "render" in results:
        r = results["render"]
        print(f"render ({r['render_window']}, 600x800 px, median ms per frame): {r['ms_per_frame']}")
        print(f"8x multisampling / none (same process, alternating frames): {results['render_ratio_msaa8_over_none']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
