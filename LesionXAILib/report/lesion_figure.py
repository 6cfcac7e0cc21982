"""The per-lesion panel: axial/coronal/sagittal slices of FLAIR + outline, attribution maps and CAM,
the context curve with the context-needed radius, and the per-sequence statistics.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from LesionXAILib.figures import new_figure
from LesionXAILib.report.data import LesionData
from LesionXAILib.report.panels import LesionSlices, SharedScales, lesion_scale
from LesionXAILib.report.slices import VIEWS, SliceGrid
from LesionXAILib.report.style import (
    DIVERGING_CMAP,
    MAP_OUTLINE_COLOUR,
    OUTLINE_COLOUR,
    OUTSIDE_IMAGE_COLOUR,
    SEQUENTIAL_CMAP,
)
from LesionXAILib.vocabulary import map_key, method_title, sequence_title, status_colour

PANEL_SIZE_IN = (14.0, 7.4)
REGIONS = ("inside", "ring", "outside")

# Spagnolo et al. 2024: ~7 mm of perilesional context needed on real MRI (U-Net and nnU-Net)
ANCHOR_CONTEXT_MM = 7.0


def panel_columns(gradient_method: Optional[str], sequences: list[str], cam_method: Optional[str]) -> list[tuple[str, str]]:
    """Return the (image key, column title) pairs of a lesion panel, left to right."""
    cols = [("flair", "FLAIR + lesion outline")]
    if gradient_method:
        cols += [(map_key(gradient_method, s), f"{method_title(gradient_method)} {sequence_title(s)}") for s in sequences]
    if cam_method:
        cols.append((cam_method, method_title(cam_method)))
    return cols


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad=OUTSIDE_IMAGE_COLOUR)


def _outline(ax, grid: SliceGrid, mask: np.ndarray, colour: str, width: float = 1.1) -> None:
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width, extent=grid.extent, origin="upper")


def _letters(ax, grid: SliceGrid) -> None:
    h = grid.half_extent_mm
    left, right, top, bottom = grid.view.letters
    style = {"color": "white", "fontsize": 7, "fontweight": "bold", "ha": "center", "va": "center"}
    ax.text(-0.9 * h, 0, left, **style)
    ax.text(0.9 * h, 0, right, **style)
    ax.text(0, 0.9 * h, top, **style)
    ax.text(0, -0.9 * h, bottom, **style)


def _scale_bar(ax, grid: SliceGrid, length_mm: float = 10.0) -> None:
    h = grid.half_extent_mm
    x1 = 0.92 * h
    y = -0.86 * h
    ax.plot([x1 - length_mm, x1], [y, y], color="white", linewidth=2, solid_capstyle="butt")
    ax.text(x1 - length_mm / 2, y + 0.05 * h, f"{length_mm:g} mm", color="white", fontsize=6, ha="center", va="bottom")


def _image_axes(ax, grid: SliceGrid) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlim(grid.extent[0], grid.extent[1])
    ax.set_ylim(grid.extent[2], grid.extent[3])
    ax.set_aspect("equal")


def draw_context_curve(ax, lesion: LesionData) -> None:
    """Draw mean lesion probability and Dice vs kept radius with the context-needed radius marked."""
    curve = lesion.curve
    if curve is None:
        ax.text(0.5, 0.5, "no context probe\nfor this lesion", ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#666")
        ax.set_axis_off()
        return
    radii = np.asarray(curve["radii_mm"], dtype=float)
    points = curve["points"]
    prob = np.array([p["mean_probability"] for p in points], dtype=float)
    dice = np.array([p["dice"] for p in points], dtype=float)
    det = np.array([bool(p["detected"]) for p in points])
    step = float(np.median(np.diff(radii))) if radii.size > 1 else 1.0
    x_full = radii[-1] + 2 * step
    ax.plot(radii, prob, "-", color="#c0392b", linewidth=1.4, label="mean lesion probability")
    ax.plot(radii, dice, "-", color="#2471a3", linewidth=1.2, label="Dice vs original")
    ax.scatter(radii[det], prob[det], s=16, color="#c0392b", zorder=3, label="detected")
    ax.scatter(radii[~det], prob[~det], s=16, facecolors="white", edgecolors="#c0392b", zorder=3, label="not detected")
    full = curve.get("full_context") or {}
    if full:
        ax.scatter([x_full], [full["mean_probability"]], marker="D", s=22, zorder=3,
                   color="#c0392b" if full.get("detected") else "white", edgecolors="#c0392b")  # fmt: skip
        ax.scatter([x_full], [full["dice"]], marker="D", s=18, color="#2471a3", zorder=3)
    threshold = curve.get("threshold")
    if threshold is not None:
        ax.axhline(float(threshold), color="grey", linestyle=":", linewidth=1, label=f"threshold {float(threshold):g}")
    if radii[0] <= ANCHOR_CONTEXT_MM <= radii[-1]:
        # the anchor study's reference: about 7 mm of context on real scans (U-Net, nnU-Net)
        ax.axvline(ANCHOR_CONTEXT_MM, color="#7f8c8d", linestyle="-.", linewidth=1, label=f"anchor study ~{ANCHOR_CONTEXT_MM:g} mm")
    needed = lesion.context_needed_mm
    if needed is not None and math.isfinite(needed):
        ax.axvline(needed, color="black", linestyle="--", linewidth=1.2, label=f"context needed {needed:g} mm")
    elif needed is not None:
        ax.axvspan(radii[-1], x_full, color="#f5b7b1", alpha=0.4, label=f"needs > {radii[-1]:g} mm")
    from matplotlib.ticker import MaxNLocator

    ticks = [float(t) for t in MaxNLocator(nbins=6, integer=True).tick_values(radii[0], radii[-1]) if radii[0] <= t <= radii[-1]]
    ax.set_xticks(ticks + [x_full])
    ax.set_xticklabels([f"{t:g}" for t in ticks] + ["full"], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlim(radii[0] - step, x_full + step)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("kept context around the lesion (mm)", fontsize=8)
    ax.set_ylabel("probability / Dice", fontsize=8)
    ax.set_title(f"Context probe: {curve.get('description', curve.get('status', ''))}", fontsize=8.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best", framealpha=0.85)


def draw_statistics(ax, lesion: LesionData, gradient_method: Optional[str], sequences: list[str], ring_mm) -> None:
    """Draw the per-sequence attribution sums inside the lesion, in the ring and outside, with the FLAIR share."""
    if gradient_method is None or lesion.explanation is None:
        ax.text(0.5, 0.5, "no explanation\nfor this lesion", ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#666")
        ax.set_axis_off()
        return
    x = np.arange(len(REGIONS), dtype=float)
    width = 0.8 / max(len(sequences), 1)
    colours = ["#8e44ad", "#16a085", "#7f8c8d", "#d35400"]
    for n, seq in enumerate(sequences):
        key = map_key(gradient_method, seq)
        values = [lesion.statistic(key, f"{r}_sum") or 0.0 for r in REGIONS]
        ax.bar(x + (n - (len(sequences) - 1) / 2) * width, values, width, color=colours[n % len(colours)], label=sequence_title(seq))
    ax.axhline(0, color="black", linewidth=0.8)
    ring = f"ring {ring_mm[0]:g}–{ring_mm[1]:g} mm" if ring_mm else "ring"
    ax.set_xticks(x)
    ax.set_xticklabels(["inside lesion", ring, "outside"], fontsize=7)
    ax.tick_params(axis="y", labelsize=7)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.yaxis.get_offset_text().set_fontsize(7)
    share = lesion.flair_share(gradient_method)
    share_text = f"; FLAIR share {share:.0%}" if share is not None else ""
    ax.set_title(f"{method_title(gradient_method)} sum per region{share_text}", fontsize=8.5)
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def lesion_title(lesion: LesionData) -> str:
    """Return the one-line title of a lesion panel."""
    r = lesion.row
    c = lesion.centroid_ras
    return (
        f"Lesion {lesion.id} · {lesion.status} · {int(r['voxels'])} voxels ({float(r['volume_mm3']):.0f} mm³) · "
        f"centroid RAS ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm"
    )


def lesion_figure(
    stack: LesionSlices,
    scales: SharedScales,
    gradient_method: Optional[str],
    sequences: list[str],
    cam_method: Optional[str],
    ring_mm=None,
):
    """Return (figure, named axes) of one lesion's panel; axes are named '<view>/<image key>', 'curve', 'stats'."""
    lesion = stack.lesion
    columns = panel_columns(gradient_method, sequences, cam_method)
    fig = new_figure(*PANEL_SIZE_IN)
    fig.suptitle(lesion_title(lesion), fontsize=11, color=status_colour(lesion.status), fontweight="bold")
    outer = fig.add_gridspec(1, 2, width_ratios=[3.4, 1.5], left=0.035, right=0.985, top=0.9, bottom=0.07, wspace=0.13)
    left = outer[0].subgridspec(4, len(columns), height_ratios=[1, 1, 1, 0.07], hspace=0.1, wspace=0.04)
    axes: dict = {}
    images: dict = {}
    grey = _cmap("gray")
    div = _cmap(DIVERGING_CMAP)
    seq_cmap = _cmap(SEQUENTIAL_CMAP)
    for r, view in enumerate(VIEWS):
        grid = stack.grids[view.name]
        mask = stack.get(view.name, "mask")
        for c, (key, title) in enumerate(columns):
            ax = fig.add_subplot(left[r, c])
            axes[f"{view.name}/{key}"] = ax
            _image_axes(ax, grid)
            data = stack.get(view.name, key)
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(view.name, fontsize=9)
            if data is None:
                ax.set_facecolor("#f2f2f2")
                ax.text(0, 0, "not available", ha="center", va="center", fontsize=8, color="#666")
                continue
            if key == "flair":
                lo, hi = scales.flair_window or (np.nanmin(data), np.nanmax(data))
                images[key] = ax.imshow(data, cmap=grey, vmin=lo, vmax=hi, extent=grid.extent, origin="upper", interpolation="nearest")
                _outline(ax, grid, mask, OUTLINE_COLOUR)
                _letters(ax, grid)
                if r == 0:
                    _scale_bar(ax, grid)
            elif key == cam_method:
                top = lesion_scale(stack, key, scales.percentile) or 1.0
                images[key] = ax.imshow(data, cmap=seq_cmap, vmin=0, vmax=top, extent=grid.extent, origin="upper", interpolation="nearest")
                _outline(ax, grid, mask, OUTLINE_COLOUR, 0.9)
            else:
                s = scales.gradient or float(np.nanmax(np.abs(data))) or 1.0
                images["gradient"] = ax.imshow(data, cmap=div, vmin=-s, vmax=s, extent=grid.extent, origin="upper", interpolation="nearest")
                _outline(ax, grid, mask, MAP_OUTLINE_COLOUR, 0.9)
    _colour_bars(fig, left, columns, images, gradient_method, cam_method, scales)
    right = outer[1].subgridspec(2, 1, height_ratios=[1.2, 1.0], hspace=0.42)
    axes["curve"] = fig.add_subplot(right[0])
    draw_context_curve(axes["curve"], lesion)
    axes["stats"] = fig.add_subplot(right[1])
    draw_statistics(axes["stats"], lesion, gradient_method, sequences, ring_mm)
    return fig, axes


def _tick_label(value: float, _pos=None) -> str:
    """Colour-bar tick label: short, with no offset text that could collide with the bar's label."""
    return f"{value:.2g}"


def _colour_bars(fig, left, columns, images, gradient_method, cam_method, scales: SharedScales) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    keys = [k for k, _ in columns]
    if "flair" in images:
        cax = fig.add_subplot(left[3, 0])
        bar = fig.colorbar(images["flair"], cax=cax, orientation="horizontal")
        bar.ax.tick_params(labelsize=6)
        bar.set_label("FLAIR intensity (shared window)", fontsize=7)
    grad_cols = [i for i, k in enumerate(keys) if gradient_method and k.startswith(gradient_method + "_")]
    if "gradient" in images and grad_cols:
        cax = fig.add_subplot(left[3, grad_cols[0] : grad_cols[-1] + 1])
        bar = fig.colorbar(images["gradient"], cax=cax, orientation="horizontal", extend="both", format=FuncFormatter(_tick_label))
        bar.ax.tick_params(labelsize=6)
        bar.set_label(
            f"{method_title(gradient_method)} (signed; 0 = white; scale shared by all lesions and sequences)", fontsize=7
        )
    if cam_method in images:
        cax = fig.add_subplot(left[3, keys.index(cam_method)])
        bar = fig.colorbar(images[cam_method], cax=cax, orientation="horizontal", extend="max", format=FuncFormatter(_tick_label))
        bar.ax.xaxis.set_major_locator(MaxNLocator(3))
        bar.ax.tick_params(labelsize=6)
        bar.set_label(f"{method_title(cam_method)} (this lesion's scale)", fontsize=7)
