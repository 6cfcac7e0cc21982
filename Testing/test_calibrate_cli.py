"""``lesionxai calibrate`` end to end: curves, a calibrated checkpoint, and explanations that use its margins."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from explain_fixtures import saved_subject
from LesionXAILib.cli.main import main
from LesionXAILib.model_loading import load_model

SHAPE = (24, 28, 24)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return saved_subject(tmp_path_factory.mktemp("calibrate_cli"), SHAPE)


def _digest(paths) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_calibrate_writes_curves_and_a_model_whose_explanations_use_its_margins(subject, tmp_path):
    d, model_path, threshold = subject
    inputs = [d / "flair.nii.gz", d / "t1.nii.gz", model_path]
    before = _digest(inputs)
    common = ["--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--threshold", f"{threshold}", "--min-size", "1"]
    out = tmp_path / "cal"
    code = main(["-q", "calibrate", *common, "--out", str(out), "--model", str(model_path), "--aggregations", "sum,max",
                 "--lesions", "2", "--max-voxels", "40", "--margins", "0", "2", "4", "16", "--samples", "1"])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "margin_calibration.json").read_text())
    assert set(doc["calibrations"]) == {"sum", "max"}
    chosen = {}
    for aggregation, cal in doc["calibrations"].items():
        assert [c["margin_mm"] for c in cal["curve"]] == [0, 2, 4, 16]
        assert len(cal["rows"]) == 4 * len(cal["instances"]) and 1 <= len(cal["instances"]) <= 2
        widest = cal["curve"][-1]  # 16 mm holds this 24-voxel subject whole: exact
        assert widest["min_r"] == pytest.approx(1.0, abs=1e-6) and widest["min_captured"] == pytest.approx(1.0)
        passing = [c["margin_mm"] for c in cal["curve"] if c["min_r"] >= 0.995 and c["min_captured"] >= 0.98]
        assert cal["margin_mm"] in passing
        chosen[aggregation] = cal["margin_mm"]
    calibrated = load_model(out / "model-calibrated.pt")
    assert calibrated.config.explain_margin_mm == chosen["sum"]
    assert calibrated.config.explain_voxel_margin_mm == chosen["max"]
    assert json.loads((out / "model_config.json").read_text())["explain_voxel_margin_mm"] == chosen["max"]
    for key, value in load_model(model_path).network.state_dict().items():
        torch.testing.assert_close(calibrated.network.state_dict()[key], value)
    assert _digest(inputs) == before  # inputs untouched
    # explanations of the calibrated model run on its margin without being told
    for aggregation in ("sum", "max"):
        exp = tmp_path / f"explain_{aggregation}"
        code = main(["-q", "explain", *common, "--out", str(exp), "--model", str(out / "model-calibrated.pt"),
                     "--methods", "gradient", "--aggregation", aggregation, "--instances", "1"])  # fmt: skip
        assert code == 0
        ex = json.loads((exp / "explanations.json").read_text())
        assert ex["settings"]["roi_margin_mm"] == chosen[aggregation]
        assert ex["margin_source"].startswith("calibrated")
        assert ex["instances"][0]["settings"]["roi_margin_mm"] == chosen[aggregation]


def test_calibrate_rejects_bad_options(subject, tmp_path):
    d, model_path, threshold = subject
    common = ["-q", "calibrate", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--model", str(model_path)]
    assert main([*common, "--out", str(tmp_path / "a"), "--aggregations", "median"]) == 2
    assert main([*common, "--out", str(tmp_path / "b"), "--lesions", "0"]) == 2
    # a threshold no voxel reaches: no lesion to measure on
    assert main([*common, "--out", str(tmp_path / "c"), "--threshold", "0.9999999"]) == 2
