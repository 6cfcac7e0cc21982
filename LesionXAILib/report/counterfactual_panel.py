"""The report's counterfactual panel: one row per lesion of ``counterfactuals.json``, when the run has one.

It says how far each lesion had to change before the model dropped (or found) it: probability before and
after, the lesion's volume change, the largest displacement, the Jacobian range of the warp, the share of
the change within the near distance, and whether the re-segmentation confirmed the flip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.report import html as H

SUMMARY = "counterfactuals.json"
HEADERS = ["lesion", "status", "direction", "flipped", "probability before → after", "volume change", "largest displacement",
           "Jacobian min – max", "change near lesion", "steps", "seconds"]  # fmt: skip


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:+.1f} %"


def counterfactual_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Return the table cells (escaped HTML) of the panel for the lesion records of counterfactuals.json."""
    cells = []
    for r in rows:
        prob = r.get("probability") or {}
        jac = r.get("jacobian") or {}
        volume = r.get("lesion_volume") or {}
        near = r.get("change_within_near_share")
        cells.append([
            H.esc(r.get("instance_id")), H.status_badge(str(r.get("status", ""))), H.esc(r.get("mode")),
            "yes" if r.get("passed") else ("flip not confirmed" if r.get("crop_flipped") else "no"),
            f"{H.fmt(prob.get('mean_before'))} → {H.fmt(prob.get('mean_after'))}",
            H.esc(_pct(volume.get("change_percent"))),
            f"{H.fmt(r.get('largest_displacement_mm'), 2)} mm",
            f"{H.fmt(jac.get('min'))} – {H.fmt(jac.get('max'))}",
            "–" if near is None else f"{100 * float(near):.0f} % within {float(r.get('near_mm') or 0):g} mm",
            H.esc(r.get("iterations")), H.fmt(r.get("seconds"), 2),
        ])  # fmt: skip
    return cells


def counterfactual_section(run_dir: Path) -> str:
    """Return the HTML section of the run's counterfactuals ('' when the run has none or the file is unreadable)."""
    path = Path(run_dir) / SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = list(data.get("lesions") or [])
    except (OSError, ValueError, AttributeError):
        return ""
    if not rows:
        return ""
    return "\n".join([
        '<section id="counterfactuals"><h2>Counterfactuals</h2>',
        "<p>For each lesion, the smallest smooth, invertible warp and intensity change found that makes the model drop "
        "it (TP/FP) or find it (FN), stopped at the first change that flips its detection and re-segmented to confirm. "
        "Jacobian: the tissue's local volume change (below 1 = shrinkage); it stays above 0 for a warp that does not fold. "
        "Maps per lesion in <code>instance_&lt;id&gt;/</code> (counterfactual FLAIR/MPRAGE, displacement, log-Jacobian, "
        "intensity change).</p>",
        H.table(HEADERS, counterfactual_rows(rows), "counterfactual-table", text_columns=(1, 2, 3)),
        "</section>",
    ])  # fmt: skip
