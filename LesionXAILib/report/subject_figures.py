"""Subject-level figures: axial overview with every instance outlined by status, and the summary plot
comparing per-lesion quantities between TP, FP and FN lesions (the anchor study's group comparison).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from LesionXAILib.figures import new_figure
from LesionXAILib.report.data import STATUS_ORDER, RunData
from LesionXAILib.report.slices import AXIAL, display_pixel_mm, sample, slice_grid
from LesionXAILib.report.style import OUTSIDE_IMAGE_COLOUR
from LesionXAILib.vocabulary import STATUS_COLOURS, map_key, method_title

OVERVIEW_SLICES = 4
OVERVIEW_SIZE_IN = (14.0, 4.2)
SUMMARY_SIZE_IN = (14.0, 3.6)


def overview_levels(run: RunData, count: int = OVERVIEW_SLICES) -> list[float]:
    """Return up to ``count`` axial levels (RAS S, mm) through lesion centroids, ascending.

    Every status present (TP, FP, FN) gets a slice through one of its lesions (the largest) first; the
    remaining slices go to lesions spread over the superior-inferior range. Levels closer than 4 mm are merged.
    """
    lesions = run.lesions
    if not lesions:
        lo, hi = run.geometry.physical_bounds()
        return [float((lo[2] + hi[2]) / 2)]
    levels: list[float] = []

    def add(z: float) -> None:
        if len(levels) < count and all(abs(z - other) > 4.0 for other in levels):
            levels.append(z)

    for status in ("FP", "FN", "TP", "predicted"):
        group = [les for les in lesions if les.status == status]
        if group:
            add(float(max(group, key=lambda les: int(les.row["voxels"])).centroid_ras[2]))
    zs = sorted(float(les.centroid_ras[2]) for les in lesions)
    for q in np.linspace(0.0, 1.0, 2 * count + 1)[1::2]:
        add(zs[int(round(q * (len(zs) - 1)))])
    for z in zs:
        add(z)
    return sorted(levels)


def _brain_box_ras(run: RunData) -> tuple[np.ndarray, float]:
    """Return the RAS centre and half width (mm) of the image's physical box."""
    lo, hi = run.geometry.physical_bounds()  # LPS
    centre_lps = (lo + hi) / 2
    centre = centre_lps * np.array([-1.0, -1.0, 1.0])
    half = float(max(hi[0] - lo[0], hi[1] - lo[1]) / 2 + 2)
    return centre, half


def overview_figure(run: RunData, flair_window: Optional[tuple[float, float]]):
    """Return (figure, named axes) of axial FLAIR slices with every instance outlined in its status colour."""
    import matplotlib
    import matplotlib.patheffects

    levels = overview_levels(run)
    fig = new_figure(*OVERVIEW_SIZE_IN)
    centre, half = _brain_box_ras(run)
    pixel = max(display_pixel_mm(run.geometry), 1.0)
    labels = run.labels()
    flair = run.flair()
    status_of = {lesion.id: lesion.status for lesion in run.lesions}
    grey = matplotlib.colormaps["gray"].with_extremes(bad=OUTSIDE_IMAGE_COLOUR)
    halo = [matplotlib.patheffects.withStroke(linewidth=2, foreground="black")]
    axes = {}
    for n, z in enumerate(levels):
        ax = fig.add_subplot(1, OVERVIEW_SLICES, n + 1)
        axes[f"overview/{n}"] = ax
        grid = slice_grid(AXIAL, (centre[0], centre[1], z), half, pixel)
        if flair is not None:
            lo, hi = flair_window or (None, None)
            ax.imshow(sample(flair, run.geometry, grid), cmap=grey, vmin=lo, vmax=hi, extent=grid.extent, origin="upper")
        else:
            ax.set_facecolor("black")
        lab = sample(labels, run.geometry, grid, nearest=True, outside=0).astype(np.int64)
        for i in np.unique(lab[lab > 0]):
            mask = lab == i
            colour = STATUS_COLOURS.get(status_of.get(int(i), "predicted"), "white")
            if not mask.all():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.6, extent=grid.extent, origin="upper")
            rows, cols = np.nonzero(mask)
            u, v = grid.pixel_to_plane(rows.mean(), cols.mean())
            ax.text(float(u) + 4, float(v) + 4, str(int(i)), color=colour, fontsize=8, fontweight="bold", path_effects=halo)
        h = grid.half_extent_mm
        for text, x, y in (("R", -0.93 * h, 0), ("L", 0.93 * h, 0), ("A", 0, 0.93 * h), ("P", 0, -0.93 * h)):
            ax.text(x, y, text, color="white", fontsize=7, fontweight="bold", ha="center", va="center")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"axial, S = {z:.1f} mm", fontsize=9)
    handles = [
        matplotlib.lines.Line2D([], [], color=STATUS_COLOURS[s], linewidth=2, label=s)
        for s in STATUS_ORDER
        if any(lesion.status == s for lesion in run.lesions)
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.1, wspace=0.03)
    return fig, axes


def summary_quantities(run: RunData) -> list[tuple[str, str, dict[str, list[float]]]]:
    """Return (key, axis label, values by status) of the per-lesion quantities compared across groups."""
    method = run.gradient_method
    out = []
    if method:
        key = map_key(method, "flair") if "flair" in run.sequences else (map_key(method, run.sequences[0]) if run.sequences else None)
        label = method_title(method)
        if key:
            out.append(("peak", f"peak {label} FLAIR inside lesion", _by_status(run, lambda les: les.statistic(key, "inside_peak"))))
            out.append(("ring", f"mean {label} FLAIR in the ring", _by_status(run, lambda les: les.statistic(key, "ring_mean"))))
        out.append(("share", f"FLAIR share of |{label}|", _by_status(run, lambda les: les.flair_share(method))))
    out.append(("context", "context needed (mm)", _by_status(run, lambda les: les.context_needed_mm)))
    return out


def _by_status(run: RunData, value) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for lesion in run.lesions:
        v = value(lesion)
        if v is not None:
            groups.setdefault(lesion.status, []).append(float(v))
    return groups


def _max_radius(run: RunData) -> Optional[float]:
    radii = [lesion.curve["radii_mm"][-1] for lesion in run.lesions if lesion.curve is not None]
    return max(radii) if radii else None


def summary_figure(run: RunData):
    """Return (figure, named axes): per-lesion quantities as strip plots grouped by TP/FP/FN, medians marked."""
    quantities = summary_quantities(run)
    fig = new_figure(*SUMMARY_SIZE_IN)
    axes = {}
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    max_r = _max_radius(run)
    for n, (key, label, groups) in enumerate(quantities):
        ax = fig.add_subplot(1, len(quantities), n + 1)
        axes[f"summary/{key}"] = ax
        statuses = [s for s in STATUS_ORDER if groups.get(s)]
        if not statuses:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes, color="#666")
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for x, status in enumerate(statuses):
            values = np.asarray(groups[status], dtype=float)
            finite = values[np.isfinite(values)]
            beyond = values[~np.isfinite(values)]
            jitter = rng.uniform(-0.15, 0.15, finite.size)
            ax.scatter(x + jitter, finite, s=18, color=STATUS_COLOURS[status], alpha=0.85, zorder=3)
            if beyond.size and max_r is not None:
                ax.scatter(x + rng.uniform(-0.15, 0.15, beyond.size), np.full(beyond.size, max_r + 2), marker="^", s=22,
                           color=STATUS_COLOURS[status], zorder=3)  # fmt: skip
            if finite.size:
                ax.hlines(np.median(finite), x - 0.3, x + 0.3, color="black", linewidth=1.5, zorder=4)
        ax.set_xticks(range(len(statuses)))
        ax.set_xticklabels([f"{s}\n(n={len(groups[s])})" for s in statuses], fontsize=8)
        ax.set_xlim(-0.6, len(statuses) - 0.4)
        ax.tick_params(axis="y", labelsize=7)
        if key in ("peak", "ring"):
            ax.axhline(0, color="grey", linewidth=0.8)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            ax.yaxis.get_offset_text().set_fontsize(7)
        if key == "share":
            ax.set_ylim(-0.03, 1.03)
        if key == "context" and max_r is not None and any(not math.isfinite(v) for g in groups.values() for v in g):
            ax.axhline(max_r + 1, color="grey", linestyle=":", linewidth=0.8)
            ax.text(len(statuses) - 0.45, max_r + 2, f"> {max_r:g} mm", fontsize=6, ha="right", va="bottom", color="#444")
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.05, right=0.99, top=0.86, bottom=0.2, wspace=0.35)
    return fig, axes
