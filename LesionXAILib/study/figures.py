"""The study's figures: context-needed curve and distribution per model (anchor's ~7 mm line), saliency signs, peaks by status."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from LesionXAILib.atomic_write import save_figure
from LesionXAILib.figures import new_figure
from LesionXAILib.study.run import SEQUENCES, StudyResult, finite
from LesionXAILib.study.summary import ANCHOR_CONTEXT_MM, STATUSES, context_curve
from LesionXAILib.study.synthetic import curve


def _anchor_line(ax, vertical: bool = True) -> None:
    line = ax.axvline if vertical else ax.axhline
    line(ANCHOR_CONTEXT_MM, color="black", linestyle="--", linewidth=1, label=f"anchor study ~{ANCHOR_CONTEXT_MM:g} mm (U-Net, nnU-Net)")
    line(14.0, color="grey", linestyle=":", linewidth=1, label="anchor study ~14 mm (Swin UNETR)")


def plot_context_curve(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write the share of detected lesions segmented with at most r mm of context, per model; return the path."""
    radii = np.arange(0.0, result.settings.max_radius_mm + 1e-9, 0.5)
    fig = new_figure(6.4, 4.2, dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for name in result.models:
        rows = [r for r in result.lesions if r["model"] == name]
        ax.step(radii, context_curve(rows, radii), where="post", label=name)
    _anchor_line(ax)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("perilesional context kept (mm)")
    ax.set_ylabel("share of detected lesions found")
    ax.set_title("Context needed (context probe, held-out phantoms)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path, "png")


def plot_context_distribution(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write the per-lesion context needed per model (triangles: beyond the largest radius); return the path."""
    top = result.settings.max_radius_mm
    fig = new_figure(6.4, 4.2, dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)
    names = list(result.models)
    for x, name in enumerate(names):
        rows = [r for r in result.lesions if r["model"] == name and r["status"] != "FN"]
        values = finite(r.get("context_needed_mm") for r in rows)
        beyond = sum(bool(r.get("context_beyond_max")) for r in rows)
        if values:
            ax.boxplot([values], positions=[x], widths=0.5, showfliers=False)
            ax.scatter(x + rng.uniform(-0.15, 0.15, len(values)), values, s=10, alpha=0.6)
        if beyond:
            ax.scatter(x + rng.uniform(-0.15, 0.15, beyond), [top + 1.0] * beyond, marker="^", s=14, color="tab:red")
    _anchor_line(ax, vertical=False)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("context needed (mm)")
    ax.set_title("Context needed per lesion (triangles: > largest radius)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path, "png")


def plot_saliency_regions(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write median mean saliency inside TP lesions vs their ring, per sequence and model; return the path."""
    names = list(result.models)
    fig = new_figure(6.4, 4.2, dpi=110)
    axes = [fig.add_subplot(1, 2, n + 1) for n in range(len(SEQUENCES))]
    for ax, seq in zip(axes, SEQUENCES):
        for n, region in enumerate(("inside", "ring")):
            values = []
            for name in names:
                v = finite(r.get(f"{seq}_{region}_mean") for r in result.lesions if r["model"] == name and r["status"] == "TP")
                # scaled by the model's own inside magnitude: models' gradients differ by orders of magnitude
                inside = finite(r.get(f"{seq}_inside_mean") for r in result.lesions if r["model"] == name and r["status"] == "TP")
                scale = float(np.median(np.abs(inside))) if inside else 1.0
                scale = scale if scale > 0 else 1.0
                values.append(float(np.median(v)) / scale if v else math.nan)
            ax.bar(np.arange(len(names)) + (n - 0.5) * 0.38, values, width=0.38, label=f"{region} ({'lesion' if n == 0 else '1-3 mm ring'})")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, fontsize=7, rotation=20)
        ax.set_title(f"{seq.upper()} saliency (median, TP)", fontsize=9)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("median mean saliency / median |inside|")
    return save_figure(fig, path, "png")


def plot_peaks_by_status(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write the FLAIR peak saliency inside the lesion by TP/FP/FN, per model; return the path."""
    names = list(result.models)
    fig = new_figure(6.4, 4.2, dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    colors = {"TP": "tab:green", "FP": "tab:red", "FN": "tab:orange"}
    for x, name in enumerate(names):
        for n, status in enumerate(STATUSES):
            values = finite(r.get("flair_inside_peak") for r in result.lesions if r["model"] == name and r["status"] == status)
            if values:
                pos = x + (n - 1) * 0.25
                ax.boxplot([values], positions=[pos], widths=0.2, showfliers=False)
                ax.scatter([pos] * len(values), values, s=8, color=colors[status], label=status if x == 0 else None)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("FLAIR peak saliency inside the instance")
    ax.set_title("Peak saliency by TP / FP / FN", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path, "png")


def plot_synthetic_detection(result: StudyResult, path: str | os.PathLike) -> Path:
    """Write the synthetic-lesion detection rate vs inserted volume, per model and FLAIR contrast; return the path."""
    fig = new_figure(6.4, 4.2, dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    contrasts = sorted({float(r["flair_contrast"]) for r in result.synthetic})
    styles = ("-", "--", ":", "-.")
    for n, name in enumerate(result.models):
        for k, contrast in enumerate(contrasts):
            volumes, rates = curve(result.synthetic, name, contrast)
            if volumes:
                ax.plot(volumes, rates, styles[k % len(styles)], marker="o", markersize=3, color=f"C{n}",
                        label=f"{name}, FLAIR x{contrast:g}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("inserted lesion volume (mm³)")
    ax.set_ylabel("share detected")
    ax.set_title("Synthetic lesions in normal-appearing white matter (first phantom)", fontsize=9)
    ax.grid(alpha=0.3)
    if result.synthetic:
        ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path, "png")


FIGURES = {
    "context_curve.png": plot_context_curve,
    "context_distribution.png": plot_context_distribution,
    "saliency_inside_ring.png": plot_saliency_regions,
    "peak_by_status.png": plot_peaks_by_status,
}


def write_figures(result: StudyResult, out_dir: str | os.PathLike, names: Sequence[str] = tuple(FIGURES)) -> dict[str, Path]:
    """Write the study's figures into ``out_dir`` (the synthetic-lesion curve when it was measured); return {file name: path}."""
    out = Path(out_dir)
    paths = {name: FIGURES[name](result, out / name) for name in names}
    if result.synthetic:
        paths["synthetic_detection.png"] = plot_synthetic_detection(result, out / "synthetic_detection.png")
    return paths
