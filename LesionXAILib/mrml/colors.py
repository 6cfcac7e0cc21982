"""Colour tables for LesionXAI nodes: distinct lesion colours, diverging/sequential overlays, context shells.

Overlay tables are drawn over a fixed window: signed maps (gradients, SmoothGrad) on [-M, M] with a
blue-white-red table centred at 0, CAMs on [0, M] with a black-red-yellow ramp. Entries whose
magnitude is below ``TRANSPARENT_FRACTION`` of the window get alpha 0: Slicer's scalar-volume display
pipeline ANDs the table's alpha into the slice layer's alpha, so near-zero attribution leaves the
anatomy underneath visible.
"""

from __future__ import annotations

import colorsys
from typing import Any, Sequence

import numpy as np

# |value| below this fraction of the window half-width (signed) or width (CAM) is drawn transparent
TRANSPARENT_FRACTION = 0.1
TABLE_SIZE = 256
ATTRIBUTE = "LesionXAI.colormap"

DIVERGING = "LesionXAI diverging"
SEQUENTIAL = "LesionXAI sequential"
SHELLS = "LesionXAI context shells"
GREY = "LesionXAI grey"
GENERIC_LABELS = "LesionXAI labels"

# anchor colours of the two overlay ramps (positions in 0..1)
_DIVERGING_STOPS = ((0.0, (0.02, 0.19, 0.58)), (0.25, (0.26, 0.57, 0.78)), (0.5, (1.0, 1.0, 1.0)),
                    (0.75, (0.94, 0.40, 0.28)), (1.0, (0.60, 0.0, 0.05)))  # fmt: skip
_SEQUENTIAL_STOPS = ((0.0, (0.0, 0.0, 0.0)), (0.35, (0.73, 0.09, 0.09)), (0.7, (0.98, 0.62, 0.04)),
                     (1.0, (1.0, 1.0, 0.75)))  # fmt: skip


def lesion_color(lesion_id: int) -> tuple[float, float, float]:
    """Return a distinct, stable RGB colour (0..1) for a lesion id: golden-angle hues, alternating brightness."""
    i = int(lesion_id)
    hue = (i * 0.618033988749895) % 1.0
    saturation = 0.75 if i % 2 else 0.55
    value = 0.95 if (i // 2) % 2 else 0.8
    return tuple(float(c) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def ramp(stops: Sequence[tuple[float, tuple[float, float, float]]], n: int = TABLE_SIZE) -> np.ndarray:
    """Return an (n, 3) array of RGB colours interpolated linearly between ``(position, rgb)`` stops."""
    pos = np.array([p for p, _ in stops])
    rgb = np.array([c for _, c in stops])
    t = np.linspace(0.0, 1.0, n)
    return np.stack([np.interp(t, pos, rgb[:, k]) for k in range(3)], axis=1)


def diverging_rgba(n: int = TABLE_SIZE) -> np.ndarray:
    """Return the (n, 4) diverging table: blue (negative) - white (0) - red (positive), transparent near 0."""
    rgba = np.ones((n, 4))
    rgba[:, :3] = ramp(_DIVERGING_STOPS, n)
    t = np.linspace(-1.0, 1.0, n)  # entry position on [-M, M] / M
    rgba[np.abs(t) < TRANSPARENT_FRACTION, 3] = 0.0
    return rgba


def sequential_rgba(n: int = TABLE_SIZE) -> np.ndarray:
    """Return the (n, 4) sequential table for non-negative maps, transparent below the low-value cut."""
    rgba = np.ones((n, 4))
    rgba[:, :3] = ramp(_SEQUENTIAL_STOPS, n)
    t = np.linspace(0.0, 1.0, n)
    rgba[t < TRANSPARENT_FRACTION, 3] = 0.0
    return rgba


def nodes_by_class(scene: Any, class_name: str) -> list:
    """Return the scene's nodes of ``class_name`` (subclasses included) as a list."""
    return [scene.GetNthNodeByClass(i, class_name) for i in range(scene.GetNumberOfNodesByClass(class_name))]


def _find(scene: Any, name: str) -> Any:
    for node in nodes_by_class(scene, "vtkMRMLColorTableNode"):
        if node.GetAttribute(ATTRIBUTE) == name:
            return node
    return None


def color_table(scene: Any, name: str, rgba: np.ndarray, names: Sequence[str] | None = None) -> Any:
    """Return the colour table node ``name`` (created once per scene, refilled with ``rgba``)."""
    node = _find(scene, name)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
        node.SetAttribute(ATTRIBUTE, name)
        node.SetTypeToUser()
        node.SetHideFromEditors(False)
    fill_table(node, rgba, names)
    return node


def fill_table(node: Any, rgba: np.ndarray, names: Sequence[str] | None = None) -> None:
    """Set every entry of a colour table node from an (n, 4) RGBA array (names default to the index)."""
    rgba = np.asarray(rgba, dtype=float)
    was = node.StartModify()
    node.SetNumberOfColors(len(rgba))
    for i, (r, g, b, a) in enumerate(rgba):
        label = names[i] if names is not None else str(i)
        node.SetColor(i, label, float(r), float(g), float(b), float(a))
    node.EndModify(was)


def diverging_colors(scene: Any) -> Any:
    """Return the scene's diverging overlay table (signed maps)."""
    return color_table(scene, DIVERGING, diverging_rgba())


def sequential_colors(scene: Any) -> Any:
    """Return the scene's sequential overlay table (CAMs)."""
    return color_table(scene, SEQUENTIAL, sequential_rgba())


def grey_colors(scene: Any) -> Any:
    """Return Slicer's Grey table when the scene has it, else LesionXAI's own grey ramp."""
    node = scene.GetNodeByID("vtkMRMLColorTableNodeGrey")
    if node is not None:
        return node
    rgba = np.ones((TABLE_SIZE, 4))
    rgba[:, :3] = np.linspace(0.0, 1.0, TABLE_SIZE)[:, None]
    return color_table(scene, GREY, rgba)


def default_label_colors(scene: Any) -> Any:
    """Return Slicer's generic label table when present, else a LesionXAI one (0 transparent, 1..255 distinct)."""
    node = scene.GetNodeByID("vtkMRMLColorTableNodeLabels")
    if node is not None:
        return node
    return color_table(scene, GENERIC_LABELS, label_rgba(range(1, TABLE_SIZE)))


def label_rgba(ids: Sequence[int] | range, size: int | None = None) -> np.ndarray:
    """Return an RGBA table indexed by label value: 0 transparent, each id in ``ids`` its lesion colour."""
    ids = [int(i) for i in ids]
    n = max([size or 0, (max(ids) + 1) if ids else 1])
    rgba = np.zeros((n, 4))
    for i in ids:
        rgba[i, :3] = lesion_color(i)
        rgba[i, 3] = 1.0
    return rgba


def lesion_colors(scene: Any, name: str, labels: dict[int, str]) -> Any:
    """Return a colour table node (``name``) with entry ``id`` = that lesion's colour and name; 0 transparent."""
    rgba = label_rgba(list(labels))
    names = ["background"] + [labels.get(i, "") for i in range(1, len(rgba))]
    return color_table(scene, name, rgba, names)


def shells_rgba(radii_mm: Sequence[float]) -> np.ndarray:
    """Return the shells table: label 1 + i (ball of radius radii_mm[i]) from warm (lesion) to cool (far); 0 clear."""
    n = len(radii_mm)
    rgba = np.zeros((n + 1, 4))
    colours = ramp(((0.0, (0.9, 0.1, 0.1)), (0.5, (0.95, 0.85, 0.2)), (1.0, (0.2, 0.45, 0.9))), max(n, 2))
    rgba[1:, :3] = colours[:n]
    rgba[1:, 3] = 1.0
    return rgba


def shells_colors(scene: Any, radii_mm: Sequence[float]) -> Any:
    """Return the context-shells label table for ``radii_mm`` (names give each label's radius)."""
    names = ["beyond"] + [f"{float(r):g} mm" for r in radii_mm]
    return color_table(scene, SHELLS, shells_rgba(radii_mm), names)


def legend_entries(rgba: np.ndarray, vmin: float, vmax: float, n: int = 9) -> list[tuple[float, tuple[float, float, float]]]:
    """Return ``n`` evenly spaced (value, rgb) samples of a table spread over [vmin, vmax], for colour bars."""
    rgba = np.asarray(rgba)
    out = []
    for t in np.linspace(0.0, 1.0, n):
        idx = int(round(t * (len(rgba) - 1)))
        out.append((float(vmin + t * (vmax - vmin)), tuple(float(c) for c in rgba[idx, :3])))
    return out
