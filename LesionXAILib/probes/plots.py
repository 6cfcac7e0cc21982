"""Matplotlib figures of probe results, drawn on private Figure objects (no pyplot state, safe in Slicer)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from LesionXAILib.atomic_write import save_figure
from LesionXAILib.figures import new_figure

if TYPE_CHECKING:
    from LesionXAILib.probes.curve import ContextCurve
    from LesionXAILib.probes.synthetic import SyntheticResult


def _figure(width: float = 6.4, height: float = 4.2):
    return new_figure(width, height, dpi=110)


def _save(fig, path: str | os.PathLike) -> Path:
    return save_figure(fig, path, "png")


def plot_context_curve(curve: "ContextCurve", path: str | os.PathLike, title: Optional[str] = None) -> Path:
    """Write a PNG of mean lesion probability and Dice vs kept radius (full context at the right); return the path."""
    radii = np.asarray(curve.radii_mm, dtype=float)
    step = float(np.median(np.diff(radii))) if radii.size > 1 else 1.0
    x_full = radii[-1] + 2 * step
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(radii, curve.mean_probability, "-", color="tab:red", label="mean lesion probability")
    ax.plot(radii, curve.dice, "-", color="tab:blue", label="Dice vs original instance")
    det = np.asarray(curve.detected, dtype=bool)
    ax.scatter(radii[det], np.asarray(curve.mean_probability)[det], color="tab:red", zorder=3, label="detected")
    ax.scatter(
        radii[~det], np.asarray(curve.mean_probability)[~det], facecolors="white", edgecolors="tab:red", zorder=3,
        label="not detected",
    )  # fmt: skip
    full = curve.full_context
    ax.scatter([x_full], [full.mean_probability], marker="D", color="tab:red" if full.detected else "white",
               edgecolors="tab:red", zorder=3)  # fmt: skip
    ax.scatter([x_full], [full.dice], marker="D", color="tab:blue", zorder=3)
    ax.axhline(curve.threshold, color="grey", linestyle=":", linewidth=1, label=f"threshold {curve.threshold:g}")
    value = curve.context_needed_mm
    if value is not None and not math.isinf(value):
        ax.axvline(value, color="black", linestyle="--", linewidth=1, label=f"context needed {value:g} mm")
    ticks = list(ax.get_xticks())
    ticks = [t for t in ticks if radii[0] - 1e-9 <= t <= radii[-1] + 1e-9] + [x_full]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks[:-1]] + ["full"])
    ax.set_xlim(radii[0] - step, x_full + step)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("kept context radius around the lesion (mm)")
    ax.set_ylabel("probability / Dice")
    name = f"instance {curve.instance_id}" if curve.instance_id is not None else "lesion"
    ax.set_title(title or f"Context probe, {name}: {curve.description}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_synthetic(result: "SyntheticResult", path: str | os.PathLike, title: Optional[str] = None) -> Path:
    """Write a PNG of detection rate and mean Dice vs inserted lesion volume, one line per FLAIR contrast."""
    summary = result.summary_rows()
    contrasts = sorted({row["flair_contrast"] for row in summary})
    fig = _figure(9.0, 3.8)
    ax_rate = fig.add_subplot(1, 2, 1)
    ax_dice = fig.add_subplot(1, 2, 2)
    for c in contrasts:
        rows = sorted((r for r in summary if r["flair_contrast"] == c), key=lambda r: r["volume_mm3"])
        v = [r["volume_mm3"] for r in rows]
        ax_rate.plot(v, [r["detection_rate"] for r in rows], "o-", label=f"FLAIR contrast {c:g}")
        ax_dice.plot(v, [r["mean_dice"] for r in rows], "o-", label=f"FLAIR contrast {c:g}")
    for ax, label in ((ax_rate, "detection rate"), (ax_dice, "mean Dice")):
        ax.set_xscale("log")
        ax.set_xlabel("inserted lesion volume (mm³)")
        ax.set_ylabel(label)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    ax_rate.legend(fontsize=7)
    fig.suptitle(title or f"Synthetic-lesion probe ({result.n_positions} positions)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
