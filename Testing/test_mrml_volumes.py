"""MRML bridge basics on a real slicer-core scene: volume nodes <-> arrays, colour tables, slice views."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry
from LesionXAILib.mrml import colors, views
from LesionXAILib.mrml.volumes import (
    array_from_volume_node,
    load_label_node,
    load_volume_node,
    volume_node_from_array,
)

pytestmark = pytest.mark.slicer

OBLIQUE = tuple(np.array(sitk.VersorTransform((0.2, -0.3, 0.4), 0.35).GetMatrix(), dtype=float).tolist())


def oblique_geometry(shape_kji=(5, 6, 7)) -> Geometry:
    return Geometry(size=shape_kji[::-1], origin=(12.5, -30.0, 7.25), spacing=(0.9, 1.3, 3.0), direction=OBLIQUE)


def node_matrix(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def test_array_round_trip_keeps_values_dtype_and_oblique_anisotropic_geometry():
    scene = slicer.vtkMRMLScene()
    g = oblique_geometry()
    arr = np.arange(np.prod(g.shape), dtype=np.int16).reshape(g.shape)
    node = volume_node_from_array(scene, arr, g, "vol")
    # independent expectation: RAS = diag(-1,-1,1) (LPS origin + direction * spacing * ijk)
    expected = np.eye(4)
    expected[:3, :3] = np.diag([-1, -1, 1]) @ np.asarray(OBLIQUE).reshape(3, 3) @ np.diag(g.spacing)
    expected[:3, 3] = np.diag([-1, -1, 1]) @ np.asarray(g.origin)
    np.testing.assert_allclose(node_matrix(node), expected, atol=1e-9)
    assert node.GetImageData().GetDimensions() == g.size
    back, g2 = array_from_volume_node(node)
    assert back.dtype == np.int16 and back.shape == g.shape
    np.testing.assert_array_equal(back, arr)
    assert g2.almost_equal(g, atol=1e-9)
    # voxel (i,j,k) = (1,2,3) is array[3,2,1] and sits at the matrix's RAS
    ras = expected @ np.array([1, 2, 3, 1.0])
    assert np.allclose(g2.ijk_to_ras_points(np.array([[1, 2, 3]]))[0], ras[:3])
    # copies both ways: editing our arrays leaves the node alone
    arr[0, 0, 0] = 999
    back[0, 0, 1] = -5
    again, _ = array_from_volume_node(node)
    assert again[0, 0, 0] == 0 and again[0, 0, 1] == 1


def test_parent_linear_transform_is_part_of_the_geometry_and_nonlinear_is_refused():
    import vtk

    scene = slicer.vtkMRMLScene()
    g = oblique_geometry()
    node = volume_node_from_array(scene, np.ones(g.shape, np.float32), g, "vol")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    m = vtk.vtkMatrix4x4()
    m.SetElement(0, 3, 10.0)
    m.SetElement(2, 3, -4.0)
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    _, g2 = array_from_volume_node(node)
    shift = np.array([10.0, 0.0, -4.0])
    assert np.allclose(g2.ijk_to_ras()[:3, 3], g.ijk_to_ras()[:3, 3] + shift)
    assert np.allclose(g2.ijk_to_ras()[:3, :3], g.ijk_to_ras()[:3, :3])
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputImageError, match="non-linear"):
        array_from_volume_node(node)


def test_load_volume_node_matches_simpleitk_and_rejects_bad_files(tmp_path):
    scene = slicer.vtkMRMLScene()
    g = oblique_geometry((6, 7, 8))
    arr = np.random.default_rng(0).normal(100, 10, g.shape).astype(np.float32)
    path = tmp_path / "flair.nii.gz"
    sitk.WriteImage(g.apply_to(sitk.GetImageFromArray(arr)), str(path))
    node = load_volume_node(scene, path)
    assert node.GetName() == "flair"
    back, g2 = array_from_volume_node(node)
    np.testing.assert_allclose(back, arr)
    assert g2.almost_equal(Geometry.from_image(sitk.ReadImage(str(path))))
    const = tmp_path / "const.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((4, 5, 6), np.float32)), str(const))
    with pytest.raises(InputImageError, match="constant"):
        load_volume_node(scene, const, role="FLAIR")
    with pytest.raises(InputImageError, match="not found"):
        load_volume_node(scene, tmp_path / "missing.nii.gz")
    empty_labels = load_label_node(scene, const)  # label maps may be constant (no lesions)
    assert empty_labels.IsA("vtkMRMLLabelMapVolumeNode")


def test_non_scalar_nodes_are_refused():
    scene = slicer.vtkMRMLScene()
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    with pytest.raises(InputImageError, match="scalar volume"):
        array_from_volume_node(seg)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InputImageError, match="no image data"):
        array_from_volume_node(empty)


def _display_alpha(scene, values: np.ndarray, table, window: tuple[float, float]) -> np.ndarray:
    """Run Slicer's own scalar-volume display pipeline and return the output alpha per voxel."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    g = Geometry(size=(values.size, 1, 1), origin=(0, 0, 0), spacing=(1, 1, 1), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    node = volume_node_from_array(scene, values.reshape(1, 1, -1).astype(np.float32), g, "overlay")
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(table.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(*window)
    display.SetInputImageDataConnection(node.GetImageDataConnection())
    connection = display.GetOutputImageDataConnection()
    producer = connection.GetProducer()
    producer.Update()
    out = producer.GetOutputDataObject(connection.GetIndex())
    rgba = vtk_to_numpy(out.GetPointData().GetScalars()).reshape(values.size, -1)
    return rgba[:, 3]


def test_overlay_tables_are_centred_and_transparent_for_low_values_in_slicers_display_pipeline():
    scene = slicer.vtkMRMLScene()
    div = colors.diverging_rgba()
    mid = len(div) // 2
    assert div[0, 2] > div[0, 0] and div[-1, 0] > div[-1, 2]  # blue negative end, red positive end
    assert np.allclose(div[mid, :3], 1.0, atol=0.01) and div[mid, 3] == 0
    assert div[0, 3] == 1 and div[-1, 3] == 1
    values = np.array([-10.0, -5.0, -0.5, 0.0, 0.5, 5.0, 10.0])
    alpha = _display_alpha(scene, values, colors.diverging_colors(scene), (-10.0, 10.0))
    assert list(alpha > 0) == [True, True, False, False, False, True, True]
    seq_alpha = _display_alpha(scene, np.array([0.0, 0.5, 3.0, 10.0]), colors.sequential_colors(scene), (0.0, 10.0))
    assert list(seq_alpha > 0) == [False, False, True, True]


def test_lesion_colours_are_distinct_and_stable():
    cols = np.array([colors.lesion_color(i) for i in range(1, 61)])
    d = np.linalg.norm(cols[:, None] - cols[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.02
    consecutive = np.linalg.norm(cols[1:] - cols[:-1], axis=1)
    assert consecutive.min() > 0.2  # neighbouring ids (often neighbouring lesions) clearly differ
    assert colors.lesion_color(7) == colors.lesion_color(7)


def test_colour_tables_are_created_once_per_scene():
    scene = slicer.vtkMRMLScene()
    a = colors.diverging_colors(scene)
    b = colors.diverging_colors(scene)
    assert a is b or a.GetID() == b.GetID()
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 1


def test_ensure_slice_views_builds_red_yellow_green_once():
    scene = slicer.vtkMRMLScene()
    nodes = views.ensure_slice_views(scene)
    assert [n.GetLayoutName() for n in nodes] == ["Red", "Yellow", "Green"]
    assert [n.GetOrientation() for n in nodes] == ["Axial", "Sagittal", "Coronal"]
    views.ensure_slice_views(scene)
    assert len(views.slice_nodes(scene)) == 3 and len(views.composite_nodes(scene)) == 3
    views.jump_slices_to(scene, (3.0, -4.0, 5.0))
    red = nodes[0].GetSliceToRAS()
    assert red.GetElement(2, 3) == pytest.approx(5.0)
