"""Explanation-quality metrics: analytic answers (linear models, masks) and brute-force whole-volume checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from LesionXAILib.explain import ExplainSettings, Explanation, explain_instance
from LesionXAILib.explain.noise import positional_noise
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.metrics import (
    MetricSettings,
    activation_precision,
    compare_maps,
    count_passes,
    deletion_insertion,
    deletion_region,
    evaluate_explanation,
    feature_order,
    infidelity,
    instance_inputs,
    lesion_target,
    max_sensitivity,
    randomised_model,
    spearman,
)
from LesionXAILib.metrics.perturbations import uniform_perturbation
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.crop import full_box

from explain_fixtures import box_mask, synthetic_image, tiny_model, tiny_unet, unit_geometry


class LinearNet(nn.Module):
    """z = conv(x) + b: a linear lesion logit, so S(x) = w^T x + const for any instance mask."""

    def __init__(self, kernel: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(2, 1, kernel, padding=kernel // 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def linear_model(kernel: int = 3) -> LesionModel:
    cfg = ModelConfig(name="linear", channels=(1,), strides=(), num_res_units=0)
    return LesionModel(LinearNet(kernel), cfg).eval()


SHAPE = (24, 26, 28)
MASK = box_mask(SHAPE, (10, 11, 12), (13, 14, 14))
GEO = unit_geometry(SHAPE)


def analytic_weights(model: LesionModel, mask: np.ndarray) -> np.ndarray:
    """Return w = dS/dx of the linear model by hand: the lesion mask convolved with each channel's kernel."""
    k = model.network.conv.weight.detach().numpy()[0]  # (C, 3, 3, 3), applied as cross-correlation
    return np.stack([ndimage.convolve(mask.astype(np.float64), k[c], mode="constant", cval=0.0) for c in range(2)])


def full_noise(seed: int, sample: int, shape, channels: int, box) -> np.ndarray:
    """Positional noise drawn on the whole grid, zeroed outside the crop (what the crop saw)."""
    z = positional_noise(seed, sample, full_box(shape), channels).astype(np.float64)
    out = np.zeros_like(z)
    out[(slice(None),) + box.slices] = z[(slice(None),) + box.slices]
    return out


def test_linear_model_with_its_weights_as_attribution_has_zero_infidelity():
    model = linear_model()
    x = synthetic_image(SHAPE)
    w = analytic_weights(model, MASK)
    e = explain_instance(model, x, MASK, GEO, ExplainSettings(methods=("gradient",)))
    np.testing.assert_allclose(np.stack([e.maps["gradient_flair"], e.maps["gradient_mprage"]]), w, atol=1e-12)

    inputs = instance_inputs(model, x, MASK, GEO, e.settings)
    phi = torch.from_numpy(inputs.box.extract(w, 0.0))
    r = infidelity(inputs, phi, perturbations=6, scale=0.05, seed=3)
    assert np.mean(r.delta**2) > 1e-3  # the perturbations do change S
    assert r.infidelity <= 1e-20 * np.mean(r.delta**2) + 1e-24
    assert r.relative <= 1e-18

    # Phi = 2w: every term is (2 I.w - I.w)^2, computed here from whole-grid noise and numpy alone
    sigma = 0.05 * float(x[0].max() - x[0].min())
    dots = [float((sigma * full_noise(3, i, SHAPE, 2, inputs.box) * w).sum()) for i in range(6)]
    r2 = infidelity(inputs, 2 * phi, perturbations=6, scale=0.05, seed=3)
    assert r2.infidelity == pytest.approx(np.mean(np.square(dots)), rel=1e-10)
    assert r2.beta == pytest.approx(0.5, rel=1e-10)
    assert r2.normalized == pytest.approx(0.0, abs=1e-12 * r2.infidelity)


def test_infidelity_matches_a_brute_force_whole_volume_loop():
    model = tiny_model(seed=2)
    shape = (32, 32, 32)
    x = synthetic_image(shape, seed=5)
    mask = box_mask(shape, (14, 15, 13), (17, 18, 16))
    geo = unit_geometry(shape)
    settings = ExplainSettings(methods=("gradient",), roi_margin_mm=6.0)
    e = explain_instance(model, x, mask, geo, settings)
    inputs = instance_inputs(model, x, mask, geo, settings)
    assert inputs.box.shape != shape  # a real crop, not the whole volume
    phi = inputs.attribution(e, "gradient")
    r = infidelity(inputs, phi, perturbations=4, scale=0.03, seed=7)

    phi_full = np.stack([e.maps["gradient_flair"], e.maps["gradient_mprage"]]).astype(np.float64)
    sigma = 0.03 * float(x[0].max() - x[0].min())

    def s_full(img: np.ndarray) -> float:
        with torch.no_grad():
            z = model.lesion_logit(model(torch.from_numpy(img)[None]))[0, 0].numpy()
        return float(z[mask].sum())

    terms = []
    for i in range(4):
        pert = sigma * full_noise(7, i, shape, 2, inputs.box)
        terms.append((float((pert * phi_full).sum()) - (s_full(x) - s_full(x - pert))) ** 2)
    assert r.infidelity == pytest.approx(np.mean(terms), rel=1e-8)
    assert 0 < r.infidelity


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "integrated_gradients", "gradcam", "gradcampp"])
def test_zero_radius_sensitivity_is_zero(method):
    model = tiny_model(seed=2)  # seed 1 gives an all-zero (ReLU) CAM here, whose sensitivity is undefined (NaN)
    x = synthetic_image(SHAPE, seed=2)
    settings = ExplainSettings(methods=(method,), samples=3, ig_steps=3, roi_margin_mm=6.0)
    inputs = instance_inputs(model, x, MASK, GEO, settings)
    r = max_sensitivity(inputs, method, radius=0.0, samples=3)
    assert r.ratios.size == 3
    assert r.max_sensitivity == pytest.approx(0.0, abs=1e-12)
    assert max_sensitivity(inputs, method, radius=0.05, samples=2).max_sensitivity > 1e-6


def test_sensitivity_matches_whole_volume_gradients_and_is_zero_for_a_linear_model():
    model = tiny_model(seed=4)
    x = synthetic_image(SHAPE, seed=6)
    settings = ExplainSettings(methods=("gradient",), roi_margin_mm=6.0)
    inputs = instance_inputs(model, x, MASK, GEO, settings)
    r = max_sensitivity(inputs, "gradient", radius=0.05, samples=3, seed=9)

    def grad_full(img: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(img)[None].requires_grad_(True)
        z = model.lesion_logit(model(t))[0, 0]
        (g,) = torch.autograd.grad(z[torch.from_numpy(MASK)].sum(), t)
        return g[0].numpy()

    ref = grad_full(x)
    rng = 0.05 * float(x[0].max() - x[0].min())
    expected = []
    for j in range(3):
        delta = uniform_perturbation(9, j, full_box(SHAPE), [rng, rng]).numpy()
        outside = np.ones(SHAPE, dtype=bool)
        outside[inputs.box.slices] = False
        delta[:, outside] = 0.0
        assert np.abs(delta).max() <= rng
        expected.append(np.linalg.norm(grad_full(x + delta) - ref) / np.linalg.norm(ref))
    np.testing.assert_allclose(r.ratios, expected, rtol=1e-8)
    assert r.max_sensitivity == pytest.approx(max(expected), rel=1e-8)

    lin = linear_model()
    lin_inputs = instance_inputs(lin, x, MASK, GEO, settings)
    assert max_sensitivity(lin_inputs, "gradient", radius=0.2, samples=3).max_sensitivity <= 1e-12


def test_activation_precision_by_hand():
    s = np.array([0.0, 1.0, 0.9, 0.4, 0.6, 0.2]).reshape(1, 1, 6)
    t = np.array([0, 1, 0, 0, 1, 0], dtype=bool).reshape(1, 1, 6)
    r = activation_precision(s, t, 0.5, top_k_percent=50)
    assert r.at_threshold == pytest.approx(2 / 3) and r.selected == 3
    assert r.at_top_k == pytest.approx(2 / 3) and r.top_k_selected == 3
    assert activation_precision(s, t, 0.5, top_k_percent=17).at_top_k == pytest.approx(1 / 2)  # ceil(1.02) = 2 voxels
    assert activation_precision(3 * s + 5, t, 0.5).at_threshold == pytest.approx(2 / 3)  # min-max: affine-invariant
    assert activation_precision(s, t, 0.95).at_threshold == 1.0
    assert math.isnan(activation_precision(np.ones_like(s), t).at_threshold)
    region = np.array([1, 1, 0, 1, 1, 1], dtype=bool).reshape(1, 1, 6)  # drops the 0.9 voxel
    assert activation_precision(s, t, 0.5, region=region).at_threshold == 1.0


def test_a_map_equal_to_the_lesion_mask_has_activation_precision_one():
    x = synthetic_image(SHAPE)
    mask_map = MASK.astype(np.float32)
    e = Explanation(1, {"gradient_flair": mask_map, "gradient_mprage": mask_map}, {}, ExplainSettings(methods=("gradient",)), 0.0)
    settings = MetricSettings(metrics=("activation_precision",), ap_top_k_percent=100.0 * MASK.sum() / MASK.size)
    # region = the explainer's crop; choose top-k relative to it so that k equals the lesion size
    inputs = instance_inputs(linear_model(), x, MASK, GEO, e.settings)
    crop_voxels = int(np.prod([s.stop - s.start for s in inputs.box.slices]))
    settings = settings.replace(ap_top_k_percent=100.0 * MASK.sum() / crop_voxels)
    m = evaluate_explanation(linear_model(), x, e, MASK, GEO, settings)
    assert m.values["gradient_flair_ap"] == 1.0 and m.values["gradient_mprage_ap"] == 1.0
    assert m.values["gradient_flair_ap_top_k"] == 1.0

    grown = lesion_target(MASK, 1.0, GEO.spacing_kji)
    assert grown.sum() > MASK.sum() and grown[MASK].all()
    assert activation_precision(grown, grown).at_threshold == 1.0
    assert activation_precision(grown, MASK).at_threshold == pytest.approx(MASK.sum() / grown.sum())


def test_deletion_and_insertion_curves_of_a_voxelwise_linear_model_by_hand():
    model = linear_model(kernel=1)  # z_v = a . x_v + b, so S drops by a_c x_c,v when feature (c, v) is deleted
    x = synthetic_image(SHAPE, seed=8)
    settings = ExplainSettings(methods=("gradient",), roi_margin_mm=4.0)
    inputs = instance_inputs(model, x, MASK, GEO, settings)
    region = deletion_region(inputs, 2.0)
    a = model.network.conv.weight.detach().numpy().reshape(2)
    contribution = np.zeros((2,) + inputs.box.shape)
    crop_x = inputs.crop.image.numpy()
    lesion = inputs.lesion_crop()
    for c in range(2):
        contribution[c][lesion] = a[c] * crop_x[c][lesion]
    order = feature_order(torch.from_numpy(contribution), region)
    steps = 8
    r = deletion_insertion(inputs, order, steps)

    values = np.sort(contribution[np.broadcast_to(region, contribution.shape)])[::-1]
    n = values.size
    assert r.features == n == 2 * int(region.sum())
    counts = [round(j * n / steps) for j in range(steps + 1)]
    removed = np.array([values[:c].sum() for c in counts])
    s_x, s_base = r.score, r.baseline_score
    assert s_x - s_base == pytest.approx(values.sum(), rel=1e-10)
    np.testing.assert_allclose(r.deletion, (s_x - removed - s_base) / (s_x - s_base), atol=1e-10)
    np.testing.assert_allclose(r.insertion, removed / (s_x - s_base), atol=1e-10)
    t = np.array(counts) / n
    assert r.deletion_auc == pytest.approx(sum((r.deletion[i] + r.deletion[i + 1]) / 2 * (t[i + 1] - t[i]) for i in range(steps)))
    assert r.cost.forward_passes == 2 * steps  # original + baseline + (steps - 1) per curve


def test_pass_counts_follow_the_batching():
    model = tiny_model(seed=0)
    x = synthetic_image(SHAPE)
    from LesionXAILib.explain import SmoothGrad, Gradient

    with count_passes(model) as cost:
        SmoothGrad(model).attribute(x, MASK, samples=5, batch_size=2, margin_mm=6.0)
    assert (cost.forward_passes, cost.backward_passes, cost.network_calls) == (5, 5, 3)
    small = box_mask(SHAPE, (10, 11, 12), (11, 13, 14))  # 4 voxels
    with count_passes(model) as cost:
        Gradient(model).attribute(x, small, aggregation="max", batch_size=3, margin_mm=6.0, full_volume=True)
    # max aggregation: one forward pass of the image shared by one vector-Jacobian product per lesion voxel
    assert (cost.forward_passes, cost.backward_passes, cost.network_calls) == (1, 4, 1)
    with count_passes(model) as cost:
        Gradient(model).attribute(x, small, aggregation="max", batch_size=3, margin_mm=6.0)
    # on a crop each voxel gets the smallest window holding it with 6 voxels around: the lesion's two
    # j rows (crop rows 7 and 8) need windows starting at 0 and 2 (divisor 2), each shared by 2 voxels
    assert (cost.forward_passes, cost.backward_passes, cost.network_calls) == (2, 4, 2)
    assert cost.seconds > 0


def test_randomised_model_is_seeded_leaves_the_original_and_global_rng_alone():
    model = tiny_unet(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    r1 = randomised_model(model, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    r2 = randomised_model(model, seed=5)
    r3 = randomised_model(model, seed=6)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    weights = [k for k, v in before.items() if v.is_floating_point() and v.ndim >= 2]
    assert weights and all(torch.equal(r1.state_dict()[k], r2.state_dict()[k]) for k in weights)
    assert all(not torch.equal(r1.state_dict()[k], before[k]) for k in weights)
    assert any(not torch.equal(r1.state_dict()[k], r3.state_dict()[k]) for k in weights)


def test_spearman_matches_ranks_by_hand_and_the_check_flags_a_model_independent_map():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    b[:50] = a[:50]

    def ranks(v):
        r = np.empty(v.size)
        r[np.argsort(v)] = np.arange(v.size)
        return r

    assert spearman(a, b) == pytest.approx(np.corrcoef(ranks(a), ranks(b))[0, 1], rel=1e-12)
    assert math.isnan(spearman(np.ones(5), a[:5]))
    x = synthetic_image(SHAPE)[0]  # an "explainer" that returns the image ignores the model: rho = 1
    box = full_box(SHAPE)
    assert compare_maps(x, x, box).spearman == pytest.approx(1.0)
    # maps that share only their zero region (as ROI gradients beyond the receptive field) are not alike
    u, v = np.zeros(SHAPE), np.zeros(SHAPE)
    u[8:12, 8:12, 8:12] = rng.normal(size=(4, 4, 4))
    v[8:12, 8:12, 8:12] = rng.normal(size=(4, 4, 4))
    r = compare_maps(u, v, box)
    assert abs(r.spearman) < 0.3 and spearman(np.abs(u), np.abs(v)) > 0.9  # without the restriction: ~1


@pytest.fixture(scope="module")
def evaluated():
    model = tiny_model(seed=3)
    shape = (32, 32, 32)
    x = synthetic_image(shape, seed=1)
    mask = box_mask(shape, (14, 14, 14), (17, 17, 18))
    geo = unit_geometry(shape)
    settings = ExplainSettings(methods=("gradient", "smoothgrad", "gradcampp"), samples=3, roi_margin_mm=6.0)
    e = explain_instance(model, x, mask, geo, settings, instance_id=4, status="TP")
    ms = MetricSettings(infidelity_perturbations=3, sensitivity_samples=2, deletion_steps=4)
    return model, x, mask, geo, e, ms, evaluate_explanation(model, x, e, mask, geo, ms, randomised_model(model, 1))


def test_evaluate_explanation_reports_every_metric_per_method_with_costs(evaluated):
    model, x, mask, geo, e, ms, m = evaluated
    row = m.row()
    for method in ("gradient", "smoothgrad", "gradcampp", "random"):
        assert math.isfinite(row[f"{method}_deletion_auc"]) and math.isfinite(row[f"{method}_insertion_auc"])
    for method in ("gradient", "smoothgrad", "gradcampp"):
        for name in ("infidelity", "infidelity_normalized", "max_sensitivity"):
            assert row[f"{method}_{name}"] >= 0
    for key in ("gradient_flair", "smoothgrad_mprage", "gradcampp"):
        assert 0 <= row[f"{key}_ap"] <= 1 and -1 <= row[f"{key}_randomisation_spearman"] <= 1
    assert row["infidelity_forward_passes"] == 1 + ms.infidelity_perturbations and row["infidelity_backward_passes"] == 0
    # gradient: 1 + 2 images; SmoothGrad: 3 samples each; Grad-CAM++: crop pass (+ backward) and whole-volume pass each
    assert row["max_sensitivity_forward_passes"] == 3 + 3 * 3 + 3 * 2
    assert row["max_sensitivity_backward_passes"] == 3 + 3 * 3 + 3
    assert row["deletion_insertion_forward_passes"] == 4 * 2 * ms.deletion_steps
    assert row["activation_precision_forward_passes"] == 0 and row["randomisation_backward_passes"] > 0
    assert all(row[f"{k}_seconds"] > 0 for k in m.costs)
    json.dumps(m.to_dict(), allow_nan=False)
    assert m.instance_id == 4 and m.status == "TP"


def test_metrics_do_not_change_the_model_or_depend_on_call_order(evaluated):
    model, x, mask, geo, e, ms, m = evaluated
    again = evaluate_explanation(model, x, e, mask, geo, ms.replace(metrics=("deletion_insertion", "infidelity")))
    for k, v in again.values.items():
        assert v == m.values[k], k
    assert not model.training


def test_randomisation_through_a_subject_analysis_matches_the_plain_model():
    from LesionXAILib.analysis import SubjectAnalysis
    from LesionXAILib.image_io import InputPair
    from LesionXAILib.segmentation import SegmentationSettings, segment

    from probes_fixtures import detector_model

    shape = (20, 22, 24)
    rng = np.random.default_rng(4)
    flair = 100 + rng.normal(0, 2, shape)
    flair[6:9, 6:9, 6:9] = 160
    t1 = 80 + 20 * np.sign(rng.normal(0, 1, shape))
    pair = InputPair(flair.astype(np.float32), t1.astype(np.float32), unit_geometry(shape))
    result = segment(pair, detector_model(h=1, level=1.5), SegmentationSettings())
    i = result.instances.ids[0]
    mask = result.instances.mask(i)
    model, other = tiny_model(seed=3), tiny_model(seed=5)  # `other` stands in for a randomised network
    settings = ExplainSettings(methods=("gradient", "gradcam"), roi_margin_mm=6.0)
    e = explain_instance(model, result.normalized, mask, result.geometry, settings, instance_id=i)
    ms = MetricSettings(metrics=("randomisation",))
    plain = evaluate_explanation(model, result.normalized, e, mask, result.geometry, ms, other)
    subject = SubjectAnalysis(other, result)
    shared = evaluate_explanation(model, result.normalized, e, mask, result.geometry, ms, subject)
    assert set(plain.values) == {f"{k}_randomisation_spearman{a}" for k in ("gradient_flair", "gradient_mprage", "gradcam")
                                 for a in ("", "_abs")} | {f"gradcam_randomisation_spearman{a}_brain" for a in ("", "_abs")}  # fmt: skip
    np.testing.assert_allclose([plain.values[k] for k in sorted(plain.values)], [shared.values[k] for k in sorted(plain.values)],
                               rtol=1e-12)  # fmt: skip
    assert all(np.isfinite(v) for v in plain.values.values())
    evaluate_explanation(model, result.normalized, e, mask, result.geometry, ms, subject)
    assert subject.activation_passes == 1  # the whole-volume CAM pass is shared by later lesions
