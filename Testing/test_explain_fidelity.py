"""The fidelity guard on a network whose reach exceeds its (wrongly) calibrated margin.

References are computed here, independently of the engine: plain torch autograd on the whole volume
(sum target, and a per-voxel loop for max aggregation).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch import nn

from explain_fixtures import _randomise_norm, box_mask, synthetic_image, unit_geometry
from LesionXAILib.explain import ExplainSettings, explain_instance
from LesionXAILib.explain import fidelity
from LesionXAILib.explain.region import explain_box
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig

SHAPE = (40, 40, 40)
LESION = ((18, 19, 18), (21, 21, 21))  # 3 x 2 x 3 voxels in the middle


class WideNet(nn.Module):
    """Two dilated convolutions (dilation 4) around one stride-2 level: reach about 12 voxels each way."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.PReLU())
        self.wide = nn.Sequential(
            nn.Conv3d(4, 4, 3, padding=4, dilation=4), nn.PReLU(), nn.Conv3d(4, 4, 3, padding=4, dilation=4), nn.PReLU()
        )
        self.down = nn.Sequential(nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.BatchNorm3d(6), nn.PReLU())
        self.up = nn.ConvTranspose3d(6, 4, 2, stride=2)
        self.head = nn.Conv3d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.wide(self.enc(x))
        return self.head(torch.cat([a, self.up(self.down(a))], 1))


def wide_model(margin_mm=None, voxel_margin_mm=None) -> LesionModel:
    """Return the WideNet as a LesionModel in float64, optionally with (too small) calibrated margins."""
    torch.manual_seed(11)
    cfg = ModelConfig(name="wide-net", channels=(4, 6), strides=(2,), out_channels=1, head="sigmoid", lesion_index=0,
                      cam_layer="down", explain_margin_mm=margin_mm, explain_voxel_margin_mm=voxel_margin_mm)  # fmt: skip
    net = WideNet()
    _randomise_norm(net, 11)
    return LesionModel(net.to(torch.float64), cfg).eval()


def whole_volume_gradient(model: LesionModel, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return d(sum of lesion logits over mask)/dx on the whole volume, plain autograd."""
    x = torch.from_numpy(image)[None].clone().requires_grad_(True)
    z = model(x)[0, 0]
    (g,) = torch.autograd.grad(z[torch.from_numpy(mask)].sum(), x)
    return g[0].numpy()


def whole_volume_max_gradient(model: LesionModel, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return the max-aggregated gradient (largest |dz_v/dx| over lesion voxels v, sign kept) by a per-voxel loop."""
    x = torch.from_numpy(image)[None].clone().requires_grad_(True)
    z = model(x)[0, 0]
    best = np.zeros_like(image)
    for v in np.argwhere(mask):
        (g,) = torch.autograd.grad(z[tuple(v)], x, retain_graph=True)
        g = g[0].numpy()
        larger = np.abs(g) > np.abs(best)
        best[larger] = g[larger]
    return best


def r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def subject():
    image = synthetic_image(SHAPE, seed=5)
    return image, unit_geometry(SHAPE), box_mask(SHAPE, *LESION)


def test_the_network_reaches_beyond_the_margin_and_an_unchecked_crop_loses_attribution(subject):
    image, geo, mask = subject
    model = wide_model(margin_mm=3.0)
    ref = whole_volume_gradient(model, image, mask)
    plain = explain_instance(model, image, mask, geo, ExplainSettings(methods=("gradient",), fidelity_check=False))
    got = np.stack([plain.maps["gradient_flair"], plain.maps["gradient_mprage"]])
    box = explain_box(mask, geo.spacing_kji, 3.0, model.size_divisor)
    inside = np.zeros(SHAPE, bool)
    inside[box.slices] = True
    captured = np.abs(ref[:, inside]).sum() / np.abs(ref).sum()
    assert captured < 0.9 and r(got, ref) < 0.99  # the calibrated 3 mm is wrong for this network
    assert plain.fidelity["obtained"] == "calibrated" and plain.fidelity["flag"]  # and the map says it is unchecked


@pytest.mark.parametrize("methods", [("gradient",), ("gradient", "smoothgrad", "gradcam")])
def test_guard_widens_the_margin_until_the_maps_match_the_whole_volume(subject, methods):
    image, geo, mask = subject
    model = wide_model(margin_mm=3.0)
    e = explain_instance(model, image, mask, geo, ExplainSettings(methods=methods, samples=2))
    f = e.fidelity
    ref = whole_volume_gradient(model, image, mask)
    got = np.stack([e.maps["gradient_flair"], e.maps["gradient_mprage"]])
    assert r(got, ref) >= 0.995
    # the crop the maps were computed on holds >= 98 % of the whole-volume |gradient|, measured here
    if f["obtained"] == "verified":
        box = explain_box(mask, geo.spacing_kji, f["margin_mm"], model.size_divisor)
        inside = np.zeros(SHAPE, bool)
        inside[box.slices] = True
        assert np.abs(ref[:, inside]).sum() / np.abs(ref).sum() >= 0.98
        assert f["margin_mm"] > 3.0 and f["note"].startswith("margin widened from 3 mm")
        assert e.settings.roi_margin_mm == f["margin_mm"]
    else:
        assert f["obtained"] == "whole-volume" and e.settings.full_volume
    assert f["passes"] and not f["flag"] and f["captured"] >= 0.98 and f["pearson_r"] >= 0.995
    assert [c["passes"] for c in f["checks"]] == [False] * (len(f["checks"]) - 1) + [f["obtained"] == "verified"]
    assert f["checks"][0]["margin_mm"] == 3.0 and f["checks"][0]["captured"] < 0.98
    if "gradcam" in methods:
        assert 0.98 <= f["cam_captured"] <= 1.0


def test_check_figures_equal_a_direct_comparison_when_the_reference_is_the_whole_volume(subject):
    image, geo, mask = subject
    model = wide_model()
    # 8 mm: the reference crop (16 mm) would hold most of the 40^3 volume, so it is the whole volume
    check = fidelity.check_crop(model, image, mask, geo.spacing_kji, 8.0)
    assert check["whole_volume_reference"]
    ref = whole_volume_gradient(model, image, mask)
    box = explain_box(mask, geo.spacing_kji, 8.0, model.size_divisor)
    x = torch.from_numpy(np.ascontiguousarray(box.extract(image)))[None].clone().requires_grad_(True)
    z = model(x)[0, 0]
    (g,) = torch.autograd.grad(z[torch.from_numpy(np.ascontiguousarray(box.extract(mask)))].sum(), x)
    crop = box.insert(g[0])
    inside = np.zeros(SHAPE, bool)
    inside[box.slices] = True
    assert check["captured"] == pytest.approx(np.abs(ref[:, inside]).sum() / np.abs(ref).sum(), rel=1e-9)
    assert check["pearson_r"] == pytest.approx(r(crop, ref), abs=1e-9)


def test_first_checks_batched_by_crop_shape_equal_the_per_lesion_checks(subject):
    from LesionXAILib.explain import grouping

    image, geo, _ = subject
    masks = [box_mask(SHAPE, *LESION), box_mask(SHAPE, (8, 8, 8), (10, 10, 10)), box_mask(SHAPE, (28, 10, 26), (30, 12, 28)),
             box_mask(SHAPE, (10, 26, 12), (13, 28, 14))]  # fmt: skip
    model = wide_model(margin_mm=3.0)
    boxes = [explain_box(m, geo.spacing_kji, 3.0, model.size_divisor) for m in masks]
    assert len({b.shape for b in boxes}) < len(boxes)  # some crops share a shape, hence a batched pass
    layer = ("down", model.network.down)
    settings = ExplainSettings(methods=("gradient",), roi_margin_mm=3.0)
    memo = grouping.prefill_checks(model, image, masks, geo.spacing_kji, settings, "chosen", layer, None)
    assert len(memo) == len(masks)
    for m in masks:
        want_margin, want = fidelity.checked_fidelity(model, image, m, geo.spacing_kji, 3.0, "chosen", "sum", layer[1], None, "down")
        got_margin, got = fidelity.checked_fidelity(model, image, m, geo.spacing_kji, 3.0, "chosen", "sum", layer[1], memo, "down")
        assert got_margin == want_margin and got["obtained"] == want["obtained"]
        for key in ("captured", "pearson_r", "cam_captured"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12)
        assert [(c["margin_mm"], c["passes"]) for c in got["checks"]] == [(c["margin_mm"], c["passes"]) for c in want["checks"]]
        for a, b in zip(got["checks"], want["checks"]):
            assert a["captured"] == pytest.approx(b["captured"], rel=1e-9) and a["pearson_r"] == pytest.approx(b["pearson_r"], rel=1e-9)
        assert got["check_seconds"] > 0 and "prefilled" not in got
        assert fidelity.checked_fidelity(model, image, m, geo.spacing_kji, 3.0, "chosen", "sum", layer[1], memo, "down")[1]["check_seconds"] == 0.0


def test_guard_for_max_aggregation_matches_the_per_voxel_whole_volume_loop(subject):
    image, geo, _ = subject
    mask = box_mask(SHAPE, (19, 19, 19), (21, 20, 20))  # 2 voxels
    model = wide_model(voxel_margin_mm=2.0)
    e = explain_instance(model, image, mask, geo, ExplainSettings(methods=("gradient",), aggregation="max"))
    ref = whole_volume_max_gradient(model, image, mask)
    got = np.stack([e.maps["gradient_flair"], e.maps["gradient_mprage"]])
    assert e.fidelity["checks"][0]["margin_mm"] == 2.0 and not e.fidelity["checks"][0]["passes"]
    assert e.fidelity["passes"] and e.fidelity["checked_on"] == "2 lesion voxel(s)"
    assert r(got, ref) >= 0.995


def test_uncalibrated_model_is_measured_once_or_explained_on_the_whole_volume(subject, tmp_path, monkeypatch):
    image, geo, mask = subject
    monkeypatch.setenv("LESIONXAI_CACHE_DIR", str(tmp_path))
    fidelity.forget_memory()
    model = wide_model()
    # no margin up to 6 mm passes on this network: the calibration says so and the explanation is whole-volume
    monkeypatch.setattr(fidelity, "AUTO_MARGINS_MM", (2.0, 4.0, 6.0))
    e = explain_instance(model, image, mask, geo, ExplainSettings(methods=("gradient",)))
    record = json.loads((tmp_path / "margins" / f"{fidelity.model_fingerprint(model)}.json").read_text())
    assert record["sum"]["margin_mm"] is None and record["sum"]["calibration"]["curve"][-1]["min_captured"] < 0.98
    assert e.fidelity["obtained"] == "whole-volume" and e.settings.full_volume and e.fidelity["margin_source"] == "auto-calibrated"
    np.testing.assert_allclose(np.stack([e.maps["gradient_flair"], e.maps["gradient_mprage"]]),
                               whole_volume_gradient(model, image, mask), rtol=1e-6, atol=1e-12)  # fmt: skip
    fidelity.forget_memory()


def test_fidelity_appears_in_explanations_json_csv_and_the_report(subject, tmp_path):
    from LesionXAILib.explain.output import write_explanations
    from LesionXAILib.report.build import fidelity_line, fidelity_summary

    image, geo, mask = subject
    model = wide_model(margin_mm=3.0)
    settings = ExplainSettings(methods=("gradient", "gradcam"))
    checked = explain_instance(model, image, mask, geo, settings, instance_id=1)
    unchecked = explain_instance(model, image, mask, geo, settings.replace(fidelity_check=False), instance_id=2)

    class Result:  # what write_explanations reads of a segmentation result
        model_info = {"name": "wide-net"}
        geometry = geo
        instances = type("Instances", (), {"labels": mask.astype(np.int32)})  # hashed into the run's segmentation id

    write_explanations(tmp_path, [checked.to_dict(), unchecked.to_dict()], settings, Result(), "calibrated")
    doc = json.loads((tmp_path / "explanations.json").read_text())
    f1, f2 = doc["instances"][0]["fidelity"], doc["instances"][1]["fidelity"]
    assert f1["passes"] and f1["captured"] >= 0.98 and f1["pearson_r"] >= 0.995 and f1["flag"] == ""
    assert f2["obtained"] == "calibrated" and f2["flag"] == "not checked per lesion"
    rows = list(csv.DictReader(open(tmp_path / "explanations.csv")))
    by = {(r["id"], r["map"]): r for r in rows}
    assert float(by[("1", "gradient_flair")]["captured"]) == pytest.approx(f1["captured"], abs=1e-6)
    assert float(by[("1", "gradcam")]["captured"]) == pytest.approx(f1["cam_captured"], abs=1e-6)
    assert by[("1", "gradient_flair")]["fidelity"] == f1["obtained"] and by[("2", "gradcam")]["fidelity_flag"] == "not checked per lesion"
    assert 'data-fidelity="ok"' in fidelity_line(f1)
    assert ("captured" in fidelity_line(f1)) if f1["obtained"] == "verified" else ("whole volume (exact)" in fidelity_line(f1))
    assert 'data-fidelity="flagged"' in fidelity_line(f2) and "FLAGGED: not checked per lesion" in fidelity_line(f2)
    assert "1 flagged" in fidelity_summary([f1, f2])
