"""Gradient targets: finite differences, mean/sum, max aggregation vs a brute-force loop, no leaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_fixtures import box_mask, logits, synthetic_image, tiny_model, tiny_unet
from LesionXAILib.explain import Gradient, InstanceTarget, SmoothGrad
from LesionXAILib.explain.vjp import target_gradients

SHAPE = (12, 12, 12)


def _target_value(model, image, mask, aggregation="sum"):
    z = logits(model, image)[mask]
    return z.sum() if aggregation == "sum" else z.mean()


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_gradient_equals_central_finite_differences(head, aggregation):
    model = tiny_model(head, seed=1)
    image = synthetic_image(SHAPE, seed=2)
    mask = box_mask(SHAPE, (5, 5, 4), (7, 8, 7))
    grad = Gradient(model).attribute(image, mask, aggregation=aggregation, full_volume=True).numpy()
    assert grad.shape == (2,) + SHAPE and grad.dtype == np.float64
    rng = np.random.default_rng(3)
    voxels = [tuple(v) for v in np.argwhere(np.abs(grad[0]) > 0)[rng.choice(int((np.abs(grad[0]) > 0).sum()), 20, replace=False)]]
    voxels += [(5, 6, 5), (0, 0, 0)]  # a lesion voxel and a voxel outside the receptive field
    h = 1e-5
    for c in (0, 1):
        for v in voxels:
            plus, minus = image.copy(), image.copy()
            plus[(c,) + v] += h
            minus[(c,) + v] -= h
            fd = (_target_value(model, plus, mask, aggregation) - _target_value(model, minus, mask, aggregation)) / (2 * h)
            assert grad[(c,) + v] == pytest.approx(fd, rel=1e-6, abs=1e-9), (c, v)


def test_gradient_on_monai_unet_equals_finite_differences():
    model = tiny_unet(seed=4)
    shape = (16, 16, 16)
    image = synthetic_image(shape, seed=5)
    mask = box_mask(shape, (7, 7, 7), (9, 10, 9))
    grad = Gradient(model).attribute(image, mask, full_volume=True).numpy()
    h = 1e-5
    for c, v in [(0, (8, 8, 8)), (1, (6, 9, 7)), (0, (3, 12, 10)), (1, (10, 4, 13))]:
        plus, minus = image.copy(), image.copy()
        plus[(c,) + v] += h
        minus[(c,) + v] -= h
        fd = (_target_value(model, plus, mask) - _target_value(model, minus, mask)) / (2 * h)
        assert grad[(c,) + v] == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_softmax_target_is_the_lesion_logit_not_the_probability():
    model = tiny_model("softmax", seed=6)
    image = synthetic_image(SHAPE, seed=7)
    mask = box_mask(SHAPE, (5, 5, 5), (7, 7, 7))
    x = torch.from_numpy(image)[None].requires_grad_(True)
    out = model(x)
    (direct,) = torch.autograd.grad(out[0, 1][torch.from_numpy(mask)].sum(), x)
    (via_prob,) = torch.autograd.grad(torch.softmax(model(x), 1)[0, 1][torch.from_numpy(mask)].sum(), x)
    grad = Gradient(model).attribute(image, mask, full_volume=True)
    torch.testing.assert_close(grad, direct[0], rtol=1e-10, atol=1e-12)
    assert not torch.allclose(grad, via_prob[0], rtol=1e-3)


def test_mean_is_sum_divided_by_lesion_size():
    model = tiny_model(seed=8)
    image = synthetic_image(SHAPE, seed=9)
    mask = box_mask(SHAPE, (4, 4, 4), (7, 6, 8))
    g_sum = Gradient(model).attribute(image, mask, aggregation="sum", full_volume=True)
    g_mean = Gradient(model).attribute(image, mask, aggregation="mean", full_volume=True)
    torch.testing.assert_close(g_mean * mask.sum(), g_sum, rtol=1e-10, atol=1e-12)


def _brute_force_max(model, inputs, mask):
    """Loop over lesion voxels, one backward pass each, keeping the largest-magnitude value with its sign."""
    best = torch.zeros_like(inputs)
    for b in range(inputs.shape[0]):
        x = inputs[b : b + 1].clone().requires_grad_(True)
        z = model.lesion_logit(model(x))[0, 0]
        for v in np.argwhere(mask):
            (g,) = torch.autograd.grad(z[tuple(v)], x, retain_graph=True)
            best[b] = torch.where(g[0].abs() > best[b].abs(), g[0], best[b])
    return best


@pytest.mark.parametrize("batch_size", [1, 5, 64])
def test_max_aggregation_equals_brute_force_loop(batch_size):
    model = tiny_model(seed=10)
    image = synthetic_image(SHAPE, seed=11)
    mask = box_mask(SHAPE, (5, 5, 5), (7, 8, 7))
    mask[5, 5, 5] = False  # not a box: raster order and chunk edges must not matter
    inputs = torch.from_numpy(np.stack([image, image + 0.1 * synthetic_image(SHAPE, seed=12)]))
    masks = torch.from_numpy(mask)[None]
    fast = target_gradients(model, inputs, masks, "max", batch_size)[0]
    slow = _brute_force_max(model, inputs, mask)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-14)
    # and it differs from the sum target (it is a different explanation)
    assert not torch.allclose(fast, target_gradients(model, inputs, masks, "sum", batch_size)[0])


def test_max_aggregation_several_targets_share_the_pass():
    model = tiny_unet(seed=13)
    shape = (16, 16, 16)
    image = synthetic_image(shape, seed=14)
    m1 = box_mask(shape, (4, 4, 4), (6, 6, 5))
    m2 = box_mask(shape, (10, 9, 9), (12, 11, 11))
    inputs = torch.from_numpy(image)[None]
    both = target_gradients(model, inputs, torch.from_numpy(np.stack([m1, m2])), "max", 7)
    for k, m in enumerate((m1, m2)):
        torch.testing.assert_close(both[k], _brute_force_max(model, inputs, m), rtol=1e-12, atol=1e-14)


def test_smoothgrad_with_max_aggregation_equals_brute_force_over_the_same_noise():
    from LesionXAILib.explain.noise import positional_noise
    from LesionXAILib.crop import full_box

    model = tiny_model(seed=15)
    image = synthetic_image(SHAPE, seed=16)
    mask = box_mask(SHAPE, (5, 5, 5), (7, 7, 6))
    sigma = 0.3
    sg = SmoothGrad(model).attribute(image, mask, samples=3, sigma=[sigma, sigma], seed=4, aggregation="max", full_volume=True)
    box = full_box(SHAPE, model.size_divisor)
    noisy = torch.from_numpy(np.stack([image + sigma * positional_noise(4, s, box, 2) for s in range(3)]))
    ref = _brute_force_max(model, noisy, mask).mean(0)
    torch.testing.assert_close(sg, ref, rtol=1e-6, atol=1e-12)


def test_no_gradient_leaks_and_model_state_restored():
    model = tiny_model(seed=17)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    image = synthetic_image(SHAPE, seed=18)
    mask = box_mask(SHAPE, (5, 5, 5), (7, 7, 7))
    with torch.no_grad():  # a caller's no_grad/inference mode must not break explanations
        g1 = Gradient(model).attribute(image, mask, full_volume=True)
    with torch.inference_mode():
        g2 = Gradient(model).attribute(image, mask, full_volume=True)
    assert model.training  # flag restored
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():  # eval mode during the call: running stats untouched
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    model.eval()
    torch.testing.assert_close(Gradient(model).attribute(image, mask, full_volume=True), g1, rtol=0, atol=0)


def test_instance_target_object_and_tensor_masks_are_accepted():
    model = tiny_model(seed=19)
    image = synthetic_image(SHAPE, seed=20)
    mask = box_mask(SHAPE, (5, 5, 5), (7, 7, 7))
    a = Gradient(model).attribute(image, InstanceTarget(mask, "mean", 3), full_volume=True)
    b = Gradient(model).attribute(torch.from_numpy(image)[None], torch.from_numpy(mask), aggregation="mean", full_volume=True)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
