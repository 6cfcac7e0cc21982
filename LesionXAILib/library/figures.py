"""Figures of lesion crops: a query lesion beside its nearest library lesions, and cluster prototypes.

Matplotlib ``Figure`` with the Agg canvas (never pyplot: no global state, safe in worker threads).
Each crop is the axial plane of the stored display crop with the lesion's outline.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence


from LesionXAILib.library.table import LesionTable

STATUS_COLOURS = {"TP": "#1a9850", "FP": "#d73027", "FN": "#4575b4", "predicted": "#555555"}
MAX_ROWS = 12


def _figure(rows: int, cols: int, cell: float = 1.35) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(cell * cols + 0.4, cell * rows + 0.5))
    FigureCanvasAgg(fig)
    return fig


def draw_crop(ax: Any, table: LesionTable, row: int, title: str, plane: int = 0) -> None:
    """Draw one lesion's display crop (``plane`` 0 axial, 1 coronal, 2 sagittal) with its outline and a status-coloured frame."""
    ax.imshow(table.crop[row, plane], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    mask = table.crop_mask[row, plane]
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=["#ffd700"], linewidths=0.7)
    colour = STATUS_COLOURS.get(str(table.status[row]), "#555555")
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=6.5, color=colour, pad=2)


def similar_figure(result: Any, max_rows: int = MAX_ROWS) -> Any:
    """Return a Figure: per query lesion (at most ``max_rows``), its crop then its neighbours' crops, nearest first."""
    q = min(len(result.queries), max_rows)
    k = int(result.neighbours.shape[1]) if result.neighbours.size else 0
    fig = _figure(max(q, 1), k + 1)
    if q == 0:
        fig.text(0.5, 0.5, "no lesion to compare", ha="center", va="center")
        return fig
    axes = fig.subplots(q, k + 1, squeeze=False)
    for r in range(q):
        share = result.fp_share(r)
        extra = "" if share is None else f"\nFP share {share:.2f}"
        draw_crop(axes[r][0], result.queries, r, f"lesion {int(result.queries.id[r])} ({result.queries.status[r]}){extra}")
        for c in range(k):
            i = int(result.neighbours[r, c])
            lib = result.library
            title = f"{lib.subject[i]}#{int(lib.id[i])} {lib.status[i]}\nd={result.distances[r, c]:.3f}"
            draw_crop(axes[r][c + 1], lib, i, title)
    fig.suptitle("Lesions like this one: query (left), nearest library lesions (cosine distance d)", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / fig.get_figheight(), wspace=0.08, hspace=0.55)
    return fig


def prototype_figure(table: LesionTable, clusters: Sequence[dict[str, Any]], members: int = 5) -> Any:
    """Return a Figure: one row per cluster, its most typical lesions (nearest the centre), with its TP/FP mix."""
    rows = max(len(clusters), 1)
    fig = _figure(rows, members + 1)
    axes = fig.subplots(rows, members + 1, squeeze=False)
    for r, c in enumerate(clusters):
        text = axes[r][0]
        text.axis("off")
        mix = ", ".join(f"{s} {n}" for s, n in c["status_counts"].items())
        share: Optional[float] = c.get("fp_share")
        text.text(0.0, 0.5, f"cluster {c['cluster']}\n{c['size']} lesions\n{mix}" + ("" if share is None else f"\nFP share {share:.2f}"),
                  fontsize=7, va="center")  # fmt: skip
        for m in range(members):
            ax = axes[r][m + 1]
            if m < len(c["typical_rows"]):
                i = int(c["typical_rows"][m])
                draw_crop(ax, table, i, f"{table.subject[i]}#{int(table.id[i])} {table.status[i]}")
            else:
                ax.axis("off")
    fig.suptitle("Library prototypes: each cluster's most typical lesions (nearest its centre)", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / fig.get_figheight(), wspace=0.08, hspace=0.5)
    return fig
