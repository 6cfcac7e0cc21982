"""Texts of the Slicer module's panel: lesion table cells, one lesion's statistics, an overlay's colour scale."""

from __future__ import annotations

from typing import Any, Sequence

from LesionXAILib.vocabulary import PANEL_COLUMNS, format_cell


def format_value(key: str, value: Any) -> str:
    """Return a table cell as the viewer words it ('' for not yet computed: the Qt table shows blanks)."""
    return format_cell(key, value, missing="")


def display_table(rows: Sequence[dict]) -> tuple[list[str], list[list[str]]]:
    """Return (column titles, rows of cell texts) for the module's lesion table widget."""
    titles = [title for _, title in PANEL_COLUMNS]
    return titles, [[format_value(key, row.get(key)) for key, _ in PANEL_COLUMNS] for row in rows]


def statistics_text(stats: dict) -> str:
    """Return a few lines describing one lesion's statistics (for the module panel)."""
    lines = [f"<b>{stats.get('name') or 'Lesion ' + str(stats['id'])}</b>"]
    if stats.get("mean_probability") is not None:
        lines.append(f"mean probability {stats['mean_probability']:.3f}")
    if stats.get("flair_share") is not None:
        lines.append(f"FLAIR share of {stats.get('flair_share_method') or 'attribution'}: {stats['flair_share']:.0%}")
    if stats.get("context_description"):
        lines.append("context probe: " + stats["context_description"])
    return "<br>".join(lines)


def legend_text(legend: dict) -> str:
    """Return a one-line description of an overlay's colour scale."""
    if legend.get("units") == "mm":
        return f"{legend['title']}: rings every mm, red (lesion) to blue ({legend['max']:g} mm)"
    low = legend.get("transparent_below")
    below = f"; |value| < {low:.3g} transparent" if low else ""
    return f"{legend['title']}: {legend['min']:.3g} … {legend['max']:.3g} {legend['units']}{below}"
