"""``lesionxai study`` on a tiny setting: rows per lesion, mimic FPs, summary against hand-computed values, outputs written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LesionXAILib.cli.main import main
from LesionXAILib.errors import ParameterError
from LesionXAILib.study import StudySettings
from LesionXAILib.study.run import StudyResult, peak_location
from LesionXAILib.study.summary import context_curve, summarise


def test_peak_location_classifies_inside_ring_and_outside():
    lesion = np.zeros((9, 9, 9), bool)
    lesion[4, 4, 4] = True
    a = np.zeros((9, 9, 9), np.float32)
    a[4, 4, 6] = -5.0  # 2 mm away: the 1-3 mm ring, sign kept
    peak = peak_location(a, lesion, (1.0, 1.0, 1.0), (1.0, 3.0))
    assert peak == {"region": "ring", "distance_mm": 2.0, "value": -5.0}
    a[0, 0, 0] = 9.0
    assert peak_location(a, lesion, (1.0, 1.0, 1.0), (1.0, 3.0))["region"] == "outside"
    a[4, 4, 4] = -10.0
    assert peak_location(a, lesion, (1.0, 1.0, 1.0), (1.0, 3.0))["region"] == "inside"


def test_context_curve_and_summary_from_rows():
    rows = [
        {"model": "m", "status": "TP", "context_needed_mm": 0.0, "context_beyond_max": False, "context_status": "detected_without_context",
         "flair_inside_mean": 2.0, "flair_ring_mean": -1.0, "flair_inside_peak": 5.0, "flair_peak_region": "inside"},
        {"model": "m", "status": "TP", "context_needed_mm": 6.0, "context_beyond_max": False, "context_status": "needs_context",
         "flair_inside_mean": 1.0, "flair_ring_mean": 0.5, "flair_inside_peak": 3.0, "flair_peak_region": "ring"},
        {"model": "m", "status": "FP", "context_needed_mm": None, "context_beyond_max": True, "context_status": "needs_context",
         "flair_inside_mean": 0.5, "flair_ring_mean": 0.1, "flair_inside_peak": 1.0, "flair_peak_region": "inside"},
        {"model": "m", "status": "FN", "context_needed_mm": None, "context_beyond_max": False, "context_status": "not_detected"},
    ]  # fmt: skip
    # detected lesions: 0, 6 and beyond the largest radius -> shares 1/3 at 0..5 mm, 2/3 from 6 mm on
    assert context_curve(rows, [0.0, 5.0, 6.0, 15.0]) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    result = StudyResult(StudySettings(seeds=(1,)), {"m": "m"}, rows, [
        {"model": "m", "seed": 1, "dice": 0.5, "tp": 2, "fp": 1, "fn": 1, "gt_lesions": 3, "mimics": 4, "fp_on_mimics": 1, "analysed": 4}])
    row = summarise(result)[0]
    assert row["context_median_mm"] == 3.0 and row["context_beyond_max"] == 1
    assert row["flair_inside_positive_share"] == 1.0 and row["flair_ring_negative_share"] == 0.5
    assert row["flair_peak_inside_share"] == 0.5 and row["fp_on_mimics"] == 1


def test_study_settings_refuse_training_seeds():
    with pytest.raises(ParameterError, match="held-out"):
        StudySettings(seeds=(10001,))


def test_study_command_on_a_tiny_cohort(tmp_path):
    out = tmp_path / "study"
    rc = main(["-q", "study", "--models", "unet", "--out", str(out), "--seeds", "300", "--fov", "64", "64", "64",
               "--lesions", "3", "--method", "gradient", "--max-radius", "3", "--max-lesions", "3"])  # fmt: skip
    assert rc == 0
    for name in ("lesions.csv", "subjects.csv", "summary.json", "summary.md", "study.html", "context_curve.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["summary"]
    assert row["model"] == "unet" and row["lesions_analysed"] >= 1
    assert row["mimics"] > 0 and 0 <= row["fp_on_mimics"] <= row["fp"]
    assert "~7" in (out / "summary.md").read_text()


def test_figures_with_several_lesions_per_model(tmp_path):
    from LesionXAILib.study.figures import write_figures

    rows = [{"model": m, "status": s, "context_needed_mm": float(c), "context_beyond_max": False, "context_status": "needs_context",
             "flair_inside_mean": 1.0 + c, "flair_ring_mean": -0.5, "mprage_inside_mean": 0.2, "mprage_ring_mean": 0.1,
             "flair_inside_peak": 2.0 + c} for m in ("a", "b") for s, c in (("TP", 1), ("TP", 3), ("FP", 5), ("FN", 0))]  # fmt: skip
    result = StudyResult(StudySettings(seeds=(1,)), {"a": "a", "b": "b"}, rows, [])
    paths = write_figures(result, tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths.values())
