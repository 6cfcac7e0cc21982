"""Cohort statistics: multiple-comparison corrections against hand computations, group tests against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from LesionXAILib.cohort.p_adjust import adjust, benjamini_hochberg, holm
from LesionXAILib.cohort.statistics import (
    context_counts,
    group_statistics,
    mann_whitney,
    metric_variables,
    saliency_variables,
)
from LesionXAILib.errors import ParameterError

P = [0.01, 0.04, 0.03, 0.005]


def test_holm_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    np.testing.assert_allclose(holm(P), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    np.testing.assert_allclose(holm([0.02]), [0.02])


def test_benjamini_hochberg_by_hand_and_against_scipy():
    # p(j) m / j: 0.005*4/1 = 0.02, 0.01*4/2 = 0.02, 0.03*4/3 = 0.04, 0.04*4/4 = 0.04 (running min from the top)
    np.testing.assert_allclose(benjamini_hochberg(P), [0.02, 0.04, 0.04, 0.02])
    np.testing.assert_allclose(benjamini_hochberg([0.01, 0.02, 0.5]), [0.03, 0.03, 0.5])
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, 25) ** 2
    np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12)


def test_corrections_skip_untested_entries_and_check_inputs():
    out = adjust([0.01, float("nan"), 0.04], "holm")
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.04])  # m = 2, the NaN does not count
    assert np.isnan(adjust([float("nan")], "bh")).all()
    with pytest.raises(ParameterError):
        adjust([1.5], "holm")
    with pytest.raises(ParameterError):
        adjust([0.1], "bonferroni")


def _rows():
    rng = np.random.default_rng(0)
    rows = []
    for status, shift, n in (("TP", 1.0, 12), ("FP", 0.0, 9), ("FN", -0.5, 5)):
        for k in range(n):
            rows.append({
                "status": status,
                "smoothgrad_flair_inside_peak": shift + rng.normal(),
                "smoothgrad_flair_inside_mean": shift + rng.normal(),
                "smoothgrad_flair_ring_mean": rng.normal(),
                "gradcampp_inside_peak": rng.normal(),
                "gradcampp_inside_mean": None if k == 0 else rng.normal(),
                "gradcampp_ring_mean": rng.normal(),
                "context_needed_mm": None if status == "FN" else float(k % 4),
                "context_status": "not_detected" if status == "FN" else "needs_context",
                "context_needed_beyond_max_radius": False,
                "smoothgrad_deletion_auc": rng.uniform(),
                "smoothgrad_flair_ap": rng.uniform(),
                "infidelity_seconds": 0.1,
            })  # fmt: skip
    return rows


def test_group_statistics_match_scipy_and_correct_each_family():
    rows = _rows()
    s = group_statistics(rows, correction="holm")
    assert s["groups"] == {"TP": 12, "FP": 9, "FN": 5}
    names = [v["variable"] for v in s["variables"]]
    assert names[:3] == ["smoothgrad_flair_inside_peak", "smoothgrad_flair_inside_mean", "smoothgrad_flair_ring_mean"]
    assert names[-1] == "context_needed_mm" and len(names) == 7

    peak = s["variables"][0]
    groups = {g: np.array([r["smoothgrad_flair_inside_peak"] for r in rows if r["status"] == g]) for g in ("TP", "FP", "FN")}
    assert peak["kruskal"]["p"] == pytest.approx(stats.kruskal(*groups.values()).pvalue)
    assert peak["groups"]["TP"]["median"] == pytest.approx(np.median(groups["TP"]))
    raw = [stats.mannwhitneyu(groups[a], groups[b]).pvalue for a, b in (("TP", "FP"), ("TP", "FN"), ("FP", "FN"))]
    np.testing.assert_allclose([p["p"] for p in peak["pairwise"]], raw)
    np.testing.assert_allclose([p["p_adjusted"] for p in peak["pairwise"]], holm(raw))
    kw_raw = [v["kruskal"]["p"] for v in s["variables"]]
    np.testing.assert_allclose([v["kruskal"]["p_adjusted"] for v in s["variables"]], holm([np.nan if p is None else p for p in kw_raw]))

    missing = next(v for v in s["variables"] if v["variable"] == "gradcampp_inside_mean")
    assert missing["groups"]["TP"]["n"] == 11  # the None is dropped, not counted as 0
    context = s["variables"][-1]
    assert context["groups"]["FN"]["n"] == 0 and context["kruskal"]["groups"] == ["TP", "FP"]
    assert all(p["p"] is None for p in context["pairwise"] if "FN" in (p["a"], p["b"]))
    assert context_counts(rows, ["TP", "FN"])["FN"] == {"probed": 5, "finite": 0, "beyond_max_radius": 0, "not_detected": 5}
    assert set(metric_variables(rows)) == {"smoothgrad_deletion_auc", "smoothgrad_flair_ap"}
    assert group_statistics(rows, correction="bh")["variables"][0]["pairwise"][0]["p_adjusted"] == pytest.approx(
        benjamini_hochberg(raw)[0]
    )


def test_mann_whitney_effect_size_by_counting_pairs():
    a = np.array([1.0, 4.0, 5.0, 7.0])
    b = np.array([2.0, 3.0, 3.5])
    greater = sum(x > y for x in a for y in b)
    less = sum(x < y for x in a for y in b)
    r = mann_whitney(a, b)
    assert r["U"] == greater
    assert r["effect"] == pytest.approx((greater - less) / (a.size * b.size))
    assert mann_whitney(a[:1], b)["p"] is None
    assert mann_whitney(np.ones(3), np.ones(4))["reason"] == "all values identical"


def test_saliency_variables_follow_the_row_columns():
    rows = [{"status": "TP", "gradient_flair_inside_peak": 1, "gradient_flair_ring_mean": 0, "gradient_flair_inside_mean": 2,
             "gradient_mprage_inside_peak": 3}]  # fmt: skip
    assert saliency_variables(rows) == [
        "gradient_flair_inside_peak", "gradient_flair_inside_mean", "gradient_flair_ring_mean", "gradient_mprage_inside_peak",
    ]  # fmt: skip
