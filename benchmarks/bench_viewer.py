"""Browser-viewer benchmark: server start, click -> selection, click -> overlay visible (fresh and cached), RSS.

Runs ``lesionxai view`` as a user would (a subprocess on a free localhost port, default: no arguments =
the phantom + demo model) and drives it from headless Debian Chromium with real mouse events. Latencies
are measured from the browser's mouse-up (``Date.now()`` in the page) to
  - selection: the server knowing which lesion is under the click and having requested it,
  - overlay visible: the first image of the axial view that the browser loaded after ``show_lesion`` ran,
for lesions never computed (fresh) and for lesions computed before (cached). The render part compares one
slice-view frame with trame-slicer's 8x multisampling against none (the viewer's setting) on this
machine's renderer, for a slice view and a 3D view showing the lesion surfaces. Targets: cached <= 0.3 s, fresh <= 2.5 s (demo model).

The bridge part (``--bridge``, in this process, no browser) times what a click costs inside the MRML
bridge on the same subject, wall and CPU time, methods interleaved lesion by lesion so that they share
the machine's load: the one-shot analysis the viewer used to wait for (``analyse_lesion``: CAM layer
activations recomputed per lesion, ROI margin 24 mm) against the staged one of ``compute_lesion``
(activations once per subject; time to the first stage = the overlay shown, and to the complete
analysis) at 24 mm and at the current default margin; then a cached re-show writing only the shown
overlay against writing every overlay, shells and chart; and the Pearson r of SmoothGrad and
Grad-CAM++ at ROI margins against full-volume maps (``--margins``).

    .venv/bin/python benchmarks/bench_viewer.py [--lesions 3] [--small] [--json out.json] [--screenshot PNG]
    .venv/bin/python benchmarks/bench_viewer.py --bridge [--lesions 4] [--margins 8 12 24]
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
    from Testing.support import viewer_harness as h

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
    def first_overlay(s):  # the first stage of this click that put the overlay on screen (a fresh lesion comes in stages)
        return next((h for h in s["timings"]["history"][shown_before:] if h.get("overlay_shown", True)), None)

    state = server.wait_for(lambda s: first_overlay(s) is not None or s["error"], timeout=timeout)
    if state["error"]:
        raise RuntimeError(state["error"])
    shown = first_overlay(state)
    state = server.wait_for(lambda s: any(h.get("complete", True) for h in s["timings"]["history"][shown_before:]) or s["error"], timeout=timeout)
    if state["error"]:
        raise RuntimeError(state["error"])
    complete = next(h for h in state["timings"]["history"][shown_before:] if h.get("complete", True))
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
        "click_to_complete_s": complete["shown_wall_time"] - up,  # statistics and curve of the whole analysis shown
        "stages": len(state["timings"]["history"]) - shown_before,
        "compute_s": complete["compute_s"],
        "first_stage_compute_s": shown["compute_s"],
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

    from LesionXAILib.session.settings import SessionSettings
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
    writer = start_session(app.scene, nodes, settings=SessionSettings(methods=("smoothgrad",), samples=4))
    writer.segmentation_node.CreateClosedSurfaceRepresentation()  # what a 3D view of the lesions draws
    if writer.session.instance_ids:
        writer.select_lesion(writer.session.instance_ids[0])
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


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> dict:
    return {"wall_s": round(time.perf_counter() - start[0], 3), "cpu_s": round(time.process_time() - start[1], 3)}


def _bridge_part(n_lesions: int, margins: list[float]) -> dict:
    """Time per-lesion computation and cached re-shows inside the bridge (see the module docstring); return the numbers."""
    import resource

    import numpy as np
    import slicer

    from LesionXAILib.analysis import SubjectAnalysis, analyse_lesion
    from LesionXAILib.explain.settings import DEFAULT_ROI_MARGIN_MM
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.mrml import views
    from LesionXAILib.mrml.writer import SceneWriter
    from LesionXAILib.session.overlays import OVERLAYS
    from LesionXAILib.session.settings import SessionSettings
    from LesionXAILib.viewer.inputs import ViewerInputs
    from LesionXAILib.viewer.subject import _viewer_display, load_subject_nodes

    scene = slicer.vtkMRMLScene()
    views.ensure_slice_views(scene)
    nodes = load_subject_nodes(scene, ViewerInputs(phantom_seed=7))
    model = load_model()
    settings = SessionSettings()
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], model, settings, nodes["gt"], display=_viewer_display())
    result = writer.run()
    ids = sorted(result.instances.ids, key=lambda i: -result.instances.get(i).voxels)
    ids = [ids[int(round(q))] for q in np.linspace(0, len(ids) - 1, min(n_lesions, len(ids)))]  # spread over sizes
    base = settings.analysis_settings()
    at24 = base.__class__(explain=base.explain.replace(roi_margin_mm=24.0), context=base.context)
    shared24, shared = SubjectAnalysis(model, result), SubjectAnalysis(model, result)
    rows = []
    for lesion in ids:
        row = {"lesion_id": lesion, "voxels": int(result.instances.get(lesion).voxels)}
        t = _clock()
        analyse_lesion(model, result, lesion, at24)  # one stage; activations recomputed in the call
        row["one_shot_24mm"] = _since(t)
        for name, subject, chosen in (("staged_24mm", shared24, at24), (f"staged_{DEFAULT_ROI_MARGIN_MM:g}mm", shared, base)):
            t = _clock()
            first: dict = {}
            subject.analyse(lesion, chosen, first=("smoothgrad",), on_partial=lambda a: first.setdefault("t", _since(t)))
            row[name] = {"first_stage": first["t"], "complete": _since(t)}
        rows.append(row)
        print(f"  lesion {lesion} ({row['voxels']} voxels): {json.dumps({k: v for k, v in row.items() if k not in ('lesion_id', 'voxels')})}", flush=True)
    out: dict = {"lesions": rows, "whole_volume_cam_passes": {"one_shot": len(ids), "staged": shared.activation_passes}}
    # cached re-shows, alternating lesions (each show replaces the previous lesion's maps)
    results = [writer.session.compute_lesion(i) for i in ids[:2]]
    shows: dict = {"only_shown_overlay": [], "every_overlay_shells_chart": []}
    for k in range(6):
        for mode, times in shows.items():
            shown, other = results[k % len(results)], results[(k + 1) % len(results)]
            writer.show_lesion(other, "smoothgrad_flair")  # every node holds the other lesion: the timed show must rewrite
            for name in OVERLAYS:
                writer.overlay_node(name)
            t = _clock()
            writer.show_lesion(shown, "smoothgrad_flair")
            if mode == "every_overlay_shells_chart":  # what show_lesion wrote before: every map and the shells
                for name in OVERLAYS:
                    writer.overlay_node(name)
            times.append(_since(t))
    out["cached_show_ms"] = {
        mode: {"wall": round(1000 * statistics.median(r["wall_s"] for r in v), 1), "cpu": round(1000 * statistics.median(r["cpu_s"] for r in v), 1)}
        for mode, v in shows.items()
    }  # fmt: skip
    out["margins"] = _margin_fidelity(model, result, ids, margins) if margins else []
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)
    return out


def _margin_fidelity(model, result, ids, margins) -> list[dict]:
    """Return Pearson r of ROI SmoothGrad (4 samples) and Grad-CAM++ maps against full-volume maps, per lesion and margin."""
    import numpy as np

    from LesionXAILib.explain.api import instance_targets, iter_explanations
    from LesionXAILib.explain.margin_calibration import pearson_r as pearson
    from LesionXAILib.explain.settings import ExplainSettings

    rows = []
    for lesion in ids:
        target = instance_targets(result.instances, [lesion], "sum")
        base = ExplainSettings(methods=("smoothgrad", "gradcampp"), samples=4, seed=0)
        ref = next(iter_explanations(model, result.normalized, target, result.geometry, base.replace(full_volume=True))).maps
        for m in margins:
            t = _clock()
            roi = next(iter_explanations(model, result.normalized, target, result.geometry, base.replace(roi_margin_mm=m))).maps
            sg = pearson(np.stack([ref["smoothgrad_flair"], ref["smoothgrad_mprage"]]), np.stack([roi["smoothgrad_flair"], roi["smoothgrad_mprage"]]))
            rows.append({"lesion_id": lesion, "margin_mm": m, "r_smoothgrad": round(sg, 5),
                         "r_gradcampp": round(pearson(ref["gradcampp"], roi["gradcampp"]), 5), **_since(t)})  # fmt: skip
            print(f"  margin {m:g} mm lesion {lesion}: {rows[-1]}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lesions", type=int, default=3, help="fresh lesions to click (each then re-clicked cached)")
    parser.add_argument("--small", action="store_true", help="64 mm phantom instead of the default demo phantom")
    parser.add_argument("--frames", type=int, default=20, help="frames per view in the render part")
    parser.add_argument("--no-render", action="store_true", help="skip the multisampling / 3D render part")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--screenshot", default=None, help="save a screenshot of the last selected state here")
    parser.add_argument("--bridge", action="store_true", help="time the bridge in this process instead (no browser)")
    parser.add_argument("--margins", type=float, nargs="*", default=[8.0, 12.0, 24.0], help="ROI margins checked by --bridge")
    parser.add_argument("--render-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.render_worker:
        print(json.dumps(_render_worker(args.frames)), flush=True)
        return 0
    if args.bridge:
        import torch

        print(f"bridge part: default demo phantom, demo model, torch threads {torch.get_num_threads()}", flush=True)
        out = _bridge_part(args.lesions, args.margins)
        for key in ("whole_volume_cam_passes", "cached_show_ms", "peak_rss_mb"):
            print(f"{key}: {out[key]}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        return 0

    from Testing.support import viewer_harness as h

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
        "fresh_click_to_complete_s": med(fresh, "click_to_complete_s"),
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
                f", -> complete {r['click_to_complete_s']:.2f} s in {r['stages']} stage(s)"
                f" (compute {r['compute_s']:.2f} s; show_lesion {r['show_lesion_s'] * 1000:.0f} ms, panel {r['panel_s'] * 1000:.0f} ms)"
            )
    print(
        f"median: selection {summary['click_to_selection_s'] * 1000:.0f} ms; overlay visible cached "
        f"{summary['cached_click_to_overlay_visible_s'] * 1000:.0f} ms (target <= {TARGET_CACHED_S * 1000:.0f}: "
        f"{'met' if summary['cached_target_met'] else 'MISSED'}), fresh {summary['fresh_click_to_overlay_visible_s']:.2f} s "
        f"(target <= {TARGET_FRESH_S} s: {'met' if summary['fresh_target_met'] else 'MISSED'}); fresh complete "
        f"{summary['fresh_click_to_complete_s']:.2f} s"
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
