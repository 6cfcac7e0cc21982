"""explain_instance(s): statistics, regions in mm, FN targets, progress/cancel, bad input, JSON and files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from explain_fixtures import box_mask, synthetic_image, tiny_unet, unit_geometry
from LesionXAILib.errors import Cancelled, InputImageError, InstanceError, ParameterError
from LesionXAILib.explain import (
    ExplainSettings,
    explain_instance,
    explain_instances,
    missed_lesion_targets,
)
from LesionXAILib.explain.statistics import lesion_regions, local_map_statistics, local_regions, map_statistics
from LesionXAILib.image_io import InputPair
from LesionXAILib.instances import extract_instances
from LesionXAILib.progress import CancelToken
from LesionXAILib.segmentation import SegmentationResult, SegmentationSettings

SHAPE = (24, 24, 24)


def test_ring_uses_physical_distance_with_anisotropic_spacing():
    shape = (12, 20, 20)
    mask = box_mask(shape, (5, 9, 9), (7, 11, 12))
    spacing_kji = (3.0, 1.0, 0.5)
    regions = lesion_regions(mask, spacing_kji, (1.0, 3.0))
    pts = np.argwhere(mask) * spacing_kji
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * spacing_kji
    dist = np.sqrt(((grid[..., None, :] - pts) ** 2).sum(-1)).min(-1)
    np.testing.assert_array_equal(regions.ring, (dist >= 1.0) & (dist <= 3.0) & ~mask)
    np.testing.assert_array_equal(regions.outside, dist > 3.0)
    assert not (regions.ring & regions.inside).any()
    assert regions.ring[6, 10, 13] and regions.ring[4, 10, 10] and not regions.ring[3, 10, 10]  # 3 mm slices


def test_map_statistics_match_direct_computation():
    rng = np.random.default_rng(0)
    mask = box_mask(SHAPE, (10, 10, 10), (13, 12, 14))
    regions = lesion_regions(mask, (1.0, 1.0, 1.0))
    a = rng.standard_normal(SHAPE).astype(np.float32)
    s = map_statistics(a, regions)
    assert s["inside_sum"] == pytest.approx(float(a[mask].astype(np.float64).sum()))
    assert s["inside_peak"] == pytest.approx(float(a[mask].max()))
    assert s["ring_trough"] == pytest.approx(float(a[regions.ring].min()))
    assert s["outside_abs_sum"] == pytest.approx(float(np.abs(a[regions.outside]).astype(np.float64).sum()), rel=1e-6)
    assert s["inside_voxels"] == mask.sum() and s["ring_voxels"] == regions.ring.sum()


@pytest.mark.parametrize("ring_mm", [(1.0, 3.0), (1.5, 2.5)])  # 1.5: voxels nearer than the ring are in no region
def test_local_statistics_equal_the_whole_grid_statistics(ring_mm):
    rng = np.random.default_rng(1)
    shape = (30, 34, 38)
    spacing = (2.0, 1.0, 0.8)
    mask = box_mask(shape, (12, 14, 16), (15, 17, 19))
    crop = (slice(6, 22), slice(8, 24), slice(4, 36))
    full_map = rng.standard_normal(shape).astype(np.float32)  # a CAM: values everywhere
    crop_map = np.zeros(shape, np.float32)  # a gradient map of a crop: 0 beyond it
    crop_map[crop] = full_map[crop]
    reference = lesion_regions(mask, spacing, ring_mm)
    local = local_regions(mask, spacing, ring_mm, include=crop)
    assert local.beyond_voxels > 0
    for arr, zero_beyond in ((full_map, False), (crop_map, True), (crop_map, False)):
        expected = map_statistics(arr, reference)
        got = local_map_statistics(arr, local, zero_beyond)
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9, nan_ok=True), key
    edge = box_mask(shape, (0, 0, 0), (2, 2, 2))  # ring clipped by the image border
    got = local_map_statistics(full_map, local_regions(edge, spacing, ring_mm), False)
    assert got == pytest.approx(map_statistics(full_map, lesion_regions(edge, spacing, ring_mm)), rel=1e-9, nan_ok=True)


def _result(model, image, prob, gt=None):
    geo = unit_geometry(image.shape[1:])
    inst = extract_instances(prob, geo, 0.5, 1, 26, gt)
    pair = InputPair(image[0].astype(np.float32), image[1].astype(np.float32), geo)
    return SegmentationResult(pair, image, prob, inst, 0.5, SegmentationSettings(), model.describe())


def _segmentation_with_fn():
    model = tiny_unet(seed=1)
    image = synthetic_image(SHAPE, seed=2)
    prob = np.zeros(SHAPE, np.float32)
    prob[4:7, 4:7, 4:7] = 0.9  # instance 1 (TP)
    prob[15:17, 16:19, 15:17] = 0.8  # instance 2 (FP)
    gt = box_mask(SHAPE, (5, 5, 5), (7, 7, 7)) | box_mask(SHAPE, (10, 3, 14), (12, 5, 16))  # second one missed
    return model, image, _result(model, image, prob, gt)


def test_explain_instances_covers_tp_fp_fn_with_statistics():
    model, image, result = _segmentation_with_fn()
    assert [r.status for r in result.instances.instances] == ["TP", "FP", "FN"]
    settings = ExplainSettings(methods=("gradient", "smoothgrad", "gradcampp"), samples=2, roi_margin_mm=6)
    out = explain_instances(model, result, None, settings)
    assert list(out) == [1, 2, 3]
    fn = out[3]
    assert fn.status == "FN" and fn.voxels == 8
    assert set(fn.maps) == {"gradient_flair", "gradient_mprage", "smoothgrad_flair", "smoothgrad_mprage", "gradcampp"}
    for arr in fn.maps.values():
        assert arr.shape == SHAPE and arr.dtype == np.float32
    assert set(fn.statistics["flair_share"]) == {"gradient", "smoothgrad"}
    g = fn.maps["gradient_flair"]
    assert fn.statistics["gradient_flair"]["inside_sum"] == pytest.approx(float(g[result.instances.mask(3)].sum()), rel=1e-5)
    share = np.abs(g).sum() / (np.abs(g).sum() + np.abs(fn.maps["gradient_mprage"]).sum())
    assert fn.statistics["flair_share"]["gradient"] == pytest.approx(share, rel=1e-5)
    json.dumps(fn.to_dict(), allow_nan=True)  # serialisable
    # the same instance explained alone with its mask gives the same maps
    single = explain_instance(model, result.normalized, result.instances.mask(3), result.geometry, settings)
    np.testing.assert_allclose(single.maps["smoothgrad_flair"], fn.maps["smoothgrad_flair"], rtol=1e-6, atol=1e-9)


def test_missed_lesion_targets_are_the_undetected_ground_truth_lesions():
    pred = box_mask(SHAPE, (4, 4, 4), (7, 7, 7))
    gt = box_mask(SHAPE, (5, 5, 5), (7, 7, 7)) | box_mask(SHAPE, (10, 3, 14), (12, 5, 16))
    targets = missed_lesion_targets(pred, gt, "max")
    assert len(targets) == 1 and targets[0].status == "FN" and targets[0].aggregation == "max"
    np.testing.assert_array_equal(targets[0].mask, box_mask(SHAPE, (10, 3, 14), (12, 5, 16)))


def test_explanation_writes_maps_with_the_input_geometry(tmp_path):
    model, image, result = _segmentation_with_fn()
    geo = unit_geometry(SHAPE, spacing=(0.9, 1.1, 1.3))
    mask = result.instances.mask(1)
    e = explain_instance(model, image, mask, geo, ExplainSettings(methods=("gradient",)), instance_id=1)
    paths = e.write(tmp_path / "instance_1", geo)
    img = sitk.ReadImage(str(paths["gradient_flair"]))
    assert img.GetSpacing() == pytest.approx((0.9, 1.1, 1.3))
    np.testing.assert_allclose(sitk.GetArrayFromImage(img), e.maps["gradient_flair"])


def test_progress_is_reported_and_cancel_stops():
    model, image, result = _segmentation_with_fn()
    seen = []
    settings = ExplainSettings(methods=("smoothgrad",), samples=2, roi_margin_mm=4)
    explain_instances(model, result, [1, 2], settings, progress=lambda f, m: seen.append(f))
    assert seen and seen[-1] == pytest.approx(1.0) and all(b >= a - 1e-12 for a, b in zip(seen, seen[1:]))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        explain_instances(model, result, [1], settings, cancel=token)


def test_bad_input_gives_clear_errors():
    model, image, result = _segmentation_with_fn()
    geo = result.geometry
    s = ExplainSettings(methods=("gradient",))
    with pytest.raises(InstanceError, match=r"lesion instance 7 does not exist \(valid ids: 1, 2, 3\)"):
        explain_instances(model, result, [1, 7], s)
    with pytest.raises(InstanceError, match="does not match the image"):
        explain_instance(model, image, np.ones((30, 24, 24), bool), geo, s)
    with pytest.raises(InstanceError, match="mask is empty"):
        explain_instance(model, image, np.zeros(SHAPE, bool), geo, s)
    with pytest.raises(ParameterError, match="CAM layer 'model.7' does not exist"):
        explain_instances(model, result, [1], ExplainSettings(methods=("gradcam",), cam_layer="model.7"))
    with pytest.raises(InputImageError, match="normalised image must be"):
        explain_instance(model, image[:1], result.instances.mask(1), geo, s)
    with pytest.raises(ParameterError, match="unknown explanation method"):
        ExplainSettings(methods=("lime",))
    with pytest.raises(ParameterError, match="aggregation"):
        ExplainSettings(aggregation="median")
    with pytest.raises(ParameterError, match="samples"):
        ExplainSettings(samples=0)
    with pytest.raises(ParameterError, match="LesionModel"):
        explain_instance(model.network, image, result.instances.mask(1), geo, s)


def test_margin_is_the_models_calibrated_one_else_measured_on_first_use_and_is_recorded(tmp_path, monkeypatch):
    from LesionXAILib.explain import fidelity
    from LesionXAILib.explain.settings import resolve_margin
    from LesionXAILib.lesion_model import LesionModel

    monkeypatch.setenv("LESIONXAI_CACHE_DIR", str(tmp_path / "cache"))
    fidelity.forget_memory()
    model = tiny_unet(seed=7)
    # settings alone leave the margin to the model; a chosen one stays whatever the aggregation
    assert ExplainSettings().roi_margin_mm is None
    assert ExplainSettings(roi_margin_mm=5).replace(aggregation="max").roi_margin_mm == 5
    # an uncalibrated model never gets an assumed margin: before it is measured, the whole volume
    assert ExplainSettings().resolved(model).full_volume and ExplainSettings().resolved(model).roi_margin_mm is None
    assert resolve_margin(None, model.config, "sum")[0] is None
    # a calibrated model carries its own, per aggregation; a chosen margin still wins
    calibrated = LesionModel(model.network, model.config.replace(explain_margin_mm=3.0, explain_voxel_margin_mm=2.0)).eval()
    assert ExplainSettings().resolved(calibrated).roi_margin_mm == 3.0
    assert ExplainSettings(aggregation="max").resolved(calibrated).roi_margin_mm == 2.0
    assert ExplainSettings(aggregation="max", roi_margin_mm=5).resolved(calibrated).roi_margin_mm == 5
    assert resolve_margin(None, calibrated.config, "max") == (2.0, "calibrated for model 'tiny-unet'")
    with pytest.raises(ParameterError, match="margin"):
        ExplainSettings(roi_margin_mm=-1)
    # the margin used is recorded with the explanation, and gives the maps that choosing it gives
    image, geo = synthetic_image(SHAPE), unit_geometry(SHAPE)
    mask = box_mask(SHAPE, (10, 10, 10), (12, 12, 13))
    only = ExplainSettings(methods=("gradient",), fidelity_check=False)  # the margin as given, unchecked
    auto = explain_instance(calibrated, image, mask, geo, only)
    assert auto.settings.roi_margin_mm == 3.0 and auto.to_dict()["settings"]["roi_margin_mm"] == 3.0
    assert auto.fidelity["obtained"] == "calibrated" and auto.fidelity["flag"] == "not checked per lesion"
    chosen = explain_instance(model, image, mask, geo, only.replace(roi_margin_mm=3.0))
    np.testing.assert_array_equal(auto.maps["gradient_flair"], chosen.maps["gradient_flair"])
    assert chosen.fidelity["obtained"] == "chosen"
    only = only.replace(fidelity_check=True)
    # the uncalibrated model is measured on first use (the calibration rule, on this lesion), cached by weights
    first = explain_instance(model, image, mask, geo, only)
    files = list((tmp_path / "cache" / "margins").glob("*.json"))
    assert len(files) == 1 and files[0].stem == fidelity.model_fingerprint(model)
    record = json.loads(files[0].read_text())
    assert first.fidelity["margin_source"] == "auto-calibrated"
    assert record["sum"]["margin_mm"] == record["sum"]["calibration"]["margin_mm"]
    assert first.fidelity["checks"][0]["margin_mm"] == record["sum"]["margin_mm"]
    fidelity.forget_memory()  # a new process reads the file
    assert ExplainSettings().resolved(model).roi_margin_mm == record["sum"]["margin_mm"]
    again = explain_instance(model, image, mask, geo, only)
    np.testing.assert_array_equal(again.maps["gradient_flair"], first.maps["gradient_flair"])
    assert len(list((tmp_path / "cache" / "margins").glob("*.json"))) == 1
    fidelity.forget_memory()
