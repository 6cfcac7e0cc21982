"""A session's input nodes in a scene: checked once, read into RunInputs, and stamped to notice later edits.

Input nodes are only read: their voxels, geometry, display and references are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from LesionXAILib.errors import InputImageError
from LesionXAILib.mrml import segments
from LesionXAILib.mrml.volumes import array_from_volume_node, node_label, volume_fingerprint
from LesionXAILib.session.settings import RunInputs, SessionSettings, check_settings


@dataclass(frozen=True)
class SceneInputs:
    """The FLAIR and MPRAGE scalar volume nodes (and optional ground truth) a session reads from ``scene``."""

    scene: Any
    flair: Any
    t1: Any
    ground_truth: Any = None

    def __post_init__(self) -> None:
        for role, node in (("FLAIR", self.flair), ("MPRAGE", self.t1)):
            if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
                raise InputImageError(f"{role}: expected a scalar volume node, got {node_label(node)}")
            if node.GetScene() is not self.scene:
                raise InputImageError(f"{role} volume {node_label(node)} is not in this scene")
        if self.flair is self.t1:
            raise InputImageError(f"FLAIR and MPRAGE are the same node {node_label(self.flair)}")
        if self.ground_truth is not None and self.ground_truth.GetScene() is not self.scene:
            raise InputImageError(f"ground truth {node_label(self.ground_truth)} is not in this scene")

    def same_nodes(self, other: "SceneInputs") -> bool:
        """Return True if ``other`` names the very same nodes."""
        return self.flair is other.flair and self.t1 is other.t1 and self.ground_truth is other.ground_truth

    def stamps(self) -> tuple:
        """Return the nodes' fingerprints now (voxels + geometry; a segmentation's modification time)."""
        out = []
        for node in (self.flair, self.t1, self.ground_truth):
            if node is None:
                out.append(None)
            elif node.GetScene() is None:
                out.append(("removed", id(node)))
            elif node.IsA("vtkMRMLSegmentationNode"):
                out.append((node.GetID(), node.GetSegmentation().GetMTime()))
            else:
                out.append(volume_fingerprint(node))
        return tuple(out)

    def read_images(self) -> tuple[Any, Optional[np.ndarray]]:
        """Return (InputPair on the FLAIR grid, ground-truth mask or None) read from the nodes (validated like the CLI)."""
        from LesionXAILib.geometry import array_to_image
        from LesionXAILib.image_io import pair_from_images

        images = []
        for node in (self.flair, self.t1):
            if node.GetScene() is None:
                raise InputImageError(f"volume {node_label(node)} was removed from the scene")
            array, geometry = array_from_volume_node(node)
            images.append(array_to_image(array.astype(np.float32, copy=False), geometry))
        pair = pair_from_images(images[0], images[1], self.flair.GetName(), self.t1.GetName())
        gt = None
        if self.ground_truth is not None:
            gt = segments.ground_truth_mask(self.ground_truth, pair.geometry)
        return pair, gt

    def read(self, settings: SessionSettings) -> RunInputs:
        """Return what a run with ``settings`` segments, read now (main thread: reads MRML; changes nothing)."""
        check_settings(settings)
        stamps = self.stamps()
        pair, gt = self.read_images()
        return RunInputs(pair, gt, stamps, settings)
