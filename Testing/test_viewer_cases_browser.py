"""The viewer's counterfactual action and similar-lesions panel in a real browser (Playwright, Debian's Chromium).

``lesionxai view --library LIB`` on a phantom whose own lesions are in the library (subject 'self'): the
panel must list, for a lesion picked in the table, the library lesions a brute-force cosine ranking
computed here puts first (its own entry at distance 0). The Counterfactual button must put the
counterfactual FLAIR and its log-Jacobian into the slice views and its summary into the panel; a
second server given a library of other weights shows the refusal in the panel.
"""

from __future__ import annotations

import numpy as np
import pytest

from support.viewer_harness import require_browser

pytestmark = [pytest.mark.browser, pytest.mark.slicer]

SEED, N_LESIONS, FOV_MM = 7, 6, (64.0, 64.0, 64.0)
K = 5


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A phantom on disk, its demo-model segmentation, a library holding it, and one of slightly other weights."""
    require_browser()
    import torch

    from LesionXAILib.library.build import add_subject, library_identity
    from LesionXAILib.library.embedding import EmbeddingSettings
    from LesionXAILib.library.store import LesionLibrary
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import SegmentationSettings, segment

    root = tmp_path_factory.mktemp("viewer-cases")
    phantom = generate_phantom(SEED, PhantomSettings(n_lesions=N_LESIONS, fov_mm=FOV_MM))
    paths = phantom.write(root / "subject")
    model = load_model()
    result = segment(phantom.pair(), model, SegmentationSettings(min_size=3), phantom.lesions)
    library = LesionLibrary.create_or_open(root / "lib", library_identity(model, EmbeddingSettings()))
    add_subject(library, model, "self", result)
    changed = load_model()
    with torch.no_grad():
        next(changed.network.parameters()).add_(0.01)
    foreign = LesionLibrary.create_or_open(root / "foreign", library_identity(changed, EmbeddingSettings()))
    add_subject(foreign, changed, "self", segment(phantom.pair(), changed, SegmentationSettings(min_size=3)))
    detected = [r for r in result.instances.instances if r.status == "TP"]
    lesion = min(detected, key=lambda r: r.voxels).id  # the smallest: the demo model drops it after a short search
    return {**paths, "root": root, "library": library, "lesion_id": int(lesion), "ids": list(result.instances.ids)}


def _args(subject, library):
    return ["--flair", str(subject["flair"]), "--t1", str(subject["t1"]), "--gt", str(subject["lesions"]),
            "--methods", "smoothgrad", "--samples", "2", "--max-radius-mm", "4", "--no-3d", "--library", str(library)]  # fmt: skip


@pytest.fixture(scope="module")
def server(subject):
    from support.viewer_harness import serving

    with serving(_args(subject, subject["root"] / "lib"), subject["root"] / "viewer-cases.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server):
    from support.viewer_harness import chromium_page, open_viewer

    with chromium_page() as p:
        open_viewer(p, server.url)
        yield p


def test_similar_panel_lists_the_brute_force_nearest_library_lesions(server, page, subject):
    lesion_id = subject["lesion_id"]
    state = server.state()
    assert sorted(state["lesion_ids"]) == sorted(subject["ids"])
    assert "lesions; select a lesion" in state["similar"]["message"]
    page.click(f"#lx-row-{lesion_id}")
    state = server.wait_for(lambda s: s["selected_id"] == lesion_id and not s["busy"] and s["similar"]["rows"] or s["error"], timeout=180)
    assert not state["error"], state["error"]
    table = subject["library"].load()
    query = table.embedding[table.row_of("self", lesion_id)].astype(np.float64)
    distance = 1.0 - table.embedding.astype(np.float64) @ query
    order = np.lexsort((np.arange(len(distance)), distance))[:K]
    rows = state["similar"]["rows"]
    assert [(r["subject"], r["id"]) for r in rows] == [(str(table.subject[i]), int(table.id[i])) for i in order]
    assert rows[0]["id"] == lesion_id and rows[0]["distance"] < 1e-5
    assert np.allclose([r["distance"] for r in rows], np.maximum(distance[order], 0.0), atol=1e-5)
    # the page shows them: one cell per neighbour with its crop thumbnail
    page.wait_for_selector(f"#lx-similar-row-{K}", timeout=20000)
    assert (page.get_attribute("#lx-similar-row-1 img", "src") or "").startswith("data:image/png;base64,")
    assert f"#{lesion_id}" in page.inner_text("#lx-similar-row-1")


def test_counterfactual_button_shows_the_changed_flair_its_log_jacobian_and_a_summary(server, page, subject):
    lesion_id = subject["lesion_id"]
    state = server.wait_for(lambda s: s["selected_id"] == lesion_id and not s["busy"], timeout=60)
    assert state["layers"]["background"] == "FLAIR" or "FLAIR" in state["layers"]["background"]
    page.click("#lx-counterfactual")
    state = server.wait_for(lambda s: s["counterfactual"] is not None or s["error"], timeout=300)
    assert not state["error"], state["error"]
    cf = state["counterfactual"]
    assert cf["lesion_id"] == lesion_id and not state["counterfactual_busy"]
    assert f"counterfactual FLAIR · lesion {lesion_id}" in state["layers"]["background"]
    assert f"counterfactual log-Jacobian · lesion {lesion_id}" in state["layers"]["foreground"]
    page.wait_for_function("() => document.getElementById('lx-cf-text').innerText.includes('Largest displacement')", timeout=20000)
    text = page.inner_text("#lx-cf-text")
    assert cf["flipped"] and f"Lesion {lesion_id} (TP): flipped, the model no longer detects it" in text
    assert "Mean probability" in text and "Lesion volume" in text
    # back to the explanation: the FLAIR is the background again
    page.click("#lx-show-explanation")
    state = server.wait_for(lambda s: s["counterfactual"] is None, timeout=20)
    assert "counterfactual" not in state["layers"]["background"]


def test_a_library_of_another_model_is_refused_in_the_panel(page, subject):
    from support.viewer_harness import open_viewer, serving

    with serving(_args(subject, subject["root"] / "foreign"), subject["root"] / "viewer-foreign.log") as srv:
        assert "another model" in srv.state()["similar"]["message"]
        open_viewer(page, srv.url)  # the module's browser page (one Playwright per process), last use
        page.wait_for_function("() => document.getElementById('lx-similar-message').innerText.includes('another model')",
                               timeout=20000)  # fmt: skip
