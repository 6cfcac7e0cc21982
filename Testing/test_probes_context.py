"""Context probe: analytic context radii on hand-built networks, statuses, crop vs whole volume, fills, errors."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from LesionXAILib.errors import Cancelled, InstanceError, ParameterError
from LesionXAILib.lesion_model import LesionModel, build_network
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.probes import ContextSettings, context_needed, context_probe, context_probe_instances
from LesionXAILib.probes.structuring import ball_element
from LesionXAILib.progress import CancelToken
from LesionXAILib.segmentation import SegmentationSettings, segment
from LesionXAILib.image_io import InputPair
from probes_fixtures import cube_mask, detector_config, detector_model, geometry_for, lesion_image

SIG5 = 1.0 / (1.0 + math.exp(-5.0))  # detector probability on a lesion voxel whose cube is all tissue


# ---------------------------------------------------------------- analytic context radius


@pytest.mark.parametrize(
    "h, spacing_ijk, expected",
    [
        (2, (1.0, 1.0, 1.0), 4.0),  # cube corner at 2*sqrt(3) = 3.46 mm -> first integer radius 4
        (3, (1.0, 1.0, 1.0), 6.0),  # 3*sqrt(3) = 5.20 mm
        (2, (1.0, 1.0, 3.0), 7.0),  # 1x1x3 mm voxels: 2*sqrt(1 + 1 + 9) = 6.63 mm
    ],
)
def test_single_voxel_lesion_needs_the_analytic_context_radius(h, spacing_ijk, expected):
    shape = (14, 24, 24) if spacing_ijk[2] > 1 else (24, 24, 24)
    centre = tuple(s // 2 for s in shape)
    mask = cube_mask(shape, centre, 0)
    curve = context_probe(
        detector_model(h), lesion_image(shape, mask), mask, geometry_for(shape, spacing_ijk), ContextSettings.up_to(10)
    )
    corner = h * math.sqrt(sum(s * s for s in spacing_ijk))
    assert curve.status == "needs_context"
    assert curve.context_needed_mm == expected == math.ceil(corner)
    np.testing.assert_array_equal(curve.detected, curve.radii_mm >= corner)
    assert curve.full_context.detected and curve.full_context.dice == 1.0


def test_cube_lesion_dice_and_probability_follow_the_analytic_curve():
    # 3x3x3 lesion, h = 3. Lesion voxel v = centre + offset with n non-zero offset coordinates needs the cube
    # of half-width 3 around it inside the kept region; its farthest corner lies sqrt(n*3^2 + (3-n)*2^2)
    # = sqrt(12 + 5n) mm from the lesion: n=0 -> 3.46, 1 -> 4.12, 2 -> 4.69, 3 -> 5.20 mm.
    shape = (26, 26, 26)
    mask = cube_mask(shape, (13, 13, 13), 1)
    curve = context_probe(
        detector_model(3), lesion_image(shape, mask), mask, geometry_for(shape), ContextSettings.up_to(7)
    )
    count_with_n = {0: 1, 1: 6, 2: 12, 3: 8}
    for r, dice, mean_p, det, n_pred in zip(
        curve.radii_mm, curve.dice, curve.mean_probability, curve.detected, curve.predicted_voxels
    ):
        predicted = sum(c for n, c in count_with_n.items() if math.sqrt(12 + 5 * n) <= r)
        assert det == (predicted > 0)
        assert n_pred == predicted
        assert dice == pytest.approx(2 * predicted / (predicted + 27))
        assert mean_p == pytest.approx(predicted * SIG5 / 27, abs=1e-6)
    assert curve.context_needed_mm == 4.0
    assert curve.status == "needs_context"


def test_detected_without_context():
    shape = (20, 20, 20)
    mask = cube_mask(shape, (10, 10, 10), 1)
    curve = context_probe(detector_model(0), lesion_image(shape, mask), mask, geometry_for(shape), ContextSettings.up_to(5))
    assert curve.status == "detected_without_context"
    assert curve.context_needed_mm == 0.0
    assert curve.detected.all() and np.all(curve.dice == 1.0)


def test_not_detected_even_with_full_context():
    shape = (20, 20, 20)
    mask = cube_mask(shape, (10, 10, 10), 1)
    model = detector_model(1, level=2.5)  # the lesion (FLAIR 2) never reaches the detector's level
    curve = context_probe(model, lesion_image(shape, mask), mask, geometry_for(shape), ContextSettings.up_to(5))
    assert curve.status == "not_detected"
    assert curve.context_needed_mm is None
    assert not curve.detected.any() and not curve.full_context.detected
    assert curve.to_dict()["description"] == "not detected even with full context"


def test_context_beyond_the_largest_radius_is_infinite_not_missing():
    shape = (24, 24, 24)
    mask = cube_mask(shape, (12, 12, 12), 0)
    curve = context_probe(detector_model(2), lesion_image(shape, mask), mask, geometry_for(shape), ContextSettings.up_to(2))
    assert curve.status == "needs_context"
    assert curve.context_needed_mm == math.inf
    d = curve.to_dict()
    assert d["context_needed_mm"] is None and d["context_needed_beyond_max_radius"] is True
    json.dumps(d, allow_nan=False)


def brute_force_context_needed(radii, flags, full):
    """The definition, literally: smallest r such that the lesion is detected at r and every larger r (and full)."""
    if not full:
        return None, "not_detected"
    for i, r in enumerate(radii):
        if all(flags[i:]):
            if r == 0:
                return 0.0, "detected_without_context"
            return r, "needs_context"
    return math.inf, "needs_context"


def test_context_needed_matches_the_definition_for_every_pattern():
    for radii in ([0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 2.5, 4.0]):
        for flags in itertools.product([False, True], repeat=len(radii)):
            for full in (False, True):
                assert context_needed(radii, flags, full) == brute_force_context_needed(radii, flags, full), (flags, full)
    # a lesion found at r = 0, lost at 1-2 mm and found again from 3 mm needs 3 mm
    assert context_needed([0, 1, 2, 3, 4], [True, False, False, True, True], True) == (3.0, "needs_context")


# ---------------------------------------------------------------- crop vs whole volume


def scored_whole_volume(model, image, mask, radius, spacing_kji, threshold):
    """Independent naive probe step: dilate with an explicit ball, run the whole volume, score with plain numpy."""
    import cc3d

    kept = ndimage.binary_dilation(mask, structure=ball_element(radius, spacing_kji)) if radius is not None else True
    masked = np.where(kept, image, 0.0).astype(np.float32)
    with torch.inference_mode():
        p = model.probability(model(torch.from_numpy(masked)[None]))[0, 0].numpy()
    labels = cc3d.connected_components(p >= threshold, connectivity=26)
    hits = set(np.unique(labels[mask]).tolist()) - {0}
    predicted = np.isin(labels, list(hits)) if hits else np.zeros_like(mask)
    dice = 2 * np.count_nonzero(predicted & mask) / (predicted.sum() + mask.sum())
    return bool(hits), float(p[mask].mean()), float(dice)


def test_crop_equals_whole_volume_for_a_network_with_known_receptive_field():
    rng = np.random.default_rng(3)
    shape = (40, 36, 44)
    mask = np.zeros(shape, dtype=bool)
    mask[18:22, 16:21, 20:23] = rng.random((4, 5, 3)) > 0.3
    mask[20, 18, 21] = True
    image = lesion_image(shape, mask)
    image[0] += rng.normal(0, 0.2, shape).astype(np.float32)  # vary the probabilities
    image[1, 15:17, 10:30, 12:18] = 0.0  # a tissue-free gap near the lesion
    geometry = geometry_for(shape, (1.0, 1.0, 1.5))
    model = detector_model(2)
    settings = ContextSettings(radii_mm=(0, 1, 2, 3, 4, 5, 6, 8), receptive_margin_mm=3.0)
    curve = context_probe(model, image, mask, geometry, settings)
    assert not curve.box.is_full and np.prod(curve.box.shape) < np.prod(shape) / 4
    for r, det, mean_p, dice in zip(curve.radii_mm, curve.detected, curve.mean_probability, curve.dice):
        exp = scored_whole_volume(model, image, mask, r, geometry.spacing_kji, 0.5)
        assert (det, mean_p, dice) == (exp[0], pytest.approx(exp[1], abs=1e-6), pytest.approx(exp[2])), r
    full = scored_whole_volume(model, image, mask, None, geometry.spacing_kji, 0.5)
    assert curve.full_context.detected == full[0]
    assert curve.full_context.mean_probability == pytest.approx(full[1], abs=1e-6)


def test_full_context_crop_reproduces_the_segmentation_of_a_unet():
    torch.manual_seed(0)
    config = ModelConfig(threshold=0.5)
    model = LesionModel(build_network(config), config).eval()
    rng = np.random.default_rng(0)
    shape = (64, 64, 64)
    raw = ndimage.gaussian_filter(rng.standard_normal((2, *shape)), (0, 2, 2, 2)).astype(np.float32) * 50 + 100
    geometry = geometry_for(shape)
    result = segment(InputPair(raw[0], raw[1], geometry), model, SegmentationSettings(threshold=0.5, min_size=1))
    mask = np.zeros(shape, dtype=bool)
    mask[30:34, 29:33, 31:35] = True
    # 16 mm keeps the crop smaller than this 64^3 image (the default margin would cover all of it)
    settings = ContextSettings(radii_mm=(0, 2, 4), threshold=0.5, receptive_margin_mm=16.0)
    curve = context_probe(model, result.normalized, mask, geometry, settings)
    assert not curve.box.is_full
    assert curve.full_context.mean_probability == pytest.approx(float(result.probability[mask].mean()), abs=1e-5)
    assert curve.full_context.max_probability == pytest.approx(float(result.probability[mask].max()), abs=1e-5)
    for r, mean_p in zip(curve.radii_mm, curve.mean_probability):
        expected = scored_whole_volume(model, result.normalized, mask, r, geometry.spacing_kji, 0.5)[1]
        assert mean_p == pytest.approx(expected, abs=1e-5), r


# ---------------------------------------------------------------- fills and batching


class Recorder(torch.nn.Module):
    """Returns a constant logit and remembers every input batch."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return torch.zeros((x.shape[0], 1, *x.shape[2:]))


@pytest.mark.parametrize("fill", ["background", "zero", "mean", "noise"])
def test_fill_replaces_exactly_the_outside_of_each_ball(fill):
    rng = np.random.default_rng(5)
    shape = (20, 22, 18)
    image = rng.normal(0.3, 1.0, (2, *shape)).astype(np.float32)
    image[:, :3] = 0.0  # some non-brain voxels
    mask = cube_mask(shape, (10, 11, 9), 1)
    geometry = geometry_for(shape, (1.0, 2.0, 1.0))
    recorder = Recorder()
    model = LesionModel(recorder, detector_config())
    settings = ContextSettings(radii_mm=(0, 2, 5), fill=fill, receptive_margin_mm=0, batch_size=2, seed=11)
    curve = context_probe(model, image, mask, geometry, settings)
    inputs = torch.cat(recorder.seen).numpy()
    assert inputs.shape[0] == 4  # three radii + full context
    crop = curve.box.extract(image, 0.0)
    brain = np.any(image != 0, axis=0)
    for n, r in enumerate(settings.radii_mm):
        kept = curve.box.extract(ndimage.binary_dilation(mask, ball_element(r, geometry.spacing_kji)), False)
        np.testing.assert_array_equal(inputs[n][:, kept], crop[:, kept])
        outside = inputs[n][:, ~kept]
        if fill in ("background", "zero"):
            assert np.all(outside == 0)
        elif fill == "mean":
            for c in range(2):
                assert np.allclose(outside[c], image[c][brain].mean(), atol=1e-6)
        else:
            for c in range(2):
                assert abs(outside[c].mean() - image[c][brain].mean()) < 0.1
                assert abs(outside[c].std() - image[c][brain].std()) < 0.1
            if n:  # one noise field shared by every radius
                shared = ~curve.box.extract(ndimage.binary_dilation(mask, ball_element(settings.radii_mm[n], geometry.spacing_kji)), False)
                np.testing.assert_array_equal(inputs[n][:, shared], inputs[0][:, shared])
    np.testing.assert_array_equal(inputs[3], crop)  # full context: the unmasked crop
    if fill == "noise":  # same seed, same noise
        recorder.seen.clear()
        context_probe(model, image, mask, geometry, settings)
        np.testing.assert_array_equal(torch.cat(recorder.seen).numpy(), inputs)


def test_batch_size_does_not_change_results_and_training_mode_is_restored():
    shape = (24, 24, 24)
    mask = cube_mask(shape, (12, 12, 12), 1)
    image = lesion_image(shape, mask)
    model = detector_model(3)
    one = context_probe(model, image, mask, geometry_for(shape), ContextSettings.up_to(8, batch_size=1))
    model.train()
    auto = context_probe(model, image, mask, geometry_for(shape), ContextSettings.up_to(8))
    assert model.training
    np.testing.assert_array_equal(one.detected, auto.detected)
    np.testing.assert_allclose(one.mean_probability, auto.mean_probability)
    np.testing.assert_allclose(one.dice, auto.dice)


# ---------------------------------------------------------------- settings, errors, progress, outputs


def test_settings_sort_radii_and_reject_bad_values():
    assert ContextSettings(radii_mm=(3, 0, 1, 1)).radii_mm == (0.0, 1.0, 3.0)
    assert ContextSettings().radii_mm == tuple(float(r) for r in range(16))
    assert ContextSettings.up_to(4, step_mm=2).radii_mm == (0.0, 2.0, 4.0)
    with pytest.raises(ParameterError, match="empty"):
        ContextSettings(radii_mm=())
    with pytest.raises(ParameterError, match=">= 0"):
        ContextSettings(radii_mm=(0, -2, 3))
    with pytest.raises(ParameterError, match=">= 0"):
        ContextSettings(radii_mm=(0, float("nan")))
    with pytest.raises(ParameterError, match="radii"):
        ContextSettings(radii_mm=("a",))
    with pytest.raises(ParameterError):
        ContextSettings.up_to(-1)
    with pytest.raises(ParameterError, match="fill"):
        ContextSettings(fill="blur")
    with pytest.raises(ParameterError, match="threshold"):
        ContextSettings(threshold=1.5)
    with pytest.raises(ParameterError, match="batch"):
        ContextSettings(batch_size=0)


def test_bad_probe_inputs_name_the_problem():
    shape = (16, 16, 16)
    mask = cube_mask(shape, (8, 8, 8), 0)
    image = lesion_image(shape, mask)
    geometry = geometry_for(shape)
    model = detector_model(1)
    with pytest.raises(InstanceError, match="empty"):
        context_probe(model, image, np.zeros(shape, bool), geometry)
    with pytest.raises(InstanceError, match="shape"):
        context_probe(model, image, mask[:-1], geometry)
    with pytest.raises(ParameterError, match="channels"):
        context_probe(model, image[:1], mask, geometry)
    with pytest.raises(ParameterError, match="grid"):
        context_probe(model, image[:, :-1], mask, geometry)


def segmented_two_lesions():
    shape = (24, 24, 32)
    lesions = cube_mask(shape, (12, 12, 8), 1) | cube_mask(shape, (12, 12, 22), 0)
    image = lesion_image(shape, lesions)
    geometry = geometry_for(shape)
    model = detector_model(1)
    from LesionXAILib.instances import extract_instances
    from LesionXAILib.segmentation import SegmentationResult

    with torch.inference_mode():
        prob = model.probability(model(torch.from_numpy(image)[None]))[0, 0].numpy()
    instances = extract_instances(prob, geometry, 0.5, 1)
    pair = InputPair(image[0], image[1], geometry)
    result = SegmentationResult(pair, image, prob, instances, 0.5, SegmentationSettings(min_size=1), {})
    return model, result


def test_probe_instances_rejects_unknown_ids_before_work_and_probes_all_by_default():
    model, result = segmented_two_lesions()
    assert result.instances.ids == [1, 2]
    with pytest.raises(InstanceError, match="99"):
        context_probe_instances(model, result, [1, 99])
    calls = []
    curves = context_probe_instances(model, result, None, ContextSettings.up_to(4), progress=lambda f, m: calls.append(f))
    assert sorted(curves) == [1, 2]
    assert all(c.instance_id == i for i, c in curves.items())
    assert curves[1].lesion_voxels == 27 and curves[2].lesion_voxels == 1
    # h = 1: the 3x3x3 lesion's centre sees only lesion; the single voxel needs its cube corner at sqrt(3) mm
    assert (curves[1].status, curves[1].context_needed_mm) == ("detected_without_context", 0.0)
    assert (curves[2].status, curves[2].context_needed_mm) == ("needs_context", 2.0)
    assert calls == sorted(calls) and calls[-1] == pytest.approx(1.0)


def test_cancel_stops_the_probe():
    model, result = segmented_two_lesions()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        context_probe(model, result.normalized, result.instances.mask(1), result.geometry, cancel=token)


def test_curve_files(tmp_path):
    model, result = segmented_two_lesions()
    curve = context_probe_instances(model, result, [2], ContextSettings.up_to(5))[2]
    csv_path = curve.write_csv(tmp_path / "c.csv")
    lines = csv_path.read_text().strip().splitlines()
    assert lines[0] == "radius_mm,detected,mean_probability,max_probability,dice,predicted_voxels"
    assert len(lines) == 1 + 6 + 1 and lines[-1].startswith("inf,1,")
    data = json.loads(curve.write_json(tmp_path / "c.json").read_text())
    assert data["status"] == "needs_context" and data["context_needed_mm"] == 2.0
    assert [p["detected"] for p in data["points"]] == [False, False, True, True, True, True]
    png = curve.plot(tmp_path / "c.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv", "c.json", "c.png"]  # no partial files left
