"""The one matplotlib figure factory: a private ``Figure`` on an Agg canvas, and its PNG bytes.

No pyplot: pyplot keeps global state (current figure, backend choice) that is unsafe inside Slicer's
Qt application and in worker threads, and figures it creates must be closed by hand. A ``Figure``
made here is garbage-collected like any object.
"""

from __future__ import annotations

import io
from typing import Any


def new_figure(width_in: float, height_in: float, dpi: float = 100) -> Any:
    """Return a matplotlib Figure of ``width_in`` x ``height_in`` inches on its own Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig: Any, tight_layout: bool = True, dpi: float | None = None) -> bytes:
    """Return ``fig`` rendered as PNG bytes (after ``tight_layout`` unless told not to)."""
    if tight_layout:
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi if dpi is not None else fig.dpi)
    return buf.getvalue()
