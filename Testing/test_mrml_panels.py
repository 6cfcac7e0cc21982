"""The module controller's counterfactual overlay and similar-lesions panel on a real slicer-core scene.

Counterfactual: the hand-built size detector of the counterfactual tests (detection depends on the
lesion's bright load only), so the test can say from the counterfactual FLAIR node's voxels alone,
with the detector's own definition, that the lesion is no longer detected. Similar lesions: the demo
model on a small phantom; the neighbours are checked against a brute-force cosine ranking of the
whole library, and a library of other weights is refused with its message in the panel.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

slicer = pytest.importorskip("slicer")

from LesionXAILib.errors import ParameterError
from LesionXAILib.mrml import colors, views
from LesionXAILib.mrml.volumes import array_from_volume_node, node_geometry, volume_node_from_array
from LesionXAILib.session.settings import SessionSettings
from LesionXAILib.slicer_app.controller import ModuleController
from test_counterfactual_support import bright_load, geometry, size_model, subject_arrays  # noqa: F401

pytestmark = [pytest.mark.slicer, pytest.mark.usefixtures("one_torch_thread")]

N = 90  # the size detector's load threshold; the blob's load is about 123
OBLIQUE = tuple(np.array(sitk.VersorTransform((0.2, -0.3, 0.4), 0.35).GetMatrix(), dtype=float).tolist())
FAST = SessionSettings(methods=("smoothgrad",), samples=1, max_radius_mm=2.0)


def _scene_with(flair, t1, grid):
    scene = slicer.vtkMRMLScene()
    views.ensure_slice_views(scene)
    return scene, volume_node_from_array(scene, flair, grid, "FLAIR"), volume_node_from_array(scene, t1, grid, "MPRAGE")


@pytest.fixture(scope="module")
def counterfactual(tmp_path_factory):
    flair, t1, blob = subject_arrays()
    grid = geometry(flair.shape, spacing=(1.0, 1.1, 0.9), direction=OBLIQUE)
    scene, fnode, tnode = _scene_with(flair, t1, grid)
    controller = ModuleController(scene)
    controller.run(fnode, tnode, model_path=size_model(N), settings=FAST)
    assert controller.session.instance_ids == [1]
    with pytest.raises(ParameterError, match="select a lesion first"):
        controller.prepare_counterfactual()
    panel = controller.counterfactual(1)
    return {"controller": controller, "panel": panel, "flair": flair, "t1": t1, "blob": blob, "grid": grid, "nodes": (fnode, tnode)}


def test_counterfactual_flair_is_a_new_node_on_the_flair_grid_and_the_detector_misses_it(counterfactual):
    c = counterfactual
    writer = c["controller"].writer
    fnode, tnode = c["nodes"]
    cf_node, lj_node = writer.counterfactual_flair_node, writer.log_jacobian_node
    assert cf_node is not None and lj_node is not None and cf_node not in (fnode, tnode) and lj_node not in (fnode, tnode)
    # inputs untouched
    assert np.array_equal(array_from_volume_node(fnode)[0], c["flair"]) and np.array_equal(array_from_volume_node(tnode)[0], c["t1"])
    for node in (cf_node, lj_node):
        assert node_geometry(node).almost_equal(node_geometry(fnode))
    cf_flair = array_from_volume_node(cf_node)[0]
    # the detector's own rule, applied to the node's voxels: a load below N - 0.5 is not segmented
    assert bright_load(c["flair"]) > N
    assert bright_load(cf_flair) < N - 0.5
    # outside the changed box nothing moved
    changed = np.argwhere(cf_flair != c["flair"])
    assert changed.size and np.ptp(changed, axis=0).max() < max(c["flair"].shape)


def test_log_jacobian_is_the_diverging_overlay_showing_shrinkage_over_the_counterfactual(counterfactual):
    c = counterfactual
    writer = c["controller"].writer
    scene = c["controller"].scene
    lj = array_from_volume_node(writer.log_jacobian_node)[0]
    assert lj[c["blob"]].mean() < 0  # removing a lesion by warping shrinks it
    display = writer.log_jacobian_node.GetDisplayNode()
    assert display.GetColorNode().GetName() == colors.DIVERGING
    lo, hi = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    assert lo == pytest.approx(-hi) and hi >= np.abs(lj).max() - 1e-6
    for composite in views.composite_nodes(scene):
        assert composite.GetBackgroundVolumeID() == writer.counterfactual_flair_node.GetID()
        assert composite.GetForegroundVolumeID() == writer.log_jacobian_node.GetID()
    assert "shrink < 0 < grow" in c["panel"].legend_text


def test_counterfactual_summary_text_says_what_changed(counterfactual):
    c = counterfactual
    text, summary = c["panel"].text, c["panel"].summary
    assert summary["flipped"] and "flipped, the model no longer detects it" in text
    voxel_mm3 = float(np.prod(c["grid"].spacing))
    assert f"Lesion volume {c['blob'].sum() * voxel_mm3:.1f} ->" in text  # volume before, from the blob itself
    assert f"{summary['probability']['mean_before']:.3f} -> {summary['probability']['mean_after']:.3f}" in text
    assert f"Largest displacement {summary['largest_displacement_mm']:.2f} mm" in text
    assert summary["probability"]["mean_after"] < 0.5 <= summary["probability"]["mean_before"]


def test_showing_a_lesion_again_brings_the_flair_back(counterfactual):
    c = counterfactual
    controller = c["controller"]
    from LesionXAILib.errors import Cancelled

    stages = []

    def first_stage_only(result):  # the context probe needs a fill this detector's 'none' normalisation lacks
        stages.append(result)
        raise Cancelled("enough")

    with pytest.raises(Cancelled):
        controller.session.compute_lesion(1, on_partial=first_stage_only)
    controller.writer.show_lesion(stages[0])
    assert controller.writer.counterfactual_id is None
    for composite in views.composite_nodes(controller.scene):
        assert composite.GetBackgroundVolumeID() == c["nodes"][0].GetID()
    with pytest.raises(Exception, match="unknown|no lesion|instance"):
        controller.prepare_counterfactual(7)


# ---------------------------------------------------------------------------------------------- similar lesions


@pytest.fixture(scope="module")
def similar(tmp_path_factory):
    from LesionXAILib.library.build import add_subject, library_identity
    from LesionXAILib.library.embedding import EmbeddingSettings
    from LesionXAILib.library.store import LesionLibrary
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.segmentation import SegmentationSettings, segment
    from phantom_fixtures import small_phantom

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("similar-lib")
    ph, other = small_phantom(seed=5), small_phantom(seed=6)
    scene, fnode, tnode = _scene_with(ph.pair().flair, ph.pair().t1, ph.pair().geometry)
    controller = ModuleController(scene)
    controller.run(fnode, tnode, settings=FAST)
    model = controller.session.model
    library = LesionLibrary.create_or_open(root / "lib", library_identity(model, EmbeddingSettings()))
    add_subject(library, model, "self", segment(ph.pair(), model, SegmentationSettings()))
    add_subject(library, model, "other", segment(other.pair(), model, ground_truth=other.lesions))
    # the same lesions embedded by slightly different weights: another model's library
    changed = load_model()
    with torch.no_grad():
        next(changed.network.parameters()).add_(0.01)
    foreign = LesionLibrary.create_or_open(root / "foreign", library_identity(changed, EmbeddingSettings()))
    add_subject(foreign, changed, "self", segment(ph.pair(), changed, SegmentationSettings()))
    return {"controller": controller, "lib": root / "lib", "foreign": root / "foreign", "library": library}


def test_similar_panel_lists_the_brute_force_nearest_library_lesions(similar):
    controller = similar["controller"]
    assert "library with" in controller.set_library(similar["lib"])
    lesion_id = controller.session.instance_ids[0]
    plan = controller.prepare_lesion(lesion_id)
    panel = controller.finish_lesion(plan, plan.compute()).similar
    assert panel is not None and panel.ok and len(panel.rows) == 5
    table = similar["library"].load()
    # the subject is in the library as 'self': its own lesion comes first, at distance ~0
    assert (panel.rows[0].subject, panel.rows[0].lesion_id) == ("self", lesion_id) and panel.rows[0].distance < 1e-5
    query = table.embedding[table.row_of("self", lesion_id)].astype(np.float64)
    brute = 1.0 - table.embedding.astype(np.float64) @ query  # every library lesion, sorted by hand
    order = np.lexsort((np.arange(len(brute)), brute))[:5]
    assert [(r.subject, r.lesion_id) for r in panel.rows] == [(str(table.subject[i]), int(table.id[i])) for i in order]
    assert np.allclose([r.distance for r in panel.rows], np.maximum(brute[order], 0), atol=1e-5)
    assert [r.status for r in panel.rows] == [str(table.status[i]) for i in order]
    assert all(r.thumbnail_png.startswith(b"\x89PNG") for r in panel.rows)
    # the scene's table node holds the same rows
    node = controller.writer.similar_table_node
    vtable = node.GetTable()
    assert vtable.GetNumberOfRows() == 5
    assert [vtable.GetColumnByName("subject").GetValue(i) for i in range(5)] == [r.subject for r in panel.rows]
    assert [vtable.GetColumnByName("id").GetValue(i) for i in range(5)] == [r.lesion_id for r in panel.rows]


def test_a_library_of_another_model_is_refused_in_the_panel(similar):
    controller = similar["controller"]
    message = controller.set_library(similar["foreign"])
    assert "another model" in message
    panel = controller.similar(controller.session.instance_ids[0])
    assert not panel.ok and "another model" in panel.message
    assert controller.writer.similar_table_node.GetTable().GetNumberOfRows() == 0
    assert "not a lesion library" in controller.set_library(similar["lib"] / "subjects")
    assert controller.set_library("") == "" and controller.similar(controller.session.instance_ids[0]) is None


def test_counterfactual_runs_on_the_job_runner_cancellable_and_applied_on_the_polling_thread(counterfactual):
    import threading

    from LesionXAILib.slicer_app.jobs import CANCELLED, DONE, JobRunner

    controller = counterfactual["controller"]
    jobs = JobRunner()
    plan = controller.prepare_counterfactual(1)
    applied = []
    jobs.submit("counterfactual", plan.compute, apply=applied.append)
    jobs.cancel()
    assert jobs.wait(timeout=60).state == CANCELLED and not applied

    plan = controller.prepare_counterfactual(1)
    seen = []

    def apply(view):
        seen.append(threading.get_ident())
        applied.append(controller.finish_counterfactual(plan, view))

    job = jobs.submit("counterfactual", plan.compute, apply=apply)
    status = jobs.wait(timeout=120)
    assert status.state == DONE and seen == [threading.get_ident()] != [job.thread_id]
    assert applied[0].summary["flipped"] and controller.writer.counterfactual_id == 1
