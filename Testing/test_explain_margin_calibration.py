"""Margin calibration: the margin -> fidelity curve against whole-volume maps, the rule that picks a margin, configs."""

from __future__ import annotations

import numpy as np
import pytest

from explain_fixtures import box_mask, synthetic_image, tiny_model, unit_geometry
from LesionXAILib.errors import ModelLoadError, ParameterError
from LesionXAILib.explain import ExplainSettings, SmoothGrad, explain_instance
from LesionXAILib.explain.margin_calibration import (
    MarginCalibration,
    MarginFidelity,
    calibrate_margin,
    calibrated_config,
    pearson_r,
    pick_lesions,
)
from LesionXAILib.explain.region import explain_box
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.progress import CancelToken

SHAPE = (22, 24, 26)
MARGINS = (0.0, 2.0, 4.0, 8.0)


def _lesions() -> list[np.ndarray]:
    return [box_mask(SHAPE, (9, 10, 8), (11, 12, 10)), box_mask(SHAPE, (12, 6, 15), (13, 8, 19))]


@pytest.mark.parametrize("aggregation", ["sum", "max"])
def test_curve_matches_a_direct_comparison_with_whole_volume_maps(aggregation):
    model = tiny_model(seed=31)
    image, geo = synthetic_image(SHAPE, seed=32), unit_geometry(SHAPE)
    masks = _lesions()
    seen = []
    cal = calibrate_margin(model, image, masks, geo, aggregation, MARGINS, samples=2, seed=5,
                           progress=lambda f, m: seen.append(f))  # fmt: skip
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    assert len(cal.rows) == len(masks) * len(MARGINS) and cal.margins == list(MARGINS)
    sg = SmoothGrad(model)
    kw = dict(samples=2, seed=5, aggregation=aggregation, spacing=geo)
    for n, mask in enumerate(masks):
        # explanations hold float32 maps: compare at that precision
        ref = sg.attribute(image, mask, full_volume=True, **kw).numpy().astype(np.float32)
        for m in MARGINS:
            row = next(r for r in cal.rows if r.lesion == n + 1 and r.margin_mm == m)
            roi = sg.attribute(image, mask, margin_mm=m, **kw).numpy().astype(np.float32)
            assert row.voxels == mask.sum()
            assert row.pearson_r == pytest.approx(np.corrcoef(ref.ravel(), roi.ravel())[0, 1], abs=1e-9)
            assert row.rel_l2 == pytest.approx(np.linalg.norm(roi - ref) / np.linalg.norm(ref), rel=1e-6, abs=1e-9)
            if aggregation == "sum":  # captured: the reference's |attribution| inside the crop
                box = explain_box(mask, (1.0, 1.0, 1.0), m, model.size_divisor)
                inside = np.zeros(SHAPE, bool)
                inside[box.slices] = True
                assert row.captured == pytest.approx(np.abs(ref[:, inside]).sum() / np.abs(ref).sum(), rel=1e-6)
            if np.array_equal(roi, ref):
                assert row.pearson_r == pytest.approx(1.0) and row.inside_error < 1e-6 and row.ring_error < 1e-6
    # TinyNet reaches 6 voxels: the widest margin is exact, the narrowest is not
    widest = [r for r in cal.rows if r.margin_mm == 8.0]
    assert all(r.pearson_r == pytest.approx(1.0, abs=1e-9) and r.captured == pytest.approx(1.0) for r in widest)
    assert min(r.captured for r in cal.rows if r.margin_mm == 0.0) < 0.99
    # the chosen margin is the smallest from which on every lesion meets both bounds
    ok = [all(r.pearson_r >= cal.min_r and r.captured >= cal.min_captured for r in cal.rows if r.margin_mm == m) for m in MARGINS]
    expected = next(m for i, m in enumerate(MARGINS) if all(ok[i:]))
    assert cal.margin_mm == expected
    curve = cal.curve()
    assert [c["margin_mm"] for c in curve] == list(MARGINS)
    assert curve[0]["min_captured"] == min(r.captured for r in cal.rows if r.margin_mm == 0.0)
    assert cal.to_dict()["margin_mm"] == expected and len(cal.to_dict()["rows"]) == len(cal.rows)


def _row(margin: float, r: float, captured: float, lesion: int = 1) -> MarginFidelity:
    return MarginFidelity(lesion, 10, margin, r, captured, 0.0, 0.0, 0.0, 1000, 0.1, 1.0)


def test_a_margin_counts_only_if_every_larger_margin_passes_too():
    cal = MarginCalibration("sum", 2, 0, 0.995, 0.98)
    cal.rows = [_row(4, 0.999, 0.99), _row(6, 0.99, 0.97), _row(8, 0.999, 0.985), _row(12, 1.0, 0.999),
                _row(8, 0.999, 0.975, lesion=2), _row(12, 1.0, 0.999, lesion=2)]  # fmt: skip
    assert cal.margin_mm == 12.0  # 4 mm passes alone, 6 mm fails; 8 mm fails on lesion 2
    cal.rows = [r for r in cal.rows if r.lesion == 1]
    assert cal.margin_mm == 8.0
    cal.rows = [_row(4, 0.9, 0.9)]
    assert cal.margin_mm is None


def test_calibrated_config_sets_the_margins_and_explanations_use_them():
    cfg = ModelConfig(name="m")

    def cal(aggregation: str, margin: float) -> MarginCalibration:
        c = MarginCalibration(aggregation, 2, 0, 0.995, 0.98)
        c.rows = [_row(margin - 2, 0.9, 0.9), _row(margin, 0.999, 0.99)]
        return c

    out = calibrated_config(cfg, [cal("sum", 8.0), cal("max", 6.0), cal("mean", 10.0)])
    assert out.explain_margin_mm == 10.0 and out.explain_voxel_margin_mm == 6.0  # sum and mean share the larger
    assert ModelConfig.from_dict(out.to_dict()) == out
    failed = MarginCalibration("max", 2, 0, 0.995, 0.98)
    failed.rows = [_row(4, 0.9, 0.9)]
    with pytest.raises(ParameterError, match="larger margins"):
        calibrated_config(cfg, [failed])
    with pytest.raises(ModelLoadError, match="explain_margin_mm"):
        ModelConfig(explain_margin_mm=-1.0)
    # a calibrated model's explanations run on its margin
    model = tiny_model(seed=31)
    image, geo = synthetic_image(SHAPE, seed=32), unit_geometry(SHAPE)
    mask = _lesions()[0]
    calibrated = LesionModel(model.network, model.config.replace(explain_margin_mm=2.0)).eval()
    e = explain_instance(calibrated, image, mask, geo, ExplainSettings(methods=("gradient",)))
    assert e.settings.roi_margin_mm == 2.0
    assert e.box == explain_instance(model, image, mask, geo, ExplainSettings(methods=("gradient",), roi_margin_mm=2.0)).box


def test_pick_lesions_spreads_over_sizes_and_respects_the_voxel_limit():
    masks = [np.zeros(SHAPE, bool) for _ in range(5)]
    for n, size in enumerate([30, 5, 80, 12, 50]):
        masks[n].flat[:size] = True
    assert pick_lesions(masks, 3) == [0, 1, 2]  # smallest (5), median (30), largest (80)
    assert pick_lesions(masks, 2, max_voxels=40) == [0, 1]  # 5 and 30
    assert pick_lesions(masks, 10) == [0, 1, 2, 3, 4]
    assert pick_lesions(masks, 2, max_voxels=1) == []


def test_bad_input_and_cancel_are_clear():
    model = tiny_model(seed=31)
    image, geo = synthetic_image(SHAPE, seed=32), unit_geometry(SHAPE)
    with pytest.raises(ParameterError, match="no lesion"):
        calibrate_margin(model, image, [], geo)
    with pytest.raises(ParameterError, match="non-empty"):
        calibrate_margin(model, image, [np.zeros(SHAPE, bool)], geo)
    with pytest.raises(ParameterError, match="aggregation"):
        calibrate_margin(model, image, _lesions(), geo, "median")
    with pytest.raises(ParameterError, match="margins"):
        calibrate_margin(model, image, _lesions(), geo, margins_mm=(-1.0, 2.0))
    token = CancelToken()
    token.cancel()
    from LesionXAILib.errors import Cancelled

    with pytest.raises(Cancelled):
        calibrate_margin(model, image, _lesions(), geo, margins_mm=(2.0,), cancel=token)


def test_pearson_r():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(50), rng.standard_normal(50)
    assert pearson_r(a, b) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert pearson_r(np.ones(4), np.ones(4)) == 1.0 and pearson_r(np.ones(4), np.zeros(4)) == 0.0
