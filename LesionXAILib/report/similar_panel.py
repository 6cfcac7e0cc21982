"""The report's "Similar lesions" section, drawn from ``similar_lesions.json`` / ``.png`` in the run folder.

Written by ``lesionxai similar --out RUN_DIR``. The section shows the figure (each lesion beside its
nearest library lesions) and one table row per lesion: its nearest neighbours with status and cosine
distance, and the FP share among them. A file computed on another segmentation than the run's (its
``segmentation_id`` differs from instances.json's) is not shown: a note says so instead.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.report import html as H
from LesionXAILib.report.style import RenderedFigure

JSON_NAME = "similar_lesions.json"
FIGURE_NAME = "similar_lesions.png"


def _png_figure(path: Path) -> Optional[RenderedFigure]:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return None
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk, always first
    return RenderedFigure(data, int(width), int(height))


def _neighbours_cell(lesion: dict[str, Any], shown: int = 5) -> str:
    parts = []
    for n in lesion.get("neighbours", [])[:shown]:
        parts.append(f"{H.esc(n.get('subject'))}#{H.esc(n.get('id'))} {H.status_badge(str(n.get('status')))} "
                     f"d={H.fmt(n.get('distance'))}")  # fmt: skip
    return "; ".join(parts)


def similar_section(run_dir: str | Path, segmentation_id: Optional[str] = None) -> str:
    """Return the HTML of the "Similar lesions" section, or "" when the run folder holds no similar_lesions.json."""
    folder = Path(run_dir)
    path = folder / JSON_NAME
    if not path.is_file():
        return ""
    head = '<section id="similar-lesions"><h2>Similar lesions</h2>'
    try:
        doc = json.loads(path.read_text())
    except ValueError:
        return head + H.notes([f"{JSON_NAME} is not valid JSON; section skipped"]) + "</section>"
    recorded = doc.get("segmentation_id")
    if segmentation_id is not None and recorded is not None and recorded != segmentation_id:
        return head + H.notes([f"{JSON_NAME} was computed on another segmentation of this subject; re-run "
                               "`lesionxai similar` into this folder to show it"]) + "</section>"  # fmt: skip
    lesions = doc.get("lesions") or []
    body = [head, f"<p>Each lesion beside the {H.esc(doc.get('k'))} most similar of {H.esc(doc.get('library_lesions'))} "
                  f"lesions in the library <code>{H.esc(doc.get('library'))}</code>, by cosine distance d between embeddings "
                  f"pooled from the segmenter's own layers ({H.esc(', '.join(doc.get('layers') or []))}) over the lesion and "
                  "a 1–3 mm ring. FP share: the share of FP among the neighbours that are TP or FP. Similar to the network "
                  "is not similar to a radiologist.</p>"]  # fmt: skip
    fig = _png_figure(folder / FIGURE_NAME)
    if fig is not None:
        body.append(H.image(fig, "each lesion beside its nearest library lesions", "similar-lesions-plot"))
    rows = [[H.fmt(int(les.get("id"))), H.status_badge(str(les.get("status"))), H.fmt(les.get("volume_mm3")),
             H.fmt(les.get("neighbour_fp_share")), _neighbours_cell(les)] for les in lesions]  # fmt: skip
    body.append(H.table(["id", "status", "volume (mm³)", "neighbours’ FP share", "nearest library lesions"], rows,
                        "similar-table", text_columns=(4,)))  # fmt: skip
    body.append("</section>")
    return "\n".join(body)
