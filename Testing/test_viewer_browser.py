"""End to end in a real browser: ``lesionxai view`` on a phantom, driven by Playwright in Debian's Chromium.

The server runs as a subprocess on a free localhost port (stopped by PID at teardown). Where to click is
computed from the ground truth and the view geometry the server reports (RAS -> slice XY -> page
pixel); what should be selected there is computed independently by segmenting the same files with the
engine in this process. Screenshots of the selected state are kept in Testing/artifacts/.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from support.viewer_harness import require_browser

pytestmark = [pytest.mark.browser, pytest.mark.slicer]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SEED, N_LESIONS, FOV_MM = 7, 6, (64.0, 64.0, 64.0)
VIEW = "Red"  # axial


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A small phantom written as NIfTI files, with its ground truth."""
    require_browser()
    from LesionXAILib.phantom import PhantomSettings, generate_phantom

    phantom = generate_phantom(SEED, PhantomSettings(n_lesions=N_LESIONS, fov_mm=FOV_MM))
    paths = phantom.write(tmp_path_factory.mktemp("viewer-subject"))
    return {"phantom": phantom, **paths}


@pytest.fixture(scope="module")
def model_args(tmp_path_factory):
    """The shipped demo model when installed; before it exists, the hand-built FLAIR detector (SmoothGrad only)."""
    from LesionXAILib.resources import DEMO_MODEL_NAME, resources_dir

    if (resources_dir() / "models" / DEMO_MODEL_NAME).exists():
        return {"cli": [], "path": None, "config": None}
    from probes_fixtures import write_detector_model

    model, config = write_detector_model(tmp_path_factory.mktemp("viewer-model"))
    # a TorchScript network has no submodules to hook, so Grad-CAM++ is not available for it
    return {"cli": ["--model", str(model), "--config", str(config), "--methods", "smoothgrad"], "path": model, "config": config}


@pytest.fixture(scope="module")
def expected(subject, model_args):
    """Where to click and what must be selected there, computed with the engine alone (no MRML, no viewer)."""
    from scipy import ndimage

    from LesionXAILib.image_io import load_pair, read_label_image
    from LesionXAILib.instances import label_components
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.segmentation import SegmentationSettings, segment

    pair = load_pair(subject["flair"], subject["t1"])
    gt = read_label_image(subject["lesions"], pair.geometry)
    model = load_model(model_args["path"], model_args["config"])
    instances = segment(pair, model, SegmentationSettings(min_size=3), gt).instances
    components, n = label_components(gt > 0, 26)
    assert n >= 2, "the test phantom needs at least two ground-truth lesions"
    sizes = np.bincount(components.ravel())[1:]
    largest = 1 + int(np.argmax(sizes))
    # the largest true lesion, where an instance covers it (all of it if missed: FN; the predicted part if TP)
    covered = (components == largest) & (instances.labels > 0)
    assert covered.any(), "every ground-truth lesion is covered by a TP or an FN instance"
    depth = ndimage.distance_transform_edt(covered)
    kji = np.unravel_index(int(np.argmax(depth)), depth.shape)  # the voxel deepest inside it
    ijk = (int(kji[2]), int(kji[1]), int(kji[0]))
    lesion_id = instances.at_voxel(ijk)
    assert lesion_id is not None and instances.get(lesion_id).status in ("TP", "FN")
    ras = pair.geometry.ijk_to_ras_points(np.array([ijk], dtype=float))[0]
    brain = pair.flair > 0
    return {
        "lesion_id": int(lesion_id),
        "ras": tuple(float(v) for v in ras),
        "ids": list(instances.ids),
        "others": [int(i) for i in instances.ids if int(i) != int(lesion_id)],
        "geometry": pair.geometry,
        "brain": brain,
        "instances": instances,
    }


@pytest.fixture(scope="module")
def server(subject, model_args):
    """The viewer server on a free port; always stopped by its PID."""
    from support.viewer_harness import serving

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--flair", str(subject["flair"]), "--t1", str(subject["t1"]), "--gt", str(subject["lesions"]), *model_args["cli"]]
    with serving(args, ARTIFACTS / "viewer-server.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server):
    from support.viewer_harness import chromium_page, install_frame_clock, open_viewer

    with chromium_page() as p:
        open_viewer(p, server.url)
        install_frame_clock(p)
        yield p


def _wait_frame_after(page, view: str, wall_time: float, timeout: float = 20.0) -> None:
    """Wait until the browser loaded an image of ``view`` rendered after ``wall_time`` (seconds since the epoch)."""
    page.wait_for_function(
        "([v, t]) => window.__lx.loads.some(e => e.view === v && e.t > t)", arg=[view, wall_time * 1000.0], timeout=timeout * 1000
    )
    time.sleep(0.3)  # a following frame may still be on its way (e.g. the second render of a jump)


def _crop_around(png: bytes, box: dict, x: float, y: float, half: int = 30) -> np.ndarray:
    from support.viewer_harness import crop

    region = {"x": max(box["x"], x - half), "y": max(box["y"], y - half), "width": 2 * half, "height": 2 * half}
    return crop(png, region).astype(int)


def test_server_binds_localhost_renders_offscreen_and_lists_lesions(server, expected):
    state = server.state()
    assert state["ready"] and state["url"] == server.base_url and server.base_url.startswith("http://127.0.0.1:")
    assert len(server.secret) >= 40 and server.url == f"{server.base_url}?secret={server.secret}"
    assert state["render_window"] == "vtkEGLRenderWindow"
    assert sorted(state["lesion_ids"]) == sorted(expected["ids"])
    assert state["selected_id"] is None
    assert "LesionXAI viewer running at http://127.0.0.1:" in server.log_path.read_text()


def test_background_click_selects_nothing(server, page, expected):
    from support.viewer_harness import click, view_image_box

    state = server.state()
    box = view_image_box(page, VIEW)
    x, y = box["x"] + 12, box["y"] + 12  # a view corner: outside the head
    info = state["views"][VIEW]
    xy = ((x - box["x"]) * info["size"][0] / box["width"] - 0.5, info["size"][1] - (y - box["y"]) * info["size"][1] / box["height"] - 0.5)
    ras = np.asarray(info["xy_to_ras"]) @ np.array([xy[0], xy[1], 0.0, 1.0])
    ijk = np.rint(expected["geometry"].ras_to_ijk_points(ras[None, :3])[0]).astype(int)
    inside = all(0 <= v < n for v, n in zip(ijk, expected["geometry"].size))
    assert not inside or not expected["brain"][ijk[2], ijk[1], ijk[0]], "the corner must show background"

    clicks = state["clicks"]
    click(page, x, y)
    state = server.wait_for(lambda s: s["clicks"] == clicks + 1, timeout=20)
    assert state["last_click"]["view"] == VIEW and state["last_click"]["lesion_id"] is None
    assert state["selected_id"] is None and state["pending_id"] is None and not state["busy"]
    assert page.inner_text("#lx-title") == "No lesion selected"
    page.wait_for_function("() => document.getElementById('lx-message').innerText.startsWith('No lesion at')", timeout=10000)


def test_click_on_a_lesion_selects_it_and_shows_its_overlay(server, page, expected):
    from support.viewer_harness import click, ras_to_page, scroll_to, view_image_box

    lesion_id, target = expected["lesion_id"], expected["ras"]
    state = scroll_to(page, server, VIEW, target)
    box = view_image_box(page, VIEW)
    x, y, _ = ras_to_page(state, box, VIEW, target)
    before = page.screenshot()

    clicks = state["clicks"]
    click(page, x, y)
    state = server.wait_for(lambda s: s["clicks"] == clicks + 1, timeout=20)
    assert state["last_click"]["lesion_id"] == lesion_id  # the server resolved the click to that lesion
    assert np.allclose(state["last_click"]["ras"][:2], target[:2], atol=0.75)  # within a voxel of where we aimed
    # the maps are shown first, the context probe completes the panel: wait for the whole analysis
    state = server.wait_for(lambda s: s["selected_id"] == lesion_id and not s["busy"] or s["error"], timeout=120)
    assert not state["error"], state["error"]
    assert state["selected_id"] == lesion_id and not state["busy"]
    stages = [h for h in state["timings"]["history"] if h["lesion_id"] == lesion_id]
    assert stages[0]["overlay_shown"] and not stages[0]["from_cache"]  # the overlay came with the first stage
    assert stages[-1]["complete"] and all(not h["complete"] for h in stages[:-1])

    # the side panel names the lesion, its statistics and curve are there, its table row is highlighted
    page.wait_for_function(f"() => document.getElementById('lx-title').innerText === 'Lesion {lesion_id}'", timeout=20000)
    status = expected["instances"].get(lesion_id).status
    assert page.inner_text("#lx-status").strip() == status
    stats = page.inner_text("#lx-stats")
    assert "Volume" in stats and "Context needed" in stats and "FLAIR share" in stats
    assert page.locator("#lx-curve svg circle").count() >= 2
    assert "lx-row-selected" in (page.get_attribute(f"#lx-row-{lesion_id}", "class") or "")

    # the views jumped to the lesion: where it is now, the overlay is drawn (compare with opacity 0)
    _wait_frame_after(page, VIEW, stages[0]["shown_wall_time"])  # later stages change no pixel of the view
    state = server.state()
    box = view_image_box(page, VIEW)
    x, y, dz = ras_to_page(state, box, VIEW, state["last_click"]["ras"])
    assert abs(dz) < 1.0
    shown = page.screenshot()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "viewer-selected.png").write_bytes(shown)
    (ARTIFACTS / "viewer-before-click.png").write_bytes(before)
    assert np.abs(_crop_around(shown, box, x, y) - _crop_around(before, box, x, y)).mean() > 1.0

    thumb = page.locator("#lx-panel .v-slider-thumb").first
    thumb.focus()
    t = time.time()
    page.keyboard.press("Home")  # opacity slider to 0: the overlay disappears
    server.wait_for(lambda s: s["opacity"] == 0, timeout=10)
    _wait_frame_after(page, VIEW, t)
    hidden = page.screenshot()
    (ARTIFACTS / "viewer-overlay-hidden.png").write_bytes(hidden)
    difference = np.abs(_crop_around(shown, box, x, y) - _crop_around(hidden, box, x, y)).max(axis=2)
    assert (difference > 30).sum() >= 4, "the overlay should colour pixels around the selected lesion"
    # lesions are outlined, not filled: with the map hidden, the coloured label pixels of the clicked lesion
    # enclose grey FLAIR pixels (the map shows there when visible); a filled label would have no hole
    from scipy import ndimage

    around = _crop_around(hidden, box, x, y, half=40)
    coloured = np.abs(around - around.mean(axis=2, keepdims=True)).max(axis=2) > 40
    components, n = ndimage.label(coloured)
    assert n >= 1, "the lesion's outline should be drawn in colour"
    centre = np.array(coloured.shape) / 2
    distance = ndimage.distance_transform_edt(components == 0, return_indices=True)[1]
    nearest = components[tuple(distance[:, int(centre[0]), int(centre[1])])]
    outline = components == nearest
    enclosed = ndimage.binary_fill_holes(outline) & ~outline
    assert enclosed.sum() >= 4, "the lesion label should be an outline with its inside left to the map"
    page.keyboard.press("End")
    server.wait_for(lambda s: s["opacity"] == 1, timeout=10)


def test_table_rows_select_like_clicks_and_a_new_request_cancels_the_old(server, page, expected):
    lesion_id, others = expected["lesion_id"], expected["others"]
    assert len(others) >= 2, "the test phantom needs three lesions"
    first, second = others[0], others[1]
    page.click(f"#lx-row-{first}")
    page.wait_for_selector("#lx-progress", state="visible", timeout=10000)  # progress shows while it computes
    page.click(f"#lx-row-{second}")  # the UI still answers; this cancels the first request
    state = server.wait_for(lambda s: s["selected_id"] == second and not s["busy"] or s["error"], timeout=120)
    assert not state["error"] and state["selected_id"] == second
    assert first in state["cancelled"]
    # the cancelled one never completed (a first stage of it may have been shown before the second click)
    assert all(h["lesion_id"] != first or not h["complete"] for h in state["timings"]["history"])
    page.wait_for_function(f"() => document.getElementById('lx-title').innerText === 'Lesion {second}'", timeout=20000)
    centroid = expected["instances"].get(second).centroid_ras
    assert abs(state["views"][VIEW]["xy_to_ras"][2][3] - centroid[2]) < 1.0  # the axial view jumped to it

    # back to the clicked lesion through its row: from the cache, shown at once
    page.click(f"#lx-row-{lesion_id}")
    state = server.wait_for(lambda s: s["selected_id"] == lesion_id and not s["busy"], timeout=30)
    assert state["timings"]["from_cache"] is True
    page.wait_for_function(f"() => document.getElementById('lx-title').innerText === 'Lesion {lesion_id}'", timeout=20000)
