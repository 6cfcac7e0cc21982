"""Scene nodes of the counterfactual overlay and the similar-lesions table (written by SceneWriter).

The counterfactual FLAIR and its log-Jacobian map go into nodes of their own (created on first use,
updated for the next lesion), never into an input node; both carry the FLAIR's grid. The log-Jacobian
is drawn with the diverging table on a symmetric window [-M, M], so shrinkage (< 0) is blue, growth
(> 0) red and no change white/transparent.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from LesionXAILib.mrml import colors, hierarchy
from LesionXAILib.mrml.tables import _array
from LesionXAILib.mrml.volumes import ensure_display_node, update_volume_node, volume_node_from_array

LESION_ATTRIBUTE = "LesionXAI.lesion_id"
ROLE_ATTRIBUTE = "LesionXAI.counterfactual"
# smallest half-width of the log-Jacobian window, so that a near-identity warp is not drawn at full colour
MIN_LOG_JACOBIAN_WINDOW = 0.05
SIMILAR_COLUMNS = (("rank", "int", "Rank"), ("subject", "string", "Subject"), ("id", "int", "Lesion id"),
                   ("status", "string", "Status"), ("distance", "double", "Cosine distance"),
                   ("volume_mm3", "double", "Volume (mm³)"))  # fmt: skip


def log_jacobian_window(log_jacobian: np.ndarray) -> float:
    """Return the half-width M of the symmetric display window [-M, M] of a log-Jacobian map."""
    values = np.abs(np.asarray(log_jacobian, dtype=np.float64))
    return float(max(values.max() if values.size else 0.0, MIN_LOG_JACOBIAN_WINDOW))


def write_volume(scene: Any, node: Any, folder: int, array: np.ndarray, geometry: Any, title: str, lesion_id: int, role: str) -> Any:
    """Write ``array`` into ``node`` (a new scalar node when None or removed); return the node."""
    if node is None or node.GetScene() is None:
        node = volume_node_from_array(scene, array, geometry, title)
        if folder:
            hierarchy.place_in_folder(scene, node, folder)
    else:
        update_volume_node(node, array, geometry)
    node.SetName(f"{title} · lesion {lesion_id}")
    node.SetAttribute(LESION_ATTRIBUTE, str(lesion_id))
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    return node


def style_like(node: Any, reference: Any) -> None:
    """Give ``node`` the reference volume's window/level (the counterfactual FLAIR looks like the FLAIR)."""
    display = ensure_display_node(node)
    ref = reference.GetDisplayNode() if reference is not None else None
    if ref is None:
        return
    was = display.StartModify()
    display.AutoWindowLevelOff()
    display.SetWindowLevel(ref.GetWindow(), ref.GetLevel())
    display.EndModify(was)


def style_log_jacobian(scene: Any, node: Any, half_width: float) -> None:
    """Draw a log-Jacobian node with the diverging table over [-half_width, half_width]."""
    display = ensure_display_node(node)
    was = display.StartModify()
    display.SetAndObserveColorNodeID(colors.diverging_colors(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(-half_width, half_width)
    display.EndModify(was)


def log_jacobian_legend(half_width: float) -> dict:
    """Return the colour bar of the log-Jacobian overlay (same keys as the explanation overlays' legends)."""
    return {
        "colormap": colors.DIVERGING, "min": -float(half_width), "max": float(half_width), "units": "log volume ratio",
        "colors": colors.legend_entries(colors.diverging_rgba(), -half_width, half_width),
        "title": "Counterfactual log-Jacobian (shrink < 0 < grow)",
        "transparent_below": float(colors.TRANSPARENT_FRACTION * half_width),
    }  # fmt: skip


def fill_similar_table(table_node: Any, rows: Sequence[Any], lesion_id: Any) -> None:
    """Fill ``table_node`` with one row per neighbour (rank, subject, id, status, distance, volume)."""
    import vtk

    table = vtk.vtkTable()
    for key, kind, _ in SIMILAR_COLUMNS:
        arr = _array(kind, key)
        arr.SetNumberOfValues(len(rows))
        for i, r in enumerate(rows):
            value = {"rank": r.rank, "subject": r.subject, "id": r.lesion_id, "status": r.status, "distance": r.distance,
                     "volume_mm3": r.volume_mm3}[key]  # fmt: skip
            arr.SetValue(i, str(value) if kind == "string" else value)
        table.AddColumn(arr)
    was = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    for key, _, title in SIMILAR_COLUMNS:
        table_node.SetColumnTitle(key, title)
    table_node.SetAttribute(LESION_ATTRIBUTE, "" if lesion_id is None else str(lesion_id))
    table_node.SetLocked(True)
    table_node.EndModify(was)
