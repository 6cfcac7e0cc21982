"""Figures of the cohort report, rendered to PNG bytes for embedding (figures from :mod:`LesionXAILib.figures`, no pyplot)."""

from __future__ import annotations

import base64
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.figures import new_figure, png_bytes
from LesionXAILib.vocabulary import STATUS_COLOURS

GROUP_COLOURS = STATUS_COLOURS  # the groups are the lesion statuses
OTHER_GROUP_COLOUR = "#495057"


def _figure(width: float = 5.2, height: float = 3.2):
    fig = new_figure(width, height)
    return fig, fig.add_subplot(1, 1, 1)


def png_data_uri(png: bytes) -> str:
    """Return a ``data:image/png;base64,...`` URI for embedding ``png`` in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def group_distribution_png(samples: dict[str, np.ndarray], title: str, ylabel: str, seed: int = 0) -> bytes:
    """Return a PNG of violin + box plots (and the points) of each group's values."""
    fig, ax = _figure()
    groups = list(samples)
    rng = np.random.default_rng(seed)
    for x, g in enumerate(groups, start=1):
        v = np.asarray(samples[g], dtype=np.float64)
        colour = GROUP_COLOURS.get(g, OTHER_GROUP_COLOUR)
        if v.size >= 2 and np.ptp(v) > 0:
            parts = ax.violinplot([v], positions=[x], widths=0.8, showextrema=False)
            for body in parts["bodies"]:
                body.set_facecolor(colour)
                body.set_alpha(0.25)
        if v.size:
            ax.boxplot([v], positions=[x], widths=0.25, showfliers=False, medianprops={"color": colour})
            ax.scatter(x + rng.uniform(-0.12, 0.12, v.size), v, s=9, color=colour, alpha=0.7, linewidths=0)
    ax.set_xticks(range(1, len(groups) + 1))
    ax.set_xticklabels([f"{g}\n(n={len(samples[g])})" for g in groups])
    ax.axhline(0.0, color="#adb5bd", linewidth=0.8, zorder=0)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return png_bytes(fig)


def curves_png(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], title: str, ylabel: str) -> bytes:
    """Return a PNG of mean curves with a +-1 SD band: {label: (x, mean, sd)}."""
    fig, ax = _figure()
    for label, (x, mean, sd) in curves.items():
        line = ax.plot(x, mean, label=label, linewidth=1.5)[0]
        ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.12, linewidth=0)
    ax.set_xlabel("fraction of features (normalised)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return png_bytes(fig)


def bar_png(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str, colour: Optional[str] = None) -> bytes:
    """Return a PNG bar chart."""
    fig, ax = _figure()
    ax.bar(range(len(labels)), values, color=colour or "#495057")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return png_bytes(fig)
