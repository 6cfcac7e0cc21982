"""``lesionxai study`` on a tiny setting: rows per lesion, mimic FPs, summary against hand-computed values, outputs written."""

from __future__ import annotations

import csv
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
               "--lesions", "3", "--method", "gradient", "--max-radius", "3", "--max-lesions", "3", "--synthetic-positions", "2"])  # fmt: skip
    assert rc == 0
    for name in ("lesions.csv", "subjects.csv", "summary.json", "summary.md", "study.html", "context_curve.png",
                 "synthetic.csv", "synthetic_detection.png"):  # fmt: skip
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["summary"]
    assert row["model"] == "unet" and row["lesions_analysed"] >= 1
    assert row["mimics"] > 0 and 0 <= row["fp_on_mimics"] <= row["fp"]
    assert "~7" in (out / "summary.md").read_text()
    assert summary["settings"]["mimics"] is True and summary["settings"]["lookalikes"] is True
    # the synthetic-lesion curve: every size x contrast of the probe, on the first phantom, rates from the counts
    from LesionXAILib.probes.synthetic import DEFAULT_FLAIR_CONTRASTS, DEFAULT_VOLUMES_MM3

    with open(out / "synthetic.csv", newline="") as fh:
        synthetic = list(csv.DictReader(fh))
    assert len(synthetic) == len(DEFAULT_VOLUMES_MM3) * len(DEFAULT_FLAIR_CONTRASTS)
    assert {r["model"] for r in synthetic} == {"unet"} and {r["seed"] for r in synthetic} == {"300"}
    detected = sum(int(r["detected"]) for r in synthetic)
    trials = sum(int(r["trials"]) for r in synthetic)
    assert trials > 0 and all(float(r["detection_rate"]) == pytest.approx(int(r["detected"]) / int(r["trials"])) for r in synthetic if int(r["trials"]))
    assert row["synthetic_detection_rate"] == pytest.approx(detected / trials)


def test_figures_with_several_lesions_per_model(tmp_path):
    from LesionXAILib.study.figures import write_figures

    rows = [{"model": m, "status": s, "context_needed_mm": float(c), "context_beyond_max": False, "context_status": "needs_context",
             "flair_inside_mean": 1.0 + c, "flair_ring_mean": -0.5, "mprage_inside_mean": 0.2, "mprage_ring_mean": 0.1,
             "flair_inside_peak": 2.0 + c} for m in ("a", "b") for s, c in (("TP", 1), ("TP", 3), ("FP", 5), ("FN", 0))]  # fmt: skip
    result = StudyResult(StudySettings(seeds=(1,)), {"a": "a", "b": "b"}, rows, [])
    paths = write_figures(result, tmp_path)
    assert all(p.stat().st_size > 1000 for p in paths.values())


def test_synthetic_summaries_from_hand_made_rows():
    from LesionXAILib.study.synthetic import curve, detection_rate, smallest_detected_half

    rows = [{"model": "m", "volume_mm3": v, "flair_contrast": c, "trials": 4, "detected": d, "detection_rate": d / 4}
            for v, c, d in ((5.0, 1.4, 0), (5.0, 1.8, 1), (20.0, 1.4, 1), (20.0, 1.8, 3), (80.0, 1.4, 4), (80.0, 1.8, 4))]  # fmt: skip
    rows.append({"model": "other", "volume_mm3": 5.0, "flair_contrast": 1.4, "trials": 0, "detected": 0, "detection_rate": float("nan")})
    assert detection_rate(rows, "m") == pytest.approx(13 / 24)
    # 5 mm3: 1 of 8 found; 20 mm3: 4 of 8 = half -> the smallest volume found at least half the time
    assert smallest_detected_half(rows, "m") == 20.0
    assert detection_rate(rows, "other") is None and smallest_detected_half(rows, "other") is None
    assert curve(rows, "m", 1.8) == ([5.0, 20.0, 80.0], [0.25, 0.75, 1.0])
