"""The study's headline table: per model, context needed, saliency signs inside vs ring, peaks by status, mimic FPs."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from LesionXAILib.study.run import SEQUENCES, StudyResult, finite
from LesionXAILib.study.synthetic import detection_rate, smallest_detected_half

# Spagnolo et al. (arXiv 2406.09335): about 7 mm of perilesional context for U-Net and nnU-Net, 14 mm for Swin UNETR
ANCHOR_CONTEXT_MM = 7.0
ANCHOR_CONTEXT_BY_ARCHITECTURE = {"unet": 7.0, "dynunet": 7.0, "swin-unetr": 14.0}
STATUSES = ("TP", "FP", "FN")


def _median(values: Sequence[float]) -> Optional[float]:
    return float(np.median(values)) if values else None


def _share(flags: Sequence[bool]) -> Optional[float]:
    return float(np.mean(flags)) if flags else None


def peak_test(rows: Sequence[dict], key: str) -> dict[str, Any]:
    """Return the Kruskal-Wallis test of ``key`` across TP/FP/FN and its effect size epsilon^2 (None below two groups)."""
    from scipy import stats

    groups = {s: finite(r.get(key) for r in rows if r["status"] == s) for s in STATUSES}
    present = {s: g for s, g in groups.items() if len(g) >= 2}
    medians = {s: _median(g) for s, g in groups.items()}
    if len(present) < 2 or len({v for g in present.values() for v in g}) < 2:
        return {"medians": medians, "H": None, "p": None, "epsilon2": None, "groups": {s: len(g) for s, g in groups.items()}}
    h, p = stats.kruskal(*present.values())
    n = sum(len(g) for g in present.values())
    # epsilon^2 = H / (n - 1): the rank-based share of variance explained by the status
    return {"medians": medians, "H": float(h), "p": float(p), "epsilon2": float(h / (n - 1)),
            "groups": {s: len(g) for s, g in groups.items()}}  # fmt: skip


def context_curve(rows: Sequence[dict], radii: Sequence[float]) -> list[float]:
    """Return, per radius, the share of detected lesions whose context needed is <= that radius (the paper's curve)."""
    needed = [r for r in rows if r["status"] != "FN" and r.get("context_status") not in (None, "not_detected")]
    if not needed:
        return [math.nan for _ in radii]
    values = [math.inf if r.get("context_beyond_max") else r.get("context_needed_mm") for r in needed]
    values = [math.inf if v is None else float(v) for v in values]
    return [float(np.mean([v <= x for v in values])) for x in radii]


def summarise(result: StudyResult) -> list[dict[str, Any]]:
    """Return one headline row per model (JSON-ready)."""
    out = []
    for name in result.models:
        rows = [r for r in result.lesions if r["model"] == name]
        subjects = [s for s in result.subjects if s["model"] == name]
        detected = [r for r in rows if r["status"] != "FN"]
        context = finite(r.get("context_needed_mm") for r in detected)
        beyond = sum(bool(r.get("context_beyond_max")) for r in detected)
        row: dict[str, Any] = {
            "model": name,
            "subjects": len(subjects),
            "dice_mean": float(np.mean(dice)) if (dice := [s["dice"] for s in subjects if s["dice"] is not None]) else None,
            "tp": sum(s["tp"] for s in subjects),
            "fp": sum(s["fp"] for s in subjects),
            "fn": sum(s["fn"] for s in subjects),
            "lesions_analysed": len(rows),
            "context_median_mm": _median(context),
            "context_q1_mm": float(np.percentile(context, 25)) if context else None,
            "context_q3_mm": float(np.percentile(context, 75)) if context else None,
            "context_zero_share": _share([v == 0.0 for v in context]),
            "context_beyond_max": beyond,
            "mimics": sum(s["mimics"] for s in subjects),
            "fp_on_mimics": sum(s["fp_on_mimics"] for s in subjects),
        }
        for seq in SEQUENCES:
            tp = [r for r in rows if r["status"] == "TP"]
            inside = finite(r.get(f"{seq}_inside_mean") for r in tp)
            ring = finite(r.get(f"{seq}_ring_mean") for r in tp)
            row[f"{seq}_inside_mean_median"] = _median(inside)
            row[f"{seq}_ring_mean_median"] = _median(ring)
            row[f"{seq}_inside_positive_share"] = _share([v > 0 for v in inside])
            row[f"{seq}_ring_negative_share"] = _share([v < 0 for v in ring])
            regions = [r.get(f"{seq}_peak_region") for r in tp if r.get(f"{seq}_peak_region")]
            for region in ("inside", "ring", "outside"):
                row[f"{seq}_peak_{region}_share"] = _share([g == region for g in regions])
        row["synthetic_detection_rate"] = detection_rate(result.synthetic, name)
        row["synthetic_half_detected_mm3"] = smallest_detected_half(result.synthetic, name)
        test = peak_test(rows, "flair_inside_peak")
        row["flair_peak_by_status"] = test["medians"]
        row["flair_peak_kruskal_p"] = test["p"]
        row["flair_peak_epsilon2"] = test["epsilon2"]
        out.append(row)
    return out


TABLE_COLUMNS = (
    ("model", "model"),
    ("tp", "TP"),
    ("fp", "FP"),
    ("fn", "FN"),
    ("dice_mean", "Dice"),
    ("context_median_mm", "context median (mm)"),
    ("context_q1_mm", "Q1"),
    ("context_q3_mm", "Q3"),
    ("context_zero_share", "share 0 mm"),
    ("flair_inside_positive_share", "FLAIR inside > 0"),
    ("flair_ring_negative_share", "FLAIR ring < 0"),
    ("mprage_inside_positive_share", "MPRAGE inside > 0"),
    ("flair_peak_inside_share", "FLAIR peak inside"),
    ("flair_peak_kruskal_p", "peak TP/FP/FN p"),
    ("fp_on_mimics", "FP on mimics"),
    ("mimics", "mimics"),
    ("synthetic_detection_rate", "synthetic found"),
    ("synthetic_half_detected_mm3", "synthetic 50 % at (mm3)"),
)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def markdown_table(summary: Sequence[dict]) -> str:
    """Return the headline table as Markdown, with the anchor's reference row."""
    head = "| " + " | ".join(t for _, t in TABLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(TABLE_COLUMNS)]
    for row in summary:
        lines.append("| " + " | ".join(_cell(row.get(k)) for k, _ in TABLE_COLUMNS) + " |")
    anchor = {"model": "anchor (real MRI)", "context_median_mm": f"~{ANCHOR_CONTEXT_MM:g} (U-Net, nnU-Net) / ~14 (Swin)"}
    lines.append("| " + " | ".join(_cell(anchor.get(k)) for k, _ in TABLE_COLUMNS) + " |")
    return "\n".join(lines) + "\n"
