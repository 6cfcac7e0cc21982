"""Shared look of the report's figures: colours, labels, and Agg figures rendered to PNG bytes.

Figures are private ``matplotlib.figure.Figure`` objects on an Agg canvas (no pyplot state, safe inside
Slicer and in threads). :func:`render` saves without ``bbox_inches='tight'`` so that the PNG is exactly
figure size x dpi pixels and the drawn axes' pixel boxes are known (the tests read pixels back).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from LesionXAILib.cam_methods import CAM_LABELS

STATUS_COLOURS = {"TP": "#1b9e77", "FP": "#d95f02", "FN": "#7570b3", "predicted": "#555555"}
STATUS_NAMES = {"TP": "true positive", "FP": "false positive", "FN": "false negative (missed)", "predicted": "predicted"}
# lesion outline on FLAIR and CAM views: pure cyan occurs in neither the grey, RdBu nor magma colour maps
OUTLINE_COLOUR = "#00ffff"
# lesion outline on the diverging attribution maps (white at 0)
MAP_OUTLINE_COLOUR = "#000000"
DIVERGING_CMAP = "RdBu_r"
SEQUENTIAL_CMAP = "magma"
OUTSIDE_IMAGE_COLOUR = "#bdbdbd"

METHOD_LABELS = {
    "smoothgrad": "SmoothGrad",
    "gradient": "Gradient",
    "integrated_gradients": "Integrated gradients",
    "smoothgrad_squared": "SmoothGrad²",
    "smoothgrad_abs": "|SmoothGrad|",
    **CAM_LABELS,
}
SEQUENCE_LABELS = {"flair": "FLAIR", "mprage": "MPRAGE", "t1": "T1"}


def method_label(method: str) -> str:
    """Return the display name of an explanation method."""
    return METHOD_LABELS.get(method, method)


def sequence_label(sequence: str) -> str:
    """Return the display name of an input sequence."""
    return SEQUENCE_LABELS.get(sequence, sequence.upper())


def new_figure(width_in: float, height_in: float):
    """Return a matplotlib Figure on an Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


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
