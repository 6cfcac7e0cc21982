"""Shared look of the report's figures: colour maps, outline colours, and figures rendered to PNG bytes.

Figures come from :func:`LesionXAILib.figures.new_figure` (no pyplot state, safe inside Slicer and in
threads); titles, status colours and number formats come from :mod:`LesionXAILib.vocabulary`.
:func:`render` saves without ``bbox_inches='tight'`` so that the PNG is exactly figure size x dpi pixels and the drawn axes' pixel boxes are known (the tests read pixels back).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

# lesion outline on FLAIR and CAM views: pure cyan occurs in neither the grey, RdBu nor magma colour maps
OUTLINE_COLOUR = "#00ffff"
# lesion outline on the diverging attribution maps (white at 0)
MAP_OUTLINE_COLOUR = "#000000"
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "magma"
OUTSIDE_IMAGE_COLOUR = "#bdbdbd"


@dataclass
class RenderedFigure:
    """A figure saved as PNG bytes, its pixel size, and named axes' drawn boxes (x0, y0, x1, y1; y down)."""

    png: bytes
    width: int
    height: int
    axes_px: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)


def render(fig, dpi: float, axes: dict | None = None, fmt: str = "png") -> RenderedFigure:
    """Return ``fig`` rendered at ``dpi`` (PNG by default) with the drawn pixel boxes of ``axes`` (name -> Axes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=dpi)
    width = int(round(fig.get_figwidth() * dpi))
    height = int(round(fig.get_figheight() * dpi))
    boxes = {}
    for name, ax in (axes or {}).items():
        pos = ax.get_position()  # after the draw: the box equal-aspect images actually occupy
        boxes[name] = (pos.x0 * width, (1 - pos.y1) * height, pos.x1 * width, (1 - pos.y0) * height)
    return RenderedFigure(buf.getvalue(), width, height, boxes)


def downscale(fig: RenderedFigure, factor: float) -> RenderedFigure:
    """Return ``fig`` resampled by ``factor`` (< 1) as a new PNG; cheaper than drawing the figure twice."""
    from PIL import Image

    if factor >= 1.0:
        return fig
    width, height = max(1, int(round(fig.width * factor))), max(1, int(round(fig.height * factor)))
    with Image.open(io.BytesIO(fig.png)) as im:
        small = im.convert("RGBA").resize((width, height), Image.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="png", optimize=False)
    sx, sy = width / fig.width, height / fig.height
    boxes = {k: (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for k, b in fig.axes_px.items()}
    return RenderedFigure(buf.getvalue(), width, height, boxes)
