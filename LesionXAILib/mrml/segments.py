"""Segmentation nodes: one segment per lesion instance; ground-truth nodes (segmentation or labelmap) -> masks."""

from __future__ import annotations

from typing import Any

import numpy as np

from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry
from LesionXAILib.instances import InstanceSet
from LesionXAILib.mrml.volumes import array_from_volume_node, node_label, volume_node_from_array
from LesionXAILib.session.results import lesion_name

LESION_TAG = "LesionXAI.lesion_id"
# vtkSegmentation extent mode: the exported label map covers the segments (then resampled onto the FLAIR grid)
EXTENT_UNION_OF_SEGMENTS = 1


def fill_segmentation(segmentation_node: Any, labels_node: Any, instances: InstanceSet) -> dict[int, str]:
    """Replace the node's segments by one per instance of ``labels_node`` (names/colours from its table); return id -> segment id."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    segmentation.RemoveAllSegments()
    if instances.ids and not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(
        labels_node, segmentation_node
    ):
        raise InputImageError(f"could not turn the lesion label map {node_label(labels_node)} into segments")
    segment_ids: dict[int, str] = {}
    names = {lesion_name(r): r for r in instances.instances}
    for n in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(n)
        segment = segmentation.GetNthSegment(n)
        row = names.get(segment.GetName())
        lesion_id = row.id if row is not None else int(segment.GetLabelValue())
        segment.SetTag(LESION_TAG, str(lesion_id))
        segment_ids[lesion_id] = segment_id
    missing = sorted(set(instances.ids) - set(segment_ids))
    if missing:
        raise InputImageError(f"lesions {missing} produced no segment (empty instance masks?)")
    return segment_ids


def segment_tag(segment: Any, name: str) -> str | None:
    """Return the value of a segment tag, or None when the segment does not carry it."""
    import vtk

    value = vtk.mutable("")
    return str(value) if segment.GetTag(name, value) else None


def lesion_of_segment(segmentation_node: Any, segment_id: str) -> int | None:
    """Return the lesion id stored on a LesionXAI segment (None for other segments)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    tag = segment_tag(segment, LESION_TAG) if segment is not None else None
    return int(tag) if tag not in (None, "") else None


def _resample_nearest(array: np.ndarray, source: Geometry, reference: Geometry) -> np.ndarray:
    import SimpleITK as sitk

    from LesionXAILib.geometry import array_to_image, boxes_overlap, resample_to

    if not boxes_overlap(source, reference):
        raise InputImageError("the ground truth does not overlap the FLAIR field of view")
    image = array_to_image(array.astype(np.uint8), source)
    return sitk.GetArrayFromImage(resample_to(image, reference, sitk.sitkNearestNeighbor))


def ground_truth_mask(node: Any, reference: Geometry) -> np.ndarray:
    """Return a boolean k,j,i lesion mask on ``reference`` from a segmentation, labelmap or scalar node (node untouched)."""
    if node is None:
        raise InputImageError("no ground-truth node given")
    if node.IsA("vtkMRMLSegmentationNode"):
        return _segmentation_mask(node, reference)
    if node.IsA("vtkMRMLScalarVolumeNode"):  # labelmap nodes are scalar volume nodes too
        array, geometry = array_from_volume_node(node)
        if not np.isfinite(array).all():
            raise InputImageError(f"ground truth {node_label(node)} contains NaN or infinite voxels")
        mask = array > 0
        if not geometry.almost_equal(reference):
            mask = _resample_nearest(mask, geometry, reference) > 0
        return mask
    raise InputImageError(f"ground truth must be a segmentation or a label/scalar volume node, got {node_label(node)}")


def _segmentation_mask(node: Any, reference: Geometry) -> np.ndarray:
    """Export every segment of ``node`` onto ``reference`` without modifying the node.

    A binary-labelmap segmentation (the usual ground truth) is exported directly, which only reads it;
    any other source representation is converted on a copy, since the conversion would add a
    representation to the user's node.
    """
    import slicer

    if node.GetParentTransformNode() is not None:
        raise InputImageError(
            f"ground-truth segmentation {node_label(node)} is under a transform; harden it before running LesionXAI"
        )
    scene = node.GetScene()
    segmentation = node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        return np.zeros(reference.shape, dtype=bool)
    temporary = []
    try:
        source = node
        labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
        if segmentation.GetSourceRepresentationName() != labelmap_name:
            source = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "LesionXAI temporary ground truth")
            temporary.append(source)
            source.GetSegmentation().DeepCopy(segmentation)
            if source.GetSegmentation().GetNumberOfSegments() != segmentation.GetNumberOfSegments():
                raise InputImageError(
                    f"ground-truth segmentation {node_label(node)} could not be copied for conversion to a label map; "
                    "convert it to a binary labelmap (Segmentations module) first"
                )
        labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "LesionXAI temporary labels")
        temporary.append(labels)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(source, labels, EXTENT_UNION_OF_SEGMENTS)
        if not ok or labels.GetImageData() is None:
            raise InputImageError(f"could not export ground-truth segmentation {node_label(node)} to a label map")
        array, geometry = array_from_volume_node(labels)
        mask = array > 0
        if not geometry.almost_equal(reference):
            mask = _resample_nearest(mask, geometry, reference) > 0
        return mask
    finally:
        for n in temporary:
            display = n.GetDisplayNode()
            if display is not None:
                scene.RemoveNode(display)
            scene.RemoveNode(n)


def instance_labels_node(scene: Any, instances: InstanceSet, name: str, existing: Any = None) -> Any:
    """Return a labelmap node holding the instance label map (reusing ``existing`` when given)."""
    from LesionXAILib.mrml.volumes import update_volume_node

    labels = instances.labels.astype(np.int32, copy=False)
    if existing is not None:
        return update_volume_node(existing, labels, instances.geometry)
    return volume_node_from_array(scene, labels, instances.geometry, name, labelmap=True)


def ensure_surface_rule() -> None:
    """Register the labelmap -> closed-surface conversion rule unless present (Slicer and trame-slicer register it
    through their Segmentations module logic; a bare slicer-core scene has no rules, so no 3D surfaces)."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    rule_class = slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule
    if not any(isinstance(rule, rule_class) for rule in factory.GetConverterRules()):
        factory.RegisterConverterRule(rule_class())
