"""Volume nodes <-> numpy arrays (k,j,i) with their full geometry (IJK-to-RAS, parent transforms)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry

# numpy dtypes VTK stores natively; anything else is converted (bool -> uint8, float16 -> float32)
_VTK_SAFE = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float32, np.float64)


def _slicer():
    import slicer

    return slicer


def node_label(node: Any) -> str:
    """Return a short description of a node for error messages."""
    if node is None:
        return "no node"
    return f"'{node.GetName()}' ({node.GetClassName()})"


def world_ijk_to_ras(node: Any) -> np.ndarray:
    """Return the 4x4 IJK-to-world-RAS matrix of a volume node (its parent linear transforms applied).

    A non-linear parent transform cannot be expressed on a voxel grid: InputImageError asks to harden it.
    """
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    ijk_to_ras = np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
    parent = node.GetParentTransformNode()
    if parent is None:
        return ijk_to_ras
    if not parent.IsTransformToWorldLinear():
        raise InputImageError(
            f"volume {node_label(node)} is under the non-linear transform '{parent.GetName()}'; "
            "harden the transform (Data module, right-click > Harden transform) before running LesionXAI"
        )
    to_world = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(to_world)
    world = np.array([[to_world.GetElement(r, c) for c in range(4)] for r in range(4)])
    return world @ ijk_to_ras


def node_geometry(node: Any) -> Geometry:
    """Return the world-space grid of a volume node (size from its image data)."""
    image = node.GetImageData() if node is not None else None
    if image is None:
        raise InputImageError(f"volume {node_label(node)} holds no image data")
    return Geometry.from_ijk_to_ras(world_ijk_to_ras(node), image.GetDimensions())


def array_from_volume_node(node: Any) -> tuple[np.ndarray, Geometry]:
    """Return (a k,j,i copy of the node's voxels, the node's world geometry); the node is left untouched."""
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if node is None or not node.IsA("vtkMRMLScalarVolumeNode"):
        raise InputImageError(f"expected a scalar volume node, got {node_label(node)}")
    geometry = node_geometry(node)
    image = node.GetImageData()
    scalars = image.GetPointData().GetScalars()
    if scalars is None:
        raise InputImageError(f"volume {node_label(node)} has no voxel values")
    if scalars.GetNumberOfComponents() != 1:
        raise InputImageError(
            f"volume {node_label(node)} has {scalars.GetNumberOfComponents()} components per voxel; "
            "expected one scalar volume"
        )
    array = np.array(vtk_to_numpy(scalars), copy=True).reshape(geometry.shape)
    return array, geometry


def _vtk_image(array: np.ndarray) -> Any:
    import vtk
    from vtkmodules.util.numpy_support import numpy_to_vtk

    arr = np.asarray(array)
    if arr.ndim != 3:
        raise InputImageError(f"expected a 3D k,j,i array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype.type not in _VTK_SAFE:
        arr = arr.astype(np.float32)
    image = vtk.vtkImageData()
    image.SetDimensions(arr.shape[2], arr.shape[1], arr.shape[0])
    # deep copy: the node owns its voxels, later edits of ``array`` must not leak into the scene
    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(arr).ravel(), deep=True))
    return image


def _vtk_matrix(matrix: np.ndarray) -> Any:
    import vtk

    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, float(matrix[r, c]))
    return m


def update_volume_node(node: Any, array_kji: np.ndarray, geometry: Geometry) -> Any:
    """Replace a volume node's voxels and geometry (array copied) and return the node."""
    if tuple(np.shape(array_kji)) != tuple(geometry.shape):
        raise InputImageError(f"array shape {np.shape(array_kji)} (k,j,i) does not match the grid {geometry.shape}")
    node.SetIJKToRASMatrix(_vtk_matrix(geometry.ijk_to_ras()))
    node.SetAndObserveImageData(_vtk_image(array_kji))
    return node


def volume_node_from_array(
    scene: Any, array_kji: np.ndarray, geometry: Geometry, name: str, labelmap: bool = False
) -> Any:
    """Return a new scalar (or labelmap) volume node in ``scene`` holding a copy of the array on ``geometry``."""
    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(class_name, name)
    update_volume_node(node, array_kji, geometry)
    ensure_display_node(node)
    return node


def ensure_display_node(node: Any) -> Any:
    """Return the node's display node, creating one (grey or generic-label colours) if it has none."""
    display = node.GetDisplayNode()
    if display is not None:
        return display
    from LesionXAILib.mrml.colors import default_label_colors, grey_colors

    scene = node.GetScene()
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        display = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeDisplayNode")
        display.SetAndObserveColorNodeID(default_label_colors(scene).GetID())
    else:
        display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
        display.SetAndObserveColorNodeID(grey_colors(scene).GetID())
        display.AutoWindowLevelOn()
    node.SetAndObserveDisplayNodeID(display.GetID())
    return display


def load_volume_node(scene: Any, path: str | os.PathLike, name: Optional[str] = None, role: str = "image") -> Any:
    """Return a scalar volume node read from ``path`` with LesionXAILib.image_io (same checks as the CLI)."""
    import SimpleITK as sitk

    from LesionXAILib.image_io import read_image

    image = read_image(path, role)
    array = sitk.GetArrayFromImage(image)
    return volume_node_from_array(scene, array, Geometry.from_image(image), name or _stem(path))


def load_label_node(scene: Any, path: str | os.PathLike, name: Optional[str] = None) -> Any:
    """Return a labelmap volume node read from ``path`` (any integer-valued 3D label image, empty allowed)."""
    import SimpleITK as sitk

    from LesionXAILib.image_io import read_label_volume

    image = read_label_volume(path, "label map")
    p = Path(path)
    array = sitk.GetArrayFromImage(image)
    if not np.isfinite(array).all():
        raise InputImageError(f"label map '{p}': contains NaN or infinite voxels")
    labels = np.rint(array).astype(np.int32)
    return volume_node_from_array(scene, labels, Geometry.from_image(image), name or _stem(path), labelmap=True)


def _stem(path: str | os.PathLike) -> str:
    name = os.path.basename(os.fspath(path))
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def volume_fingerprint(node: Any) -> tuple:
    """Return a cheap stamp of a volume node's voxels and geometry (changes whenever either is modified)."""
    image = node.GetImageData()
    scalars = image.GetPointData().GetScalars() if image is not None else None
    parent = node.GetParentTransformNode()
    return (
        node.GetID(),
        image.GetMTime() if image is not None else None,
        scalars.GetMTime() if scalars is not None else None,
        tuple(np.round(world_ijk_to_ras(node).ravel(), 9)) if image is not None else None,
        parent.GetID() if parent is not None else None,
    )
