"""Table nodes (instance statistics, one context curve) and the plot chart of the context curve."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from LesionXAILib.vocabulary import LESION_COLUMNS

# instance-table columns: (statistics key, kind, long name, unit); centroid_ras is split into R/A/S
INSTANCE_COLUMNS = tuple((c.key, c.kind, c.header, c.unit) for c in LESION_COLUMNS)
CURVE_COLUMNS = ("radius_mm", "detected", "mean_probability", "max_probability", "dice", "predicted_voxels",
                 "full_context_mean_probability", "threshold")  # fmt: skip
# (y column, legend, colour, dashed)
CURVE_SERIES = (
    ("mean_probability", "Mean lesion probability", (0.85, 0.2, 0.15), False),
    ("dice", "Dice with the original lesion", (0.15, 0.4, 0.8), False),
    ("full_context_mean_probability", "Probability with full context", (0.4, 0.4, 0.4), True),
    ("threshold", "Detection threshold", (0.1, 0.6, 0.2), True),
)


def _array(kind: str, name: str) -> Any:
    import vtk

    arr = {"int": vtk.vtkIntArray, "double": vtk.vtkDoubleArray, "string": vtk.vtkStringArray}[kind]()
    arr.SetName(name)
    return arr


def _cell(value: Any, kind: str) -> Any:
    if kind == "string":
        return "" if value is None else str(value)
    if kind == "int":
        return int(value) if value is not None else 0
    return float("nan") if value is None else float(value)


def _flat(row: dict) -> dict:
    out = dict(row)
    ras = out.pop("centroid_ras", None)
    if ras is not None:
        out["centroid_r"], out["centroid_a"], out["centroid_s"] = (float(v) for v in ras)
    return out


def fill_instance_table(table_node: Any, rows: Sequence[dict]) -> None:
    """Fill ``table_node`` with one row per instance (columns INSTANCE_COLUMNS, NaN for not-yet-computed values)."""
    import vtk

    table = vtk.vtkTable()
    flat = [_flat(r) for r in rows]
    for key, kind, _, _ in INSTANCE_COLUMNS:
        arr = _array(kind, key)
        arr.SetNumberOfValues(len(flat))
        for i, r in enumerate(flat):
            arr.SetValue(i, _cell(r.get(key), kind))
        table.AddColumn(arr)
    was = table_node.StartModify()
    table_node.SetAndObserveTable(table)
    table_node.SetUseColumnTitleAsColumnHeader(True)
    for key, _, long_name, unit in INSTANCE_COLUMNS:
        table_node.SetColumnTitle(key, f"{long_name} ({unit})" if unit else long_name)
        if unit:
            table_node.SetColumnUnitLabel(key, unit)
    table_node.SetLocked(True)  # read-only in the Tables module: it mirrors the analysis
    table_node.EndModify(was)


def update_instance_row(table_node: Any, row: dict) -> bool:
    """Overwrite the row of ``row['id']`` in an instance table node; return False if that id has no row."""
    table = table_node.GetTable()
    ids = table.GetColumnByName("id")
    flat = _flat(row)
    for i in range(table.GetNumberOfRows()):
        if ids.GetValue(i) == int(row["id"]):
            for key, kind, _, _ in INSTANCE_COLUMNS:
                table.GetColumnByName(key).SetValue(i, _cell(flat.get(key), kind))
                table.GetColumnByName(key).Modified()
            table.Modified()
            table_node.Modified()
            return True
    return False


def table_as_rows(table_node: Any) -> list[dict]:
    """Return the contents of a table node as one dict per row (column name -> value)."""
    table = table_node.GetTable()
    cols = [table.GetColumn(c) for c in range(table.GetNumberOfColumns())]
    return [{c.GetName(): c.GetValue(i) for c in cols} for i in range(table.GetNumberOfRows())]


def curve_rows(curve: Any) -> list[dict]:
    """Return one row per probed radius of a ContextCurve (full-context values and threshold repeated for reference lines)."""
    full = float(curve.full_context.mean_probability)
    return [
        {
            "radius_mm": float(r),
            "detected": int(bool(p.detected)),
            "mean_probability": float(p.mean_probability),
            "max_probability": float(p.max_probability),
            "dice": float(p.dice),
            "predicted_voxels": int(p.predicted_voxels),
            "full_context_mean_probability": full,
            "threshold": float(curve.threshold),
        }
        for r, p in zip(curve.radii_mm, curve.points)
    ]


def fill_curve_table(table_node: Any, curve: Any) -> None:
    """Fill ``table_node`` with a ContextCurve (columns CURVE_COLUMNS)."""
    import vtk

    rows = curve_rows(curve)
    table = vtk.vtkTable()
    for key in CURVE_COLUMNS:
        kind = "int" if key in ("detected", "predicted_voxels") else "double"
        arr = _array(kind, key)
        arr.SetNumberOfValues(len(rows))
        for i, r in enumerate(rows):
            arr.SetValue(i, _cell(r[key], kind))
        table.AddColumn(arr)
    table_node.SetAndObserveTable(table)
    table_node.SetLocked(True)


def curve_chart(scene: Any, table_node: Any, title: str, chart: Optional[Any] = None, series: Optional[dict] = None) -> tuple[Any, dict]:
    """Return (plot chart node, {column: series node}) plotting the curve table (reusing ``chart``/``series``)."""
    series = dict(series or {})
    if chart is None:
        chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "LesionXAI context curve")
    for column, legend, colour, dashed in CURVE_SERIES:
        node = series.get(column)
        if node is None:
            node = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", legend)
            node.SetPlotType(node.PlotTypeScatter)
            node.SetXColumnName("radius_mm")
            node.SetYColumnName(column)
            node.SetColor(*colour)
            node.SetLineStyle(node.LineStyleDash if dashed else node.LineStyleSolid)
            node.SetMarkerStyle(node.MarkerStyleNone if dashed else node.MarkerStyleCircle)
            series[column] = node
        node.SetAndObserveTableNodeID(table_node.GetID())
        if not chart.HasPlotSeriesNodeID(node.GetID()):
            chart.AddAndObservePlotSeriesNodeID(node.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("Context kept around the lesion (mm)")
    chart.SetYAxisTitle("Probability / Dice")
    chart.SetYAxisRangeAuto(False)
    chart.SetYAxisRange(0.0, 1.0)
    return chart, series


def show_chart_in_plot_views(scene: Any, chart: Any) -> int:
    """Point every plot view of the scene at ``chart``; return how many views there are."""
    from LesionXAILib.mrml.colors import nodes_by_class

    views = nodes_by_class(scene, "vtkMRMLPlotViewNode")
    for view in views:
        view.SetPlotChartNodeID(chart.GetID())
    return len(views)


def as_float_list(values: Any) -> list[float]:
    """Return an array-like as a plain list of floats."""
    return [float(v) for v in np.asarray(values, dtype=float).ravel()]
