"""The context curve as a small inline SVG: mean lesion probability against the kept context radius.

Drawn as text (no plotting library, no image encoding) so the side panel updates in a few milliseconds.
Filled dots are radii at which the lesion is detected, open dots radii at which it is not; the dashed
line is the detection threshold and the vertical line the context needed.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 340, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 36
DETECTED = "#2e9d57"
MISSED = "#d64545"
LINE = "#4f7fd6"
AXIS = "#9aa0a6"


def _x(r: float, r_max: float) -> float:
    return LEFT + (WIDTH - LEFT - RIGHT) * (r / r_max if r_max > 0 else 0.0)


def _y(p: float) -> float:
    return TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - min(max(p, 0.0), 1.0))


def context_curve_svg(
    radii_mm: Sequence[float],
    mean_probability: Sequence[float],
    detected: Sequence[bool],
    threshold: Optional[float] = None,
    context_needed_mm: Optional[float] = None,
    title: str = "",
) -> str:
    """Return an SVG document plotting mean probability (0..1) against radius (mm) with detections marked."""
    radii = [float(r) for r in radii_mm]
    probs = [float(p) if p is not None and math.isfinite(float(p)) else 0.0 for p in mean_probability]
    flags = [bool(d) for d in detected]
    if not (len(radii) == len(probs) == len(flags)):
        raise ValueError("context_curve_svg: radii, probabilities and detections must have the same length")
    r_max = max(radii) if radii else 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'font-family="sans-serif" font-size="10" role="img">',
    ]
    if title:
        parts.append(f"<title>{escape(title)}</title>")
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, _y(0.0), _y(1.0)
    parts.append(f'<rect x="{x0}" y="{y1:.1f}" width="{x1 - x0}" height="{y0 - y1:.1f}" fill="none" stroke="{AXIS}"/>')
    for p in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{x0 - 4}" y="{_y(p) + 3:.1f}" text-anchor="end" fill="{AXIS}">{p:g}</text>')
    step = _tick_step(r_max)
    r = 0.0
    while r <= r_max + 1e-9:
        parts.append(f'<text x="{_x(r, r_max):.1f}" y="{y0 + 13:.1f}" text-anchor="middle" fill="{AXIS}">{r:g}</text>')
        r += step
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" fill="{AXIS}">context radius (mm)</text>')
    parts.append(
        f'<text x="10" y="{(y0 + y1) / 2:.1f}" text-anchor="middle" fill="{AXIS}" '
        f'transform="rotate(-90 10 {(y0 + y1) / 2:.1f})">mean probability</text>'
    )
    if threshold is not None and math.isfinite(threshold):
        parts.append(
            f'<line class="threshold" x1="{x0}" x2="{x1}" y1="{_y(threshold):.1f}" y2="{_y(threshold):.1f}" '
            f'stroke="{AXIS}" stroke-dasharray="4 3"/>'
        )
    if context_needed_mm is not None and math.isfinite(context_needed_mm) and radii:
        xc = _x(min(context_needed_mm, r_max), r_max)
        parts.append(f'<line class="context-needed" x1="{xc:.1f}" x2="{xc:.1f}" y1="{y1:.1f}" y2="{y0:.1f}" stroke="{DETECTED}"/>')
    if radii:
        points = " ".join(f"{_x(r, r_max):.1f},{_y(p):.1f}" for r, p in zip(radii, probs))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{LINE}" stroke-width="1.5"/>')
        for r, p, d in zip(radii, probs, flags):
            fill = DETECTED if d else "white"
            stroke = DETECTED if d else MISSED
            parts.append(
                f'<circle class="{"detected" if d else "missed"}" cx="{_x(r, r_max):.1f}" cy="{_y(p):.1f}" r="3" '
                f'fill="{fill}" stroke="{stroke}"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _tick_step(r_max: float) -> float:
    """Return a round tick spacing giving at most ~8 ticks up to ``r_max``."""
    for step in (1.0, 2.0, 5.0, 10.0, 20.0, 50.0):
        if r_max / step <= 8:
            return step
    return max(r_max / 8.0, 1.0)
