"""The scene nodes a session writes and the per-lesion ones among them: overlay volumes, context shells,
curve table + chart, colour legends (written by :class:`LesionXAILib.mrml.writer.SceneWriter`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from LesionXAILib.mrml import colors, hierarchy, tables
from LesionXAILib.mrml.volumes import ensure_display_node, update_volume_node, volume_node_from_array
from LesionXAILib.session.overlays import SHELLS_OVERLAY, is_signed_overlay, overlay_title, overlay_window
from LesionXAILib.vocabulary import method_unit, parse_map_key

LESION_ATTRIBUTE = "LesionXAI.lesion_id"
OVERLAY_ATTRIBUTE = "LesionXAI.overlay"


@dataclass
class Outputs:
    """The scene nodes a session owns (all under ``folder``)."""

    folder: int = 0
    labels: Any = None
    segmentation: Any = None
    probability: Any = None
    table: Any = None
    overlays: dict = field(default_factory=dict)
    shells: Any = None
    curve_table: Any = None
    chart: Any = None
    series: dict = field(default_factory=dict)
    legends: dict = field(default_factory=dict)
    lesion_colors: Any = None
    shell_radii: list = field(default_factory=list)
    counterfactual_flair: Any = None
    log_jacobian: Any = None
    similar_table: Any = None

    def nodes(self) -> list:
        """Return every node held (not colour tables, which are shared)."""
        nodes = [self.labels, self.segmentation, self.probability, self.table, self.shells, self.curve_table, self.chart,
                 self.counterfactual_flair, self.log_jacobian, self.similar_table]  # fmt: skip
        nodes += list(self.overlays.values()) + list(self.series.values())
        return [n for n in nodes if n is not None]


def write_overlay(scene: Any, out: Outputs, prefix: str, name: str, array: np.ndarray, lesion_id: int, geometry: Any) -> Any:
    """Write one lesion's map into the overlay's volume node (created on first use) with its fixed window; return it."""
    node = out.overlays.get(name)
    title = f"{prefix} {overlay_title(name)}"
    if node is None or node.GetScene() is None:
        node = volume_node_from_array(scene, array, geometry, title)
        out.overlays[name] = node
        hierarchy.place_in_folder(scene, node, out.folder)
    else:
        update_volume_node(node, array, geometry)
    node.SetName(f"{title} · lesion {lesion_id}")
    node.SetAttribute(LESION_ATTRIBUTE, str(lesion_id))
    node.SetAttribute(OVERLAY_ATTRIBUTE, name)
    signed = is_signed_overlay(name)
    vmin, vmax = overlay_window(array, signed)
    display = ensure_display_node(node)
    was = display.StartModify()
    display.SetAndObserveColorNodeID((colors.diverging_colors(scene) if signed else colors.sequential_colors(scene)).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(vmin, vmax)
    display.EndModify(was)
    return node


def write_shells(scene: Any, out: Outputs, prefix: str, curve: Any, lesion_id: int, geometry: Any) -> Any:
    """Write one lesion's context shells into the shells labelmap node (created on first use); return it."""
    shells = curve.shells(geometry)
    title = f"{prefix} context shells"
    if out.shells is None or out.shells.GetScene() is None:
        out.shells = volume_node_from_array(scene, shells, geometry, title, labelmap=True)
        hierarchy.place_in_folder(scene, out.shells, out.folder)
    else:
        update_volume_node(out.shells, shells, geometry)
    out.shells.SetName(f"{title} · lesion {lesion_id}")
    out.shells.SetAttribute(LESION_ATTRIBUTE, str(lesion_id))
    out.shells.SetAttribute(OVERLAY_ATTRIBUTE, SHELLS_OVERLAY)
    out.shell_radii = [float(r) for r in curve.radii_mm]
    ensure_display_node(out.shells).SetAndObserveColorNodeID(colors.shells_colors(scene, curve.radii_mm).GetID())
    return out.shells


def write_curve(scene: Any, out: Outputs, prefix: str, curve: Any, lesion_id: int) -> None:
    """Write one lesion's context curve into the curve table and its chart, and show the chart in plot views."""
    if out.curve_table is None or out.curve_table.GetScene() is None:
        out.curve_table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{prefix} context curve")
        hierarchy.place_in_folder(scene, out.curve_table, out.folder)
    tables.fill_curve_table(out.curve_table, curve)
    out.curve_table.SetName(f"{prefix} context curve · lesion {lesion_id}")
    title = f"Lesion {lesion_id}: {curve.description}"
    out.chart, out.series = tables.curve_chart(scene, out.curve_table, title, out.chart, out.series)
    for node in [out.chart, *out.series.values()]:
        hierarchy.place_in_folder(scene, node, out.folder)
    tables.show_chart_in_plot_views(scene, out.chart)


def show_legend(scene: Any, out: Outputs, overlay: str, node: Any) -> None:
    """Show a colour legend for the foreground overlay (hide the others), where the scene supports legends."""
    import slicer

    legend_class = getattr(slicer, "vtkMRMLColorLegendDisplayNode", None)
    if legend_class is None:
        return
    if not scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):
        scene.RegisterNodeClass(legend_class())
    legend = out.legends.get(overlay)
    if legend is None or legend.GetScene() is None:
        legend = scene.AddNewNodeByClass("vtkMRMLColorLegendDisplayNode", f"{overlay_title(overlay)} legend")
        legend.SetAndObservePrimaryDisplayNode(node.GetDisplayNode())
        node.AddAndObserveDisplayNodeID(legend.GetID())
        out.legends[overlay] = legend
    legend.SetTitleText(overlay_title(overlay))
    for name, other in out.legends.items():
        other.SetVisibility(name == overlay)


def hide_legends(out: Outputs) -> None:
    """Hide every colour legend (no overlay on show)."""
    for legend in out.legends.values():
        legend.SetVisibility(False)


def legend_description(overlay: str, node: Any, shell_radii: list) -> dict:
    """Return the colour bar of an overlay node: colormap name, min/max, units, (value, rgb) samples, title."""
    if overlay == SHELLS_OVERLAY:
        radii = [float(r) for r in shell_radii]
        rgba = colors.shells_rgba(radii)
        return {
            "colormap": colors.SHELLS, "min": 0.0, "max": max(radii) if radii else 0.0, "units": "mm",
            "colors": [(r, tuple(float(c) for c in rgba[i + 1, :3])) for i, r in enumerate(radii)],
            "title": "Context kept around the lesion", "transparent_below": None,
        }  # fmt: skip
    display = node.GetDisplayNode()
    vmin, vmax = display.GetWindowLevelMin(), display.GetWindowLevelMax()
    signed = is_signed_overlay(overlay)
    rgba = colors.diverging_rgba() if signed else colors.sequential_rgba()
    half = max(abs(vmin), abs(vmax))
    return {
        "colormap": colors.DIVERGING if signed else colors.SEQUENTIAL,
        "min": float(vmin), "max": float(vmax), "units": method_unit(parse_map_key(overlay).method),
        "colors": colors.legend_entries(rgba, vmin, vmax),
        "title": overlay_title(overlay),
        "transparent_below": float(colors.TRANSPARENT_FRACTION * half),
    }  # fmt: skip
