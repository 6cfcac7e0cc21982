"""Slice views: the scene's slice nodes and composite nodes (which volume is background/foreground/label).

Desktop Slicer and trame-slicer create their own slice and composite nodes; LesionXAI only sets the
layers of every composite node in the scene and moves the slices. ``ensure_slice_views`` builds the
standard Red/Yellow/Green trio in a bare slicer-core scene (tests, scripts) the way Slicer names them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from LesionXAILib.mrml.colors import nodes_by_class

STANDARD_VIEWS = (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))
# foreground opacity used when an overlay is shown: low attribution is transparent already, this
# keeps the anatomy visible through strong attribution too
FOREGROUND_OPACITY = 0.7


def slice_nodes(scene: Any) -> list:
    """Return every slice node of the scene."""
    return nodes_by_class(scene, "vtkMRMLSliceNode")


def composite_nodes(scene: Any) -> list:
    """Return every slice composite node of the scene."""
    return nodes_by_class(scene, "vtkMRMLSliceCompositeNode")


def ensure_slice_views(scene: Any, views: Sequence[tuple[str, str]] = STANDARD_VIEWS) -> list:
    """Return the Red/Yellow/Green (axial/sagittal/coronal) slice nodes, creating them and their composites if missing."""
    import slicer

    default = scene.GetDefaultNodeByClass("vtkMRMLSliceNode")
    if default is None or not default.HasSliceOrientationPreset("Axial"):
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    existing_slices = {n.GetLayoutName(): n for n in slice_nodes(scene)}
    existing_composites = {n.GetLayoutName(): n for n in composite_nodes(scene)}
    out = []
    for layout_name, orientation in views:
        node = existing_slices.get(layout_name)
        if node is None:
            node = scene.CreateNodeByClass("vtkMRMLSliceNode")
            node.SetName(layout_name)
            node.SetLayoutName(layout_name)
            node.SetSingletonTag(layout_name)
            node.SetOrientation(orientation)
            node.SetDimensions(256, 256, 1)
            node.SetFieldOfView(250.0, 250.0, 1.0)
            scene.AddNode(node)
            node.UnRegister(None)  # CreateNodeByClass returned an owning reference; the scene holds it now
        if layout_name not in existing_composites:
            composite = scene.CreateNodeByClass("vtkMRMLSliceCompositeNode")
            composite.SetLayoutName(layout_name)
            composite.SetSingletonTag(layout_name)
            scene.AddNode(composite)
            composite.UnRegister(None)
        out.append(node)
    return out


def set_layers(
    scene: Any,
    background: Any = None,
    foreground: Any = None,
    label: Any = None,
    foreground_opacity: Optional[float] = FOREGROUND_OPACITY,
) -> int:
    """Set background/foreground/label volumes of every composite node (None clears that layer); return how many."""
    nodes = composite_nodes(scene)
    for composite in nodes:
        was = composite.StartModify()
        composite.SetBackgroundVolumeID(background.GetID() if background is not None else None)
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetLabelVolumeID(label.GetID() if label is not None else None)
        if foreground_opacity is not None:
            composite.SetForegroundOpacity(float(foreground_opacity))
        composite.EndModify(was)
    return len(nodes)


def set_label_outline(scene: Any, outline: bool = True) -> int:
    """Draw the label layer of every slice view as outlines (True) or filled (False); return how many views."""
    nodes = slice_nodes(scene)
    for node in nodes:
        if bool(node.GetUseLabelOutline()) != bool(outline):
            node.SetUseLabelOutline(bool(outline))
    return len(nodes)


def set_foreground(scene: Any, foreground: Any) -> None:
    """Set only the foreground volume of every composite node."""
    for composite in composite_nodes(scene):
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)


def jump_slices_to(scene: Any, ras: Sequence[float]) -> None:
    """Centre every slice view on the RAS point (each keeps its orientation)."""
    r, a, s = (float(v) for v in ras)
    for node in slice_nodes(scene):
        node.JumpSliceByCentering(r, a, s)
