"""``lesionxai explain`` end to end on a small synthetic subject with a tiny saved network."""

from __future__ import annotations

import json

import pytest
import SimpleITK as sitk

from explain_fixtures import saved_subject
from LesionXAILib.cli.main import main

SHAPE = (24, 28, 24)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return saved_subject(tmp_path_factory.mktemp("explain_cli"), SHAPE)


def test_explain_cli_writes_maps_segmentation_and_statistics(subject, tmp_path):
    d, model_path, threshold = subject
    out = tmp_path / "out"
    code = main([
        "-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(out),
        "--model", str(model_path), "--threshold", f"{threshold}", "--min-size", "1",
        "--methods", "smoothgrad,gradcampp", "--samples", "2", "--margin-mm", "6", "--seed", "3", "--instances", "2,1",
    ])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "explanations.json").read_text())
    seg = json.loads((out / "instances.json").read_text())
    assert len(seg["instances"]) >= 2
    ids = [1, 2]
    assert [r["instance_id"] for r in doc["instances"]] == ids
    assert doc["settings"]["samples"] == 2 and doc["settings"]["seed"] == 3
    for r in doc["instances"]:
        folder = out / f"instance_{r['instance_id']}"
        for key in ("smoothgrad_flair", "smoothgrad_mprage", "gradcampp"):
            img = sitk.ReadImage(str(folder / f"{key}.nii.gz"))
            assert img.GetSpacing() == pytest.approx((1.0, 1.0, 1.2))
            assert sitk.GetArrayFromImage(img).shape == SHAPE
        assert {"inside_sum", "inside_peak", "ring_sum", "ring_peak", "outside_sum"} <= set(r["statistics"]["smoothgrad_flair"])
        assert 0 <= r["statistics"]["flair_share"]["smoothgrad"] <= 1
    assert (out / "instances.nii.gz").exists() and (out / "probability.nii.gz").exists()
    assert (out / "explanations.csv").read_text().count("\n") == 3 * len(ids) + 1


def test_explain_cli_rejects_unknown_instances_and_methods(subject, tmp_path, capsys):
    d, model_path, threshold = subject
    base = ["-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(tmp_path / "o"),
            "--model", str(model_path), "--threshold", f"{threshold}"]  # fmt: skip
    assert main(base + ["--instances", "999"]) == 2
    assert "lesion instance 999 does not exist" in capsys.readouterr().err
    assert main(base + ["--instances", "3,x"]) == 2
    assert "'x' is not an instance id" in capsys.readouterr().err
    assert main(base + ["--methods", "smoothgrad,shap"]) == 2
    assert "unknown explanation method" in capsys.readouterr().err


def test_explain_cli_auto_calibrates_an_uncalibrated_model_and_records_each_lesions_fidelity(subject, tmp_path):
    import csv

    d, model_path, threshold = subject
    out = tmp_path / "auto"
    code = main([
        "-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(out),
        "--model", str(model_path), "--threshold", f"{threshold}", "--min-size", "1",
        "--methods", "gradient", "--instances", "1",
    ])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "explanations.json").read_text())
    cal = json.loads((out / "margin_calibration.json").read_text())
    assert doc["margin_source"] == "auto-calibrated" and cal["sum"]["calibration"]["criterion"] == {"min_r": 0.995, "min_captured": 0.98}
    f = doc["instances"][0]["fidelity"]
    assert f["obtained"] in ("verified", "whole-volume") and f["passes"] and f["captured"] >= 0.98 and f["pearson_r"] >= 0.995
    assert f["checks"][0]["margin_mm"] == cal["sum"]["margin_mm"] or cal["sum"]["margin_mm"] is None
    rows = list(csv.DictReader(open(out / "explanations.csv")))
    assert {r["fidelity"] for r in rows} == {f["obtained"]} and all(float(r["captured"]) >= 0.98 for r in rows)
