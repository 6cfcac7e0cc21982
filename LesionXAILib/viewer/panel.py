"""Side-panel content from the bridge's data: statistics rows, lesion-table items, overlay choices, colour legend.

Pure formatting (no MRML, no trame): every number shown comes from ``LesionSession.lesion_statistics``,
``table_rows`` and ``legend``; this module only turns them into strings and CSS.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional, Sequence

from LesionXAILib.vocabulary import (
    NONE_TEXT,
    PANEL_COLUMNS,
    STATUS_COLOURS,  # noqa: F401 (re-exported: viewer/app.py colours the status chip with it)
    finite_or_none,
    format_cell,
    map_title,
)

# the lesion table's columns: (key, title); values stay numeric so the table sorts them as numbers
TABLE_COLUMNS = PANEL_COLUMNS
RAW_COLUMNS = ("id", "status")  # shown as they are; every other column has a formatted ``<key>_text``
OVERLAY_SEPARATOR = " · "  # 'SmoothGrad · FLAIR' in the overlay menu



def _number(value: Any) -> Optional[float]:
    """Return ``value`` as a float (infinity kept), or None when it is missing or not a number."""
    if isinstance(value, bool):
        return None
    return finite_or_none(value, keep_inf=True)


def format_volume(volume_mm3: Any, voxels: Any = None) -> str:
    """Return e.g. '42.0 mm³ (42 voxels)'."""
    v = _number(volume_mm3)
    if v is None:
        return NONE_TEXT
    text = f"{format_cell('volume_mm3', v)} mm³"
    n = _number(voxels)
    return f"{text} ({int(n)} voxels)" if n is not None else text


def format_probability(value: Any) -> str:
    """Return a probability with three decimals, or a dash."""
    v = _number(value)
    return NONE_TEXT if v is None or not math.isfinite(v) else format_cell("mean_probability", v)


def format_share(value: Any) -> str:
    """Return a 0..1 share as a percentage, or a dash."""
    v = _number(value)
    return NONE_TEXT if v is None or not math.isfinite(v) else format_cell("flair_share", v)


def format_context(value: Any, status: Optional[str] = None, max_radius_mm: Optional[float] = None) -> str:
    """Return the context needed as text ('7 mm', '> 15 mm', 'not detected', or a dash before it is computed)."""
    if status == "not_detected":
        return "not detected even with full context"
    v = _number(value)
    if v is None:
        return NONE_TEXT
    if math.isinf(v):
        return f"> {max_radius_mm:g} mm" if max_radius_mm else "more than the largest radius"
    if status == "detected_without_context" or v == 0.0:
        return "0 mm (detected without context)"
    return f"{v:g} mm"


def statistics_items(stats: Mapping[str, Any], max_radius_mm: Optional[float] = None) -> list[dict[str, str]]:
    """Return the side panel's (label, value) rows for one lesion's statistics dict (as ``lesion_statistics``)."""
    centroid = stats.get("centroid_ras")
    centroid_text = NONE_TEXT if not centroid else "(" + ", ".join(f"{float(c):.1f}" for c in centroid) + ")"
    rows = [
        ("Status", str(stats.get("status") or NONE_TEXT)),
        ("Volume", format_volume(stats.get("volume_mm3"), stats.get("voxels"))),
        ("Mean probability", format_probability(stats.get("mean_probability"))),
        ("FLAIR share", format_share(stats.get("flair_share"))),
        ("Context needed", format_context(stats.get("context_needed_mm"), stats.get("context_status"), max_radius_mm)),
        ("Centroid (RAS mm)", centroid_text),
    ]
    return [{"label": label, "value": value} for label, value in rows]


def table_headers() -> list[dict[str, Any]]:
    """Return VDataTable headers (every column sortable)."""
    return [{"title": title, "key": key, "sortable": True} for key, title in TABLE_COLUMNS]


def table_items(rows: Iterable[Mapping[str, Any]], max_radius_mm: Optional[float] = None) -> list[dict[str, Any]]:
    """Return lesion-table items: raw sortable values per column plus their display text under ``<key>_text``."""
    items = []
    for row in rows:
        context = _number(row.get("context_needed_mm"))
        item: dict[str, Any] = {
            "id": int(row["id"]),
            "status": str(row.get("status") or ""),
            "volume_mm3": _number(row.get("volume_mm3")),
            "mean_probability": _number(row.get("mean_probability")),
            "flair_share": _number(row.get("flair_share")),
            # JSON has no infinity: 'more than the largest radius' sorts after every finite radius
            "context_needed_mm": (1e9 if context is not None and math.isinf(context) else context),
        }
        item["volume_mm3_text"] = format_cell("volume_mm3", item["volume_mm3"])
        item["mean_probability_text"] = format_probability(item["mean_probability"])
        item["flair_share_text"] = format_share(item["flair_share"])
        item["context_needed_mm_text"] = format_cell("context_needed_mm", context, max_radius_mm)
        items.append(item)
    return items


def overlay_items(available: Sequence[str]) -> list[dict[str, str]]:
    """Return VSelect items for the overlays the session offers."""
    return [{"title": map_title(name, OVERLAY_SEPARATOR), "value": name} for name in available]


def _rgb(colour: Sequence[float]) -> tuple[int, int, int]:
    """Return 0..255 integers from an (r, g, b) in 0..1 or 0..255."""
    values = [float(c) for c in colour[:3]]
    scale = 255.0 if max(values) <= 1.0 else 1.0
    return tuple(int(round(min(max(v * scale, 0.0), 255.0))) for v in values)  # type: ignore[return-value]


def legend_view(legend: Mapping[str, Any], discrete: bool = False) -> dict[str, Any]:
    """Return the colour bar for a ``LesionSession.legend`` dict: a CSS gradient plus min/max/units text.

    ``discrete`` draws hard colour stops (label maps such as the context shells) instead of a ramp.
    """
    colours = sorted(((float(v), _rgb(c)) for v, c in legend.get("colors", [])), key=lambda vc: vc[0])
    lo = _number(legend.get("min"))
    hi = _number(legend.get("max"))
    if colours:
        lo = colours[0][0] if lo is None else lo
        hi = colours[-1][0] if hi is None else hi
    span = (hi - lo) if lo is not None and hi is not None and hi > lo else 1.0
    stops = []
    for n, (value, (r, g, b)) in enumerate(colours):
        pos = 100.0 * ((value - (lo or 0.0)) / span)
        pos = min(max(pos, 0.0), 100.0)
        if discrete:
            end = 100.0 if n + 1 == len(colours) else min(max(100.0 * ((colours[n + 1][0] - (lo or 0.0)) / span), 0.0), 100.0)
            stops.append(f"rgb({r},{g},{b}) {pos:.1f}% {end:.1f}%")
        else:
            stops.append(f"rgb({r},{g},{b}) {pos:.1f}%")
    gradient = f"linear-gradient(to right, {', '.join(stops)})" if stops else "none"
    return {
        "gradient": gradient,
        "min": NONE_TEXT if lo is None else f"{lo:.3g}",
        "max": NONE_TEXT if hi is None else f"{hi:.3g}",
        "units": str(legend.get("units") or ""),
        "colormap": str(legend.get("colormap") or ""),
    }
