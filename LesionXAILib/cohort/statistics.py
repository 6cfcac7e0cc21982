"""Group statistics of a cohort: TP vs FP vs FN distributions of saliency and context needed.

For every variable (a column of instances.csv) and group (instance status), descriptive statistics
of the finite values; a Kruskal-Wallis test across the groups that have values; pairwise two-sided
Mann-Whitney U tests with the rank-biserial effect size r = 2U / (n1 n2) - 1 (P(a > b) - P(a < b)).
Multiple comparisons: the pairwise p-values of one variable form one family; the Kruskal-Wallis
p-values of all variables form another; each family is corrected with Holm (default) or
Benjamini-Hochberg (``cohort.p_adjust``). Tests need at least two values per group compared and
are skipped (reported with the reason) otherwise, or when every value is identical.

Context needed: only finite values enter the tests (lesions needing more than the largest radius,
and lesions not detected even with full context, are counted per group instead).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from LesionXAILib.cohort.p_adjust import adjust

GROUP_ORDER = ("TP", "FP", "FN", "predicted")
SALIENCY_STATISTICS = ("inside_peak", "inside_mean", "ring_mean")
CONTEXT_COLUMN = "context_needed_mm"
METRIC_SUFFIXES = ("infidelity_relative", "max_sensitivity", "deletion_auc", "insertion_auc", "ap", "ap_top_k",
                   "randomisation_spearman", "randomisation_spearman_abs", "randomisation_spearman_brain",
                   "randomisation_spearman_abs_brain")  # fmt: skip


def group_names(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the instance statuses present, in TP, FP, FN, predicted order."""
    present = {str(r.get("status")) for r in rows}
    return [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))


def saliency_variables(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the peak / inside / ring saliency columns per map present in the rows (e.g. smoothgrad_flair_inside_peak)."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    maps: list[str] = []
    for c in columns:
        for stat in SALIENCY_STATISTICS:
            if c.endswith("_" + stat) and c[: -len(stat) - 1] not in maps:
                maps.append(c[: -len(stat) - 1])
    return [f"{m}_{s}" for m in maps for s in SALIENCY_STATISTICS if f"{m}_{s}" in columns]


def metric_variables(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the explanation-quality columns present (per method / map)."""
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    return [c for c in columns if any(c.endswith("_" + s) for s in METRIC_SUFFIXES) and not c.endswith("_seconds")]


def finite_values(rows: Iterable[dict[str, Any]], column: str) -> np.ndarray:
    """Return the finite float values of ``column`` (missing, empty, None and non-finite dropped)."""
    vals = []
    for r in rows:
        v = r.get(column)
        if v is None or v == "":
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            vals.append(f)
    return np.asarray(vals, dtype=np.float64)


def describe(values: np.ndarray) -> dict[str, Any]:
    """Return n, median, quartiles, mean, sd, min and max of ``values`` (None where undefined)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"n": 0, "median": None, "q1": None, "q3": None, "mean": None, "sd": None, "min": None, "max": None}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": int(v.size), "median": float(med), "q1": float(q1), "q3": float(q3), "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if v.size > 1 else None, "min": float(v.min()), "max": float(v.max())}  # fmt: skip


def kruskal_wallis(samples: dict[str, np.ndarray]) -> dict[str, Any]:
    """Return the Kruskal-Wallis H test across groups with >= 2 values (p None with a reason if not testable)."""
    from scipy.stats import kruskal

    used = {g: v for g, v in samples.items() if v.size >= 2}
    if len(used) < 2:
        return {"groups": sorted(used), "H": None, "p": None, "reason": "fewer than two groups with >= 2 values"}
    allv = np.concatenate(list(used.values()))
    if np.all(allv == allv[0]):
        return {"groups": list(used), "H": None, "p": None, "reason": "all values identical"}
    res = kruskal(*used.values())
    return {"groups": list(used), "H": float(res.statistic), "p": float(res.pvalue), "reason": None}


def mann_whitney(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Return the two-sided Mann-Whitney U test of a vs b with the rank-biserial effect size."""
    from scipy.stats import mannwhitneyu

    if a.size < 2 or b.size < 2:
        return {"U": None, "p": None, "effect": None, "reason": "fewer than 2 values in a group"}
    if np.all(np.concatenate([a, b]) == a[0]):
        return {"U": None, "p": None, "effect": None, "reason": "all values identical"}
    res = mannwhitneyu(a, b, alternative="two-sided")
    u = float(res.statistic)
    return {"U": u, "p": float(res.pvalue), "effect": 2.0 * u / (a.size * b.size) - 1.0, "reason": None}


def variable_statistics(rows: Sequence[dict[str, Any]], column: str, groups: Sequence[str], correction: str) -> dict[str, Any]:
    """Return descriptive statistics per group, the Kruskal-Wallis test and corrected pairwise tests of one column."""
    samples = {g: finite_values((r for r in rows if str(r.get("status")) == g), column) for g in groups}
    pairs = []
    for g1, g2 in itertools.combinations(groups, 2):
        pairs.append({"a": g1, "b": g2, **mann_whitney(samples[g1], samples[g2])})
    adjusted = adjust([np.nan if p["p"] is None else p["p"] for p in pairs], correction) if pairs else []
    for p, q in zip(pairs, adjusted):
        p["p_adjusted"] = None if np.isnan(q) else float(q)
    return {
        "variable": column,
        "groups": {g: describe(samples[g]) for g in groups},
        "kruskal": kruskal_wallis(samples),
        "pairwise": pairs,
    }


def context_counts(rows: Sequence[dict[str, Any]], groups: Sequence[str]) -> dict[str, dict[str, int]]:
    """Return per group how many lesions have a finite context, need more than the largest radius, or are not detected."""
    out = {}
    for g in groups:
        rs = [r for r in rows if str(r.get("status")) == g]
        beyond = sum(1 for r in rs if str(r.get("context_needed_beyond_max_radius")).lower() in ("true", "1"))
        not_detected = sum(1 for r in rs if r.get("context_status") == "not_detected")
        probed = sum(1 for r in rs if r.get("context_status") not in (None, ""))
        out[g] = {"probed": probed, "finite": int(finite_values(rs, CONTEXT_COLUMN).size), "beyond_max_radius": beyond,
                  "not_detected": not_detected}  # fmt: skip
    return out


def group_statistics(
    rows: Sequence[dict[str, Any]], variables: Optional[Sequence[str]] = None, correction: str = "holm"
) -> dict[str, Any]:
    """Return the cohort's group statistics (see module docstring) as a JSON-serialisable dict."""
    groups = group_names(rows)
    if variables is None:
        variables = saliency_variables(rows) + ([CONTEXT_COLUMN] if any(CONTEXT_COLUMN in r for r in rows) else [])
    results = [variable_statistics(rows, v, groups, correction) for v in variables]
    kw = adjust([np.nan if r["kruskal"]["p"] is None else r["kruskal"]["p"] for r in results], correction) if results else []
    for r, q in zip(results, kw):
        r["kruskal"]["p_adjusted"] = None if np.isnan(q) else float(q)
    metrics = []
    for v in metric_variables(rows):
        samples = {g: finite_values((r for r in rows if str(r.get("status")) == g), v) for g in groups}
        metrics.append({"variable": v, "all": describe(finite_values(rows, v)), "groups": {g: describe(s) for g, s in samples.items()}})
    return {
        "groups": {g: sum(1 for r in rows if str(r.get("status")) == g) for g in groups},
        "correction": correction,
        "variables": results,
        "context": context_counts(rows, groups),
        "metrics": metrics,
    }
