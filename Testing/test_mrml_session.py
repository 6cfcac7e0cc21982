"""Session + SceneWriter mechanics on a real slicer-core scene with a hand-built detector network (fast, exact).

The detector (Testing/probes_fixtures.py) fires on bright FLAIR voxels surrounded by tissue, so the
instances of the hand-made volume are known in advance; the phantom + demo-model run is in
test_mrml_phantom.py.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import SimpleITK as sitk
import vtk

slicer = pytest.importorskip("slicer")

from LesionXAILib.analysis import analyse_lesion
from LesionXAILib.errors import Cancelled, InputImageError, InstanceError, ParameterError
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.mrml import views
from LesionXAILib.mrml.segments import lesion_of_segment
from LesionXAILib.mrml.volumes import array_from_volume_node, update_volume_node, volume_node_from_array
from LesionXAILib.mrml.writer import DisplaySettings, SceneWriter
from LesionXAILib.progress import CancelToken
from LesionXAILib.session.cache import ResultCache
from LesionXAILib.session.overlays import OVERLAYS
from LesionXAILib.session.settings import SessionSettings

from probes_fixtures import DetectorNet

pytestmark = pytest.mark.slicer

SHAPE = (20, 24, 36)  # k, j, i
OBLIQUE = tuple(np.array(sitk.VersorTransform((0.3, 0.1, -0.4), 0.3).GetMatrix(), dtype=float).tolist())
GEOMETRY = Geometry(size=SHAPE[::-1], origin=(-20.0, 15.0, -8.0), spacing=(1.1, 0.9, 1.6), direction=OBLIQUE)
LESIONS = (((10, 12, 9), 1), ((10, 12, 26), 2))  # (k, j, i) centre, half width: 27 and 125 voxels
MISSED = ((10, 5, 18), 1)  # a ground-truth lesion with normal FLAIR: the detector misses it (FN)
SETTINGS = SessionSettings(methods=("smoothgrad", "gradcampp"), samples=2, seed=3, max_radius_mm=3.0)


def cube(centre, half):
    m = np.zeros(SHAPE, bool)
    k, j, i = centre
    m[k - half : k + half + 1, j - half : j + half + 1, i - half : i + half + 1] = True
    return m


def subject():
    """Return (flair, mprage, lesion mask, ground truth) arrays: box brain, bright cube lesions, +-1 z-scored MPRAGE."""
    brain = np.zeros(SHAPE, bool)
    brain[2:-2, 2:-2, 2:-2] = True
    lesions = cube(*LESIONS[0]) | cube(*LESIONS[1])
    flair = np.where(brain, 100.0, 0.0).astype(np.float32)
    flair[lesions] = 400.0
    t1 = np.zeros(SHAPE, np.float32)
    columns = (np.indices(SHAPE)[2] % 2).astype(bool)
    t1[brain & columns] = 300.0
    t1[brain & ~columns] = 100.0
    gt = lesions | cube(*MISSED)
    return flair, t1, lesions, gt


def detector() -> LesionModel:
    config = ModelConfig(name="detector", channels=(1,), strides=(), num_res_units=0, threshold=0.5,
                         roi_size=(256, 256, 256), cam_layer="pre")  # fmt: skip
    return LesionModel(DetectorNet(), config, source="hand-built").eval()


MODEL = detector()


def make_scene(gt_kind="labelmap"):
    scene = slicer.vtkMRMLScene()
    views.ensure_slice_views(scene)
    flair, t1, _, gt = subject()
    nodes = {
        "flair": volume_node_from_array(scene, flair, GEOMETRY, "FLAIR"),
        "t1": volume_node_from_array(scene, t1, GEOMETRY, "MPRAGE"),
    }
    if gt_kind == "labelmap":
        nodes["gt"] = volume_node_from_array(scene, gt.astype(np.uint8), GEOMETRY, "GT", labelmap=True)
    elif gt_kind == "segmentation":
        labels = volume_node_from_array(scene, gt.astype(np.uint8), GEOMETRY, "GT labels", labelmap=True)
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "GT segmentation")
        assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labels, seg)
        nodes["gt"] = seg
    return scene, nodes


def snapshot(node):
    """Return what 'unmodified' means for an input node: voxels, geometry, references, display, name, attributes."""
    if node.IsA("vtkMRMLSegmentationNode"):
        segmentation = node.GetSegmentation()
        reps = []
        for i in range(segmentation.GetNumberOfSegments()):
            seg = segmentation.GetNthSegment(i)
            names = []
            seg.GetContainedRepresentationNames(names)
            reps.append((segmentation.GetNthSegmentID(i), seg.GetName(), tuple(sorted(names))))
        return ("segmentation", segmentation.GetMTime(), tuple(reps), node.GetNumberOfDisplayNodes())
    array, geometry = array_from_volume_node(node)
    return (
        array.tobytes(), array.dtype.str, geometry, node.GetImageData().GetMTime(), node.GetNumberOfDisplayNodes(),
        node.GetName(), tuple(node.GetAttributeNames()), node.GetParentTransformNode(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def ran():
    scene, nodes = make_scene()
    before = {k: snapshot(n) for k, n in nodes.items()}
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], MODEL, SETTINGS, nodes["gt"])
    result = writer.run()
    return scene, nodes, writer, result, before


def test_run_makes_one_segment_per_instance_with_its_voxels(ran):
    scene, nodes, writer, result, _ = ran
    _, lesions, gt = subject()[1:]
    instances = result.instances
    assert [r.status for r in instances.instances] == ["TP", "TP", "FN"]
    assert np.array_equal(instances.labels > 0, gt)  # detector finds exactly the two bright cubes; FN = the third
    segmentation = writer.segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(instances.ids) == 3
    labels_out = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    for row in instances.instances:
        segment_id = writer.segment_id(row.id)
        segment = segmentation.GetSegment(segment_id)
        assert segment.GetName().startswith(f"Lesion {row.id} · {row.status} · ")
        assert segment.GetName().endswith("mm³")
        assert lesion_of_segment(writer.segmentation_node, segment_id) == row.id
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        assert slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            writer.segmentation_node, ids, labels_out, nodes["flair"]
        )
        exported, g = array_from_volume_node(labels_out)
        assert g.almost_equal(GEOMETRY)
        assert np.array_equal(exported > 0, instances.labels == row.id), row.id
    colours = {segmentation.GetSegment(writer.segment_id(i)).GetColor() for i in instances.ids}
    assert len(colours) == 3


def test_outputs_share_the_flair_geometry_and_sit_in_one_folder(ran):
    scene, nodes, writer, result, _ = ran
    for node in (writer.labels_node, writer.probability_node):
        array, g = array_from_volume_node(node)
        assert g.almost_equal(GEOMETRY, atol=1e-9) and array.shape == SHAPE
    labels, _ = array_from_volume_node(writer.labels_node)
    np.testing.assert_array_equal(labels, result.instances.labels)
    from LesionXAILib.mrml.hierarchy import folder_children

    children = {n.GetID() for n in folder_children(scene, writer.folder_item)}
    for node in (writer.segmentation_node, writer.table_node, writer.labels_node, writer.probability_node):
        assert node.GetID() in children


def test_table_has_one_row_per_instance(ran):
    _, _, writer, result, _ = ran
    from LesionXAILib.mrml.tables import table_as_rows

    rows = table_as_rows(writer.table_node)
    assert [r["id"] for r in rows] == result.instances.ids
    assert [r["status"] for r in rows] == [i.status for i in result.instances.instances]
    for r, inst in zip(rows, result.instances.instances):
        assert r["volume_mm3"] == pytest.approx(inst.volume_mm3)
        assert r["voxels"] == inst.voxels
    assert [r["id"] for r in writer.session.table_rows()] == result.instances.ids
    keys = {"id", "status", "voxels", "volume_mm3", "mean_probability", "flair_share", "context_needed_mm",
            "context_status", "centroid_ras"}  # fmt: skip
    assert keys <= set(writer.session.lesion_statistics(1))


def test_lesion_at_finds_each_lesion_and_none_elsewhere(ran):
    _, _, writer, result, _ = ran
    matrix = GEOMETRY.ijk_to_ras()
    for (k, j, i), _ in LESIONS + (MISSED,):
        ras = matrix @ np.array([i, j, k, 1.0])
        expected = int(result.instances.labels[k, j, i])
        assert expected > 0 and writer.session.lesion_at(ras[:3]) == expected
        # a quarter voxel off the centre still hits it (nearest voxel, not truncation)
        off = matrix @ np.array([i + 0.4, j - 0.4, k + 0.4, 1.0])
        assert writer.session.lesion_at(off[:3]) == expected
    assert writer.session.lesion_at((matrix @ np.array([4, 4, 4, 1.0]))[:3]) is None
    assert writer.session.lesion_at((matrix @ np.array([-5, 0, 0, 1.0]))[:3]) is None
    with pytest.raises(ParameterError):
        writer.session.lesion_at((1.0, float("nan"), 0.0))


def test_select_sets_layers_overlays_chart_and_second_selection_comes_from_cache(ran):
    scene, nodes, writer, result, _ = ran
    hits = writer.session.cache.hits
    first = writer.select_lesion(2)
    assert not first.from_cache and writer.selected_id == 2
    composites = views.composite_nodes(scene)
    assert len(composites) == 3
    overlay = writer.overlay_node("smoothgrad_flair")
    for c in composites:
        assert c.GetBackgroundVolumeID() == nodes["flair"].GetID()
        assert c.GetForegroundVolumeID() == overlay.GetID()
        assert c.GetLabelVolumeID() == writer.labels_node.GetID()
    for name in OVERLAYS:
        node = writer.overlay_node(name)
        array, g = array_from_volume_node(node)
        assert g.almost_equal(GEOMETRY, atol=1e-9) and array.shape == SHAPE
        if name != "context_shells":
            np.testing.assert_array_equal(array, first.analysis.explanation.maps[name])
    shells, _ = array_from_volume_node(writer.overlay_node("context_shells"))
    np.testing.assert_array_equal(shells, first.curve.shells(GEOMETRY))
    assert writer.overlay_node("context_shells").IsA("vtkMRMLLabelMapVolumeNode")
    # slices centred on the lesion
    centroid = np.array(result.instances.get(2).centroid_ras)
    for node in views.slice_nodes(scene):
        m = node.GetSliceToRAS()
        assert np.allclose([m.GetElement(r, 3) for r in range(3)], centroid)
    # chart: series of the curve table
    chart = writer.chart_node
    assert chart.GetNumberOfPlotSeriesNodes() == 4
    for n in range(chart.GetNumberOfPlotSeriesNodes()):
        series = chart.GetNthPlotSeriesNode(n)
        assert series.GetTableNodeID() == writer.curve_table_node.GetID()
        assert series.GetXColumnName() == "radius_mm"
    assert writer.curve_table_node.GetTable().GetNumberOfRows() == len(first.curve.radii_mm)
    # the table row now carries the computed statistics
    from LesionXAILib.mrml.tables import table_as_rows

    row = next(r for r in table_as_rows(writer.table_node) if r["id"] == 2)
    assert row["context_status"] == first.curve.status
    assert row["flair_share"] == pytest.approx(first.statistics["flair_share"])
    # second selection: from the cache, same analysis object, one more cache hit, no recomputation
    assert writer.session.is_cached(2)
    second = writer.select_lesion(2, "gradcampp")
    assert second.from_cache and second.analysis is first.analysis
    assert writer.session.cache.hits == hits + 1
    for c in composites:
        assert c.GetForegroundVolumeID() == writer.overlay_node("gradcampp").GetID()
    writer.set_overlay("context_shells")
    assert composites[0].GetForegroundVolumeID() == writer.overlay_node("context_shells").GetID()


def test_maps_are_those_of_analyse_lesion(ran):
    _, _, writer, result, _ = ran
    mine = writer.session.compute_lesion(1)
    direct = analyse_lesion(MODEL, result, 1, SETTINGS.analysis_settings())
    for key, arr in direct.explanation.maps.items():
        np.testing.assert_allclose(mine.analysis.explanation.maps[key], arr, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(mine.curve.detected, direct.curve.detected)
    assert mine.statistics["context_needed_mm"] == direct.curve.context_needed_mm


def test_legends_match_the_display_windows(ran):
    _, _, writer, _, _ = ran
    writer.select_lesion(1)
    signed = writer.legend("smoothgrad_flair")
    assert signed["min"] == pytest.approx(-signed["max"]) and signed["max"] > 0
    assert signed["colors"][0][0] == pytest.approx(signed["min"]) and signed["colors"][-1][0] == pytest.approx(signed["max"])
    display = writer.overlay_node("smoothgrad_flair").GetDisplayNode()
    assert not display.GetAutoWindowLevel()
    assert display.GetWindowLevelMin() == pytest.approx(signed["min"])
    cam = writer.legend("gradcampp")
    assert cam["min"] == 0.0 and cam["max"] > 0
    shells = writer.legend("context_shells")
    assert shells["units"] == "mm" and [v for v, _ in shells["colors"]] == [0.0, 1.0, 2.0, 3.0]
    # a colour-legend display node on the shown overlay, visible only for it
    writer.set_overlay("gradcampp")
    writer.set_overlay("smoothgrad_flair")
    shown = writer.overlay_node("smoothgrad_flair")
    legends = [shown.GetNthDisplayNode(i) for i in range(shown.GetNumberOfDisplayNodes())]
    legend = next(n for n in legends if n.IsA("vtkMRMLColorLegendDisplayNode"))
    assert legend.GetVisibility() and legend.GetPrimaryDisplayNode() is display
    cam = writer.overlay_node("gradcampp")
    cam_legend = next(cam.GetNthDisplayNode(i) for i in range(cam.GetNumberOfDisplayNodes())
                      if cam.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode"))  # fmt: skip
    assert not cam_legend.GetVisibility()


def test_inputs_are_never_modified(ran):
    scene, nodes, writer, _, before = ran
    writer.select_lesion(3)
    writer.set_overlay("smoothgrad_mprage")
    for key, node in nodes.items():
        assert snapshot(node) == before[key], key


def test_compute_lesion_runs_in_a_worker_without_touching_the_scene(ran):
    scene, _, writer, _, _ = ran
    writer.session.settings = SETTINGS.replace(seed=11)  # new key: a real computation
    assert not writer.session.is_cached(1)
    nodes_before = scene.GetNumberOfNodes()
    mtimes = {n.GetID(): n.GetMTime() for n in writer.output_nodes()}
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("r", writer.session.compute_lesion(1)))
    worker.start()
    worker.join()
    assert not out["r"].from_cache
    assert scene.GetNumberOfNodes() == nodes_before
    assert {n.GetID(): n.GetMTime() for n in writer.output_nodes()} == mtimes
    writer.show_lesion(out["r"])
    assert writer.selected_id == 1
    writer.session.settings = SETTINGS


def test_settings_and_input_changes_invalidate_the_cache():
    scene, nodes = make_scene()
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], MODEL, SETTINGS, nodes["gt"], cache=ResultCache())
    writer.run()
    writer.select_lesion(1)
    assert writer.session.is_cached(1)
    writer.session.settings = SETTINGS.replace(samples=3)
    assert not writer.session.is_cached(1)
    assert not writer.select_lesion(1).from_cache
    writer.session.settings = SETTINGS  # back to the first settings: their entry is still there
    assert writer.session.is_cached(1)
    writer.session.settings = SETTINGS.replace(threshold=0.7)
    with pytest.raises(ParameterError, match="run"):
        writer.session.compute_lesion(1)
    writer.session.settings = SETTINGS
    key = writer.session.key
    flair, _ = array_from_volume_node(nodes["flair"])
    flair[0, 0, 0] = 5.0  # edit a copy, then write it back: the input node changed
    update_volume_node(nodes["flair"], flair, GEOMETRY)
    with pytest.raises(InputImageError, match="changed"):
        writer.select_lesion(1)
    writer.run()
    assert writer.session.key != key and not writer.session.is_cached(1)


def test_ground_truth_segmentation_gives_the_same_statuses_and_stays_untouched():
    scene, nodes = make_scene("segmentation")
    before = snapshot(nodes["gt"])
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], MODEL, SETTINGS, nodes["gt"])
    result = writer.run()
    assert [r.status for r in result.instances.instances] == ["TP", "TP", "FN"]
    assert snapshot(nodes["gt"]) == before
    assert scene.GetFirstNodeByName("LesionXAI temporary ground truth") is None


def test_bad_inputs_and_unknown_ids_give_clear_errors():
    scene, nodes = make_scene()
    with pytest.raises(InputImageError, match="same node"):
        SceneWriter.for_nodes(scene, nodes["flair"], nodes["flair"], MODEL)
    with pytest.raises(InputImageError, match="scalar volume"):
        SceneWriter.for_nodes(scene, nodes["gt"], nodes["t1"], MODEL)
    other = slicer.vtkMRMLScene()
    with pytest.raises(InputImageError, match="not in this scene"):
        SceneWriter.for_nodes(other, nodes["flair"], nodes["t1"], MODEL)
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], MODEL, SETTINGS)
    with pytest.raises(ParameterError, match="run"):
        writer.session.compute_lesion(1)
    assert writer.session.lesion_at((0, 0, 0)) is None and writer.session.instance_ids == []
    result = writer.run()
    assert [r.status for r in result.instances.instances] == ["predicted", "predicted"]
    assert writer.segmentation_node.GetSegmentation().GetSegment(writer.segment_id(1)).GetName().startswith("Lesion 1 · ")
    with pytest.raises(InstanceError, match="valid ids: 1, 2"):
        writer.select_lesion(9)
    with pytest.raises(ParameterError, match="unknown overlay"):
        writer.select_lesion(1, "saliency")
    with pytest.raises(ParameterError, match="select"):
        writer.set_overlay("gradcampp")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        writer.session.compute_lesion(1, cancel=token)
    assert not writer.session.is_cached(1)
    with pytest.raises(ParameterError):
        SessionSettings(threshold=1.5)
    with pytest.raises(ParameterError):
        SessionSettings(methods=("nope",))


def test_remove_outputs_leaves_only_the_inputs():
    scene, nodes = make_scene()
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], MODEL, SETTINGS, nodes["gt"])
    writer.run()
    writer.select_lesion(1)
    outputs = [n.GetID() for n in writer.output_nodes()]
    writer.remove_outputs()
    assert all(scene.GetNodeByID(i) is None for i in outputs)
    for node in nodes.values():
        assert scene.GetNodeByID(node.GetID()) is node


# ---------------------------------------------------------------- click speed: staged, lazy, once per subject


def fresh_session(display=None, settings=SETTINGS):
    scene, nodes = make_scene()
    writer = SceneWriter.for_nodes(scene, nodes["flair"], nodes["t1"], MODEL, settings, nodes["gt"], cache=ResultCache(), display=display)
    writer.run()
    return scene, nodes, writer


def test_show_writes_only_the_overlay_shown_and_the_others_when_asked():
    scene, _, writer = fresh_session()
    result = writer.session.compute_lesion(2)
    writer.show_lesion(result, "smoothgrad_flair")
    assert writer.writes == {"smoothgrad_flair": 1}
    assert writer.overlay_node("smoothgrad_flair").GetAttribute("LesionXAI.lesion_id") == "2"
    writer.set_overlay("gradcampp")  # written on first show
    assert writer.writes == {"smoothgrad_flair": 1, "gradcampp": 1}
    writer.set_overlay("smoothgrad_flair")  # holds lesion 2 already: not rewritten
    writer.show_lesion(writer.session.compute_lesion(2), "smoothgrad_flair")  # cached re-click: nothing rewritten
    assert writer.writes == {"smoothgrad_flair": 1, "gradcampp": 1}
    # asking for a node writes it, with the lesion's map
    mprage, _ = array_from_volume_node(writer.overlay_node("smoothgrad_mprage"))
    np.testing.assert_array_equal(mprage, result.maps["smoothgrad_mprage"])
    assert writer.writes["smoothgrad_mprage"] == 1
    # another lesion: its shown overlay is rewritten, a node holding the old lesion is not handed out stale
    other = writer.select_lesion(1, "smoothgrad_flair")
    assert writer.writes["smoothgrad_flair"] == 2 and writer.writes["gradcampp"] == 1
    cam, _ = array_from_volume_node(writer.overlay_node("gradcampp"))
    np.testing.assert_array_equal(cam, other.maps["gradcampp"])
    assert writer.writes["gradcampp"] == 2


def test_overlay_opacity_is_kept_across_selections_and_overlays():
    scene, _, writer = fresh_session()
    composites = views.composite_nodes(scene)
    assert all(c.GetForegroundOpacity() == pytest.approx(views.FOREGROUND_OPACITY) for c in composites)
    writer.set_overlay_opacity(0.25)
    writer.select_lesion(1)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.25) for c in composites)
    writer.set_overlay("gradcampp")
    writer.select_lesion(2, "context_shells")
    assert all(c.GetForegroundOpacity() == pytest.approx(0.25) for c in composites)
    writer.run()
    assert writer.overlay_opacity == pytest.approx(0.25)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.25) for c in composites)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ParameterError, match="opacity"):
            writer.set_overlay_opacity(bad)
    with pytest.raises(ParameterError, match="opacity"):
        DisplaySettings(foreground_opacity=2.0)


def test_display_settings_leave_legends_to_the_front_end_and_lesions_to_the_label_layer():
    scene, _, writer = fresh_session(DisplaySettings(view_legends=False, segmentation_in_slices=False))
    assert not writer.segmentation_node.GetDisplayNode().GetVisibility2D()
    writer.select_lesion(1)
    node = writer.overlay_node("smoothgrad_flair")
    assert not any(node.GetNthDisplayNode(i).IsA("vtkMRMLColorLegendDisplayNode") for i in range(node.GetNumberOfDisplayNodes()))
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorLegendDisplayNode") == 0
    assert writer.legend("smoothgrad_flair")["max"] > 0  # the front end draws it from here
    for c in views.composite_nodes(scene):
        assert c.GetLabelVolumeID() == writer.labels_node.GetID()
    writer.set_segmentation_in_slices(True)
    assert writer.segmentation_node.GetDisplayNode().GetVisibility2D()
    # the default (Slicer module) keeps both
    _, _, default = fresh_session()
    assert default.segmentation_node.GetDisplayNode().GetVisibility2D()


def test_show_in_3d_builds_closed_surfaces():
    scene, _, writer = fresh_session()
    segmentation = writer.segmentation_node.GetSegmentation()
    closed = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    writer.show_in_3d()
    assert segmentation.ContainsRepresentation(closed)
    display = writer.segmentation_node.GetDisplayNode()
    assert display.GetVisibility3D()
    surface = segmentation.GetSegment(writer.segment_id(2)).GetRepresentation(closed)
    assert surface.GetNumberOfPoints() > 0
    writer.show_in_3d(False)
    assert not display.GetVisibility3D()


def test_compute_lesion_delivers_the_shown_explainer_first_then_the_rest():
    scene, _, writer = fresh_session()
    stages = []

    def on_partial(result):
        assert not writer.session.is_cached(2)  # still computing
        stages.append(result)
        writer.show_lesion(result, "smoothgrad_flair")  # a front end shows each stage (here: same thread)

    final = writer.session.compute_lesion(2, on_partial=on_partial, first="smoothgrad_flair")
    # explanation-first: SmoothGrad alone, then + Grad-CAM++; the probe completes the final result
    assert [sorted(s.maps) for s in stages] == [
        ["smoothgrad_flair", "smoothgrad_mprage"], ["gradcampp", "smoothgrad_flair", "smoothgrad_mprage"]
    ]
    assert all(not s.complete and s.curve is None and s.statistics["context_needed_mm"] is None for s in stages)
    assert stages[0].statistics["flair_share"] is not None and not stages[0].statistics["computed"]
    assert final.complete and final.curve is not None and writer.session.is_cached(2)
    # the first stage put the overlay on screen already
    assert writer.writes == {"smoothgrad_flair": 1}
    # same maps as the one-shot computation
    direct = analyse_lesion(MODEL, writer.session.result, 2, SETTINGS.analysis_settings())
    for key, arr in direct.explanation.maps.items():
        np.testing.assert_array_equal(final.maps[key], arr)
    writer.show_lesion(final, "smoothgrad_flair")
    assert writer.writes == {"smoothgrad_flair": 1}  # the complete result holds the same map: not rewritten
    # a stage without the overlay asked for shows the lesion with no foreground yet
    stages.clear()
    writer.session.settings = SETTINGS.replace(seed=5)
    writer.session.compute_lesion(1, on_partial=stages.append, first="gradcampp")
    assert sorted(stages[0].maps) == ["gradcampp"]
    writer.show_lesion(stages[0], "smoothgrad_flair")
    assert writer.selected_id == 1
    assert all(c.GetForegroundVolumeID() is None for c in views.composite_nodes(scene))
    with pytest.raises(ParameterError, match="not available"):
        writer.overlay_node("smoothgrad_flair")
    writer.session.settings = SETTINGS


def test_cam_activations_once_per_run_and_a_cancelled_lesion_resumes():
    _, _, writer = fresh_session()
    writer.session.compute_lesion(1)
    writer.session.compute_lesion(2)
    assert writer.session.subject_analysis.activation_passes == 1
    token = CancelToken()
    seen = []

    def stop(result):
        seen.append(result)
        token.cancel()  # e.g. a click on another lesion

    writer.session.settings = SETTINGS.replace(seed=8)
    with pytest.raises(Cancelled):
        writer.session.compute_lesion(1, cancel=token, on_partial=stop, first="smoothgrad_flair")
    assert not writer.session.is_cached(1)
    again = []
    final = writer.session.compute_lesion(1, on_partial=again.append, first="smoothgrad_flair")
    assert again[0].maps["smoothgrad_flair"] is seen[0].maps["smoothgrad_flair"]  # resumed, shown at once
    assert final.maps["smoothgrad_flair"] is seen[0].maps["smoothgrad_flair"] and final.complete
    assert writer.session.subject_analysis.activation_passes == 1  # other settings, same subject and layer
    previous = writer.session.subject_analysis
    writer.run()
    assert writer.session.subject_analysis is not previous  # a new run: a new subject


def test_lesions_are_outlined_in_2d_and_the_selected_one_is_highlighted_in_3d():
    scene, _, writer = fresh_session()
    display = writer.segmentation_node.GetDisplayNode()
    # outlines by default: the map shows inside the lesion (segmentation and label layer alike)
    assert not display.GetVisibility2DFill() and display.GetOpacity2DFill() == 0.0
    assert display.GetVisibility2DOutline() and display.GetOpacity2DOutline() == 1.0
    assert all(node.GetUseLabelOutline() for node in views.slice_nodes(scene))
    # a slice view created after the run (another layout) gets the style with the next selection
    late = views.ensure_slice_views(scene, (("Slice4", "Axial"),))[0]
    assert not late.GetUseLabelOutline()
    writer.select_lesion(2)
    assert late.GetUseLabelOutline()
    selected, other = writer.segment_id(2), writer.segment_id(1)
    assert display.GetSegmentOpacity3D(selected) == 1.0
    assert display.GetSegmentOpacity3D(other) == pytest.approx(0.25)
    writer.select_lesion(1)
    assert display.GetSegmentOpacity3D(other) == 1.0 and display.GetSegmentOpacity3D(selected) == pytest.approx(0.25)
    # fill is optional
    writer.set_lesion_fill(True)
    assert display.GetVisibility2DFill() and display.GetOpacity2DFill() > 0
    assert not any(node.GetUseLabelOutline() for node in views.slice_nodes(scene))
    writer.set_lesion_fill(False)
    assert not display.GetVisibility2DFill() and all(node.GetUseLabelOutline() for node in views.slice_nodes(scene))


def test_overlay_combo_refill_with_smoothgrad_unchecked_is_not_an_error():
    """Slicer's GUI binding clears and refills the combo on module entry (index 0 = SmoothGrad FLAIR first)."""
    from LesionXAILib.slicer_app.controller import ModuleController

    scene, _, writer = fresh_session(settings=SETTINGS.replace(methods=("gradcampp",)))
    logic = ModuleController(scene)
    choices = list(OVERLAYS)  # the combo's items (LesionXAI.py's OVERLAY_CHOICES equal these)
    assert logic.combo_overlay(choices[0]) is None  # no writer yet
    logic.writer, logic.session = writer, writer.session
    assert logic.combo_overlay(choices[0]) is None  # nothing shown yet: nothing to switch
    writer.select_lesion(1, "gradcampp")
    # the refill: index 0 (a map these settings do not produce), empty text, then the saved choice back
    for name in (choices[0], None, "", "gradcampp"):
        overlay = logic.combo_overlay(name)
        if overlay is not None:
            logic.set_overlay(overlay)
    assert writer.overlay == "gradcampp"
    foreground = {c.GetForegroundVolumeID() for c in views.composite_nodes(scene)}
    assert foreground == {writer.overlay_node("gradcampp").GetID()}
    # a real user choice still switches
    assert logic.combo_overlay("context_shells") == "context_shells"
    logic.set_overlay("context_shells")
    assert writer.overlay == "context_shells"
    # and the names the combo cannot produce are refused by the bridge as before (an explicit call)
    with pytest.raises(ParameterError):
        logic.set_overlay(choices[0])
