"""Putting the subject into the viewer's scene and running a Session on it, shown by a SceneWriter."""

from __future__ import annotations

import logging
from typing import Any, Optional

from LesionXAILib.progress import ProgressCallback
from LesionXAILib.viewer.inputs import ViewerInputs

log = logging.getLogger("LesionXAILib.viewer")


def _viewer_display() -> Any:
    from LesionXAILib.mrml.writer import DisplaySettings

    return DisplaySettings(view_legends=False, segmentation_in_slices=False)


def load_subject_nodes(scene: Any, inputs: ViewerInputs, progress: Optional[ProgressCallback] = None) -> dict[str, Any]:
    """Return {'flair', 't1', 'gt'} volume nodes added to ``scene`` from files, or from a generated phantom."""
    from LesionXAILib.mrml.volumes import load_label_node, load_volume_node, volume_node_from_array

    if inputs.is_phantom:
        import numpy as np

        from LesionXAILib.phantom import PhantomSettings, generate_phantom

        settings = PhantomSettings(n_lesions=inputs.phantom_lesions, fov_mm=inputs.phantom_fov_mm)
        phantom = generate_phantom(int(inputs.phantom_seed or 0), settings, progress=progress)
        g = phantom.geometry
        return {
            "flair": volume_node_from_array(scene, phantom.flair, g, "FLAIR"),
            "t1": volume_node_from_array(scene, phantom.t1, g, "MPRAGE"),
            "gt": volume_node_from_array(scene, phantom.lesions.astype(np.uint8), g, "Ground truth", labelmap=True),
        }
    nodes = {
        "flair": load_volume_node(scene, inputs.flair, "FLAIR"),
        "t1": load_volume_node(scene, inputs.t1, "MPRAGE"),
        "gt": None,
    }
    if inputs.gt is not None:
        nodes["gt"] = load_label_node(scene, inputs.gt, "Ground truth")
    return nodes


def start_session(
    scene: Any,
    nodes: dict[str, Any],
    model: Any = None,
    settings: Any = None,
    progress: Optional[ProgressCallback] = None,
    display: Any = None,
) -> Any:
    """Return the SceneWriter of a new Session on the subject's nodes after its segmentation (instances, table, segments).

    Display: no colour legends inside the views (the panel draws the colour bar from ``legend()``) and the
    lesions drawn once in the slice views, by the label layer (the segmentation node is kept for 3D).
    """
    from LesionXAILib.mrml.writer import SceneWriter
    from LesionXAILib.session.settings import SessionSettings

    writer = SceneWriter.for_nodes(
        scene, nodes["flair"], nodes["t1"], model=model, settings=settings or SessionSettings(), ground_truth_node=nodes["gt"],
        display=_viewer_display() if display is None else display,
    )  # fmt: skip
    writer.run(progress=progress)
    return writer


def summary_text(session: Any) -> str:
    """Return e.g. '12 lesions · TP 9 · FP 2 · FN 1' from a Session's table rows."""
    rows = session.table_rows()
    counts: dict[str, int] = {}
    for row in rows:
        status = str(row.get("status") or "")
        counts[status] = counts.get(status, 0) + 1
    parts = [f"{len(rows)} lesion{'s' if len(rows) != 1 else ''}"]
    parts += [f"{s} {counts[s]}" for s in ("TP", "FP", "FN") if counts.get(s)]
    return " · ".join(parts)
