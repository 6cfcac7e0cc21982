"""Writing a study: lesions.csv, subjects.csv, summary.json/.md, figures and a self-contained study.html."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from LesionXAILib.atomic_write import write_csv, write_json, write_text
from LesionXAILib.study.figures import write_figures
from LesionXAILib.study.run import StudyResult
from LesionXAILib.study.summary import markdown_table, summarise


def _columns(rows: list[dict]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    return columns


def _html(result: StudyResult, summary: list[dict], figures: dict[str, Path], table_md: str) -> str:
    rows = [line.strip("|").split("|") for line in table_md.strip().splitlines() if not line.startswith("|---")]
    head = "".join(f"<th>{html.escape(c.strip())}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in rows[1:])
    images = "".join(
        f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(name)}</figcaption></figure>"
        for name, path in figures.items()
    )
    settings = html.escape(str(result.settings.to_dict()))
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>LesionXAI study</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #999;"
        "padding:3px 6px;font-size:12px}img{max-width:640px}</style></head><body>"
        "<h1>LesionXAI study: the anchor's analyses on held-out phantoms</h1>"
        f"<p>Models: {html.escape(', '.join(result.models))}. Settings: <code>{settings}</code>. "
        f"{len(result.lesions)} lesions analysed in {result.seconds / 60:.1f} min.</p>"
        "<p>Anchor study (Spagnolo et al., arXiv 2406.09335, real MRI): about 7 mm of context needed (U-Net, nnU-Net), "
        "14 mm (Swin UNETR); FLAIR saliency positive inside lesions and negative in the ring; peak saliency differs "
        "between TP, FP and FN.</p>"
        f"<table><tr>{head}</tr>{body}</table>{images}</body></html>"
    )


def write_study(result: StudyResult, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every study output into ``out_dir``; return {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    table = markdown_table(summary)
    paths = {
        "lesions": write_csv(out / "lesions.csv", _columns(result.lesions), result.lesions),
        "subjects": write_csv(out / "subjects.csv", _columns(result.subjects), result.subjects),
        "summary": write_json(out / "summary.json", {
            "settings": result.settings.to_dict(), "models": result.models, "seconds": round(result.seconds, 1),
            "summary": summary}, allow_nan=True),  # fmt: skip
        "table": write_text(out / "summary.md", table),
    }
    if result.synthetic:
        paths["synthetic"] = write_csv(out / "synthetic.csv", _columns(result.synthetic), result.synthetic)
    figures = write_figures(result, out)
    paths.update({name: p for name, p in figures.items()})
    paths["html"] = write_text(out / "study.html", _html(result, summary, figures, table))
    return paths
