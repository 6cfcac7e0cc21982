"""Building blocks of the self-contained HTML report: escaped text, tables, base64-embedded images, the page.

The page references nothing outside itself (no scripts, fonts, style sheets or images from the
network): it opens offline and can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
from typing import Any, Iterable, Optional, Sequence

from LesionXAILib.report.style import RenderedFigure
from LesionXAILib.vocabulary import format_number, status_colour

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; color: #1f2328; background: #fafafa; }
main { max-width: 1420px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.6em 0 0.5em; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 0.4em 0; }
.subtitle { color: #57606a; margin-bottom: 1em; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { background: white; border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.card .value { font-size: 1.5em; font-weight: 600; }
.card .label { color: #57606a; font-size: 0.85em; }
table { border-collapse: collapse; background: white; font-size: 0.86em; }
th, td { border: 1px solid #d0d7de; padding: 3px 7px; text-align: right; }
th { background: #f0f2f4; }
td.text, th.text { text-align: left; }
.status { font-weight: 700; }
.note { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 12px; margin: 6px 0; }
.lesion-panel { background: white; border: 1px solid #d0d7de; border-radius: 6px; padding: 10px 14px; margin: 18px 0; }
.lesion-panel img, figure img { max-width: 100%; height: auto; display: block; }
figure { margin: 8px 0; }
figcaption { color: #57606a; font-size: 0.85em; }
dl.settings { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; font-size: 0.88em; }
dl.settings dt { color: #57606a; }
dl.settings dd { margin: 0; word-break: break-all; }
.scroll { overflow-x: auto; }
footer { color: #57606a; font-size: 0.8em; margin-top: 32px; }
"""


def esc(value: Any) -> str:
    """Return ``value`` as HTML-escaped text."""
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """Return a number formatted for a table cell (the vocabulary's format, HTML-escaped)."""
    return esc(format_number(value, digits))


def status_badge(status: str) -> str:
    """Return a coloured status label."""
    return f'<span class="status" style="color:{status_colour(status)}">{esc(status)}</span>'


def image(fig: RenderedFigure, alt: str, element_id: Optional[str] = None, css_class: str = "") -> str:
    """Return an <img> embedding ``fig`` as base64 PNG, with its pixel width/height."""
    data = base64.b64encode(fig.png).decode("ascii")
    ident = f' id="{esc(element_id)}"' if element_id else ""
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return (
        f'<img{ident}{cls} alt="{esc(alt)}" width="{fig.width}" height="{fig.height}" '
        f'src="data:image/png;base64,{data}">'
    )


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], element_id: Optional[str] = None,
    row_attrs: Optional[Sequence[str]] = None, text_columns: Sequence[int] = (),
) -> str:
    """Return a <table>; cells are already-escaped HTML; ``text_columns`` are left-aligned."""
    ident = f' id="{esc(element_id)}"' if element_id else ""
    head = "".join(f'<th{" class=text" if i in text_columns else ""}>{h}</th>' for i, h in enumerate(headers))
    body = []
    for n, row in enumerate(rows):
        attrs = f" {row_attrs[n]}" if row_attrs else ""
        cells = "".join(f'<td{" class=text" if i in text_columns else ""}>{c}</td>' for i, c in enumerate(row))
        body.append(f"<tr{attrs}>{cells}</tr>")
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def definition_list(items: Iterable[tuple[str, str]]) -> str:
    """Return a two-column <dl> of (term, already-escaped HTML) pairs."""
    return '<dl class="settings">' + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def cards(items: Iterable[tuple[str, str]]) -> str:
    """Return summary cards of (label, value) pairs."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="value">{esc(v)}</div><div class="label">{esc(k)}</div></div>' for k, v in items
    ) + "</div>"


def notes(messages: Iterable[str]) -> str:
    """Return highlighted notes (missing parts of the run, warnings)."""
    return "".join(f'<div class="note">{esc(m)}</div>' for m in messages)


def page(title: str, body: str) -> str:
    """Return the complete HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
