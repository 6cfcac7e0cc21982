"""The Logic end to end on a phantom in a real slicer-core scene with the shipped demo model.

Exactly what LesionXAI.py's LesionXAITest runs inside Slicer: the same ModuleController calls (the desktop
Logic only forwards to it) and the same checks from LesionXAILib.slicer_app.selftest, once on the phantom's
own grid and once with its voxels on an oblique, anisotropic grid.
"""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from LesionXAILib.mrml import views
from LesionXAILib.slicer_app import selftest
from LesionXAILib.slicer_app.controller import ModuleController
from LesionXAILib.resources import resources_dir

pytestmark = [
    pytest.mark.slicer,
    pytest.mark.skipif(
        not (resources_dir() / "models" / "lesionxai-demo-unet.pt").exists(), reason="demo model not installed"
    ),
]


def run_case(oblique: bool):
    scene = slicer.vtkMRMLScene()
    views.ensure_slice_views(scene)
    case = selftest.load_phantom_case(scene, oblique=oblique)
    before = selftest.snapshot_inputs(case)
    logic = ModuleController(scene)
    writer = logic.run(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS)
    return case, before, logic, writer


@pytest.fixture(scope="module")
def axial():
    return run_case(oblique=False)


@pytest.fixture(scope="module")
def oblique():
    return run_case(oblique=True)


@pytest.mark.parametrize("which", ["axial", "oblique"])
def test_run_select_and_cache_end_to_end(which, request):
    case, before, logic, writer = request.getfixturevalue(which)
    selftest.check_run(writer, case)
    counts = selftest.check_lesion_at(writer, case)
    assert counts["checked"] >= 3
    lesion_id = selftest.detected_lesion(writer)
    hits = writer.session.cache.hits
    if which == "oblique":  # by click position, as the desktop module does
        first = logic.select_at(selftest.click_point(writer, lesion_id))
        assert first is not None and first.lesion_id == lesion_id
    else:
        first = logic.select_lesion(lesion_id)
    second = logic.select_lesion(lesion_id)
    selftest.check_selection(writer, case, first, second, hits)
    selftest.check_inputs_unchanged(case, before)
    assert logic.select_at((1e4, 1e4, 1e4)) is None  # a click on nothing selects nothing
    assert writer.selected_id == lesion_id


def test_oblique_grid_gives_the_same_lesions_in_the_right_place(axial, oblique):
    """Same voxels on another grid: same instances, and their RAS follow the oblique matrix."""
    a, o = axial[3].session.result.instances, oblique[3].session.result.instances
    np.testing.assert_array_equal(a.labels, o.labels)
    matrix = selftest.node_ijk_to_ras(oblique[0].flair)
    for row in o.instances:
        expected = matrix @ np.array([*row.centroid_ijk, 1.0])
        np.testing.assert_allclose(row.centroid_ras, expected[:3], atol=1e-6)
        volume = row.voxels * float(np.prod(selftest.OBLIQUE_SPACING))
        assert row.volume_mm3 == pytest.approx(volume)


def test_demo_model_finds_most_phantom_lesions(axial):
    """The self-test is meaningful only if the model detects lesions: most ground-truth lesions are TP-covered."""
    case, _, _, writer = axial
    instances = writer.session.result.instances
    assert instances.metrics is not None and instances.metrics.gt_lesions >= 3
    assert instances.metrics.recall >= 0.6, instances.metrics


def test_logic_reuses_the_session_when_only_settings_change(oblique):
    case, before, logic, writer = oblique
    nodes = [writer.segmentation_node.GetID(), writer.table_node.GetID(), writer.labels_node.GetID()]
    assert logic.model("") is logic.model(".")  # loaded once
    again = logic.run(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS.replace(min_size=20))
    assert again is writer
    assert [writer.segmentation_node.GetID(), writer.table_node.GetID(), writer.labels_node.GetID()] == nodes
    assert all(r.voxels >= 20 for r in writer.session.result.instances.instances if r.status != "FN")
    # other inputs for the same FLAIR: a new writer replaces the old outputs instead of piling them up
    fresh = logic.run(case.flair, case.t1, None, "", selftest.SELFTEST_SETTINGS)
    assert fresh is not writer and fresh.session.cache is writer.session.cache
    assert all(case.scene.GetNodeByID(i) is None for i in nodes)
    assert {r.status for r in fresh.session.result.instances.instances} == {"predicted"}
    selftest.check_inputs_unchanged(case, before)
    assert logic.resolve_overlay("smoothgrad_flair") == "smoothgrad_flair"
    logic.session.settings = selftest.SELFTEST_SETTINGS.replace(methods=("gradcampp",))
    assert logic.resolve_overlay("smoothgrad_flair") == "gradcampp"  # a stale GUI choice falls back to a computed map
    assert logic.session.available_overlays() == ("gradcampp", "context_shells")
