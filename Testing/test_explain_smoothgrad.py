"""SmoothGrad and integrated gradients: noise 0, seeds, positional noise, ROI vs full volume, completeness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain_fixtures import box_mask, logits, synthetic_image, tiny_model, tiny_unet, unit_geometry
from LesionXAILib.explain import ExplainSettings, Gradient, IntegratedGradients, InstanceTarget, SmoothGrad
from LesionXAILib.explain.api import iter_explanations
from LesionXAILib.explain.noise import TILE, positional_noise
from LesionXAILib.errors import ParameterError
from LesionXAILib.crop import CropBox, align_box, full_box, grow_aligned, ladder_size, lesion_box

SHAPE = (16, 16, 16)


def test_smoothgrad_with_zero_noise_equals_the_gradient():
    model = tiny_model(seed=1)
    image = synthetic_image(SHAPE, seed=2)
    mask = box_mask(SHAPE, (7, 7, 7), (9, 10, 9))
    g = Gradient(model).attribute(image, mask, full_volume=True)
    sg = SmoothGrad(model).attribute(image, mask, samples=5, noise_level=0.0, full_volume=True, batch_size=3)
    torch.testing.assert_close(sg, g, rtol=1e-10, atol=1e-13)


def test_smoothgrad_seeds_are_deterministic_and_distinct():
    model = tiny_model(seed=3)
    image = synthetic_image(SHAPE, seed=4)
    mask = box_mask(SHAPE, (7, 7, 7), (9, 10, 9))
    sg = SmoothGrad(model)
    a = sg.attribute(image, mask, samples=4, seed=7, margin_mm=4)
    b = sg.attribute(image, mask, samples=4, seed=7, margin_mm=4)
    c = sg.attribute(image, mask, samples=4, seed=8, margin_mm=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert (a - c).abs().max() > 1e-3 * a.abs().max()
    # batching the samples differently changes nothing but rounding
    d = sg.attribute(image, mask, samples=4, seed=7, margin_mm=4, batch_size=1)
    torch.testing.assert_close(a, d, rtol=1e-9, atol=1e-12)


def test_smoothgrad_variants_are_mean_of_square_and_abs():
    model = tiny_model(seed=5)
    image = synthetic_image(SHAPE, seed=6)
    mask = box_mask(SHAPE, (7, 7, 7), (9, 9, 9))
    box = full_box(SHAPE, model.size_divisor)
    sigma = 0.4
    grads = [
        Gradient(model).attribute(image + sigma * positional_noise(3, s, box, 2), mask, full_volume=True)
        for s in range(3)
    ]
    sg = SmoothGrad(model)
    kw = dict(samples=3, sigma=[sigma, sigma], seed=3, full_volume=True)
    torch.testing.assert_close(sg.attribute(image, mask, **kw), sum(grads) / 3, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        sg.attribute(image, mask, variant="smoothgrad_squared", **kw), sum(g * g for g in grads) / 3, rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(
        sg.attribute(image, mask, variant="smoothgrad_abs", **kw), sum(g.abs() for g in grads) / 3, rtol=1e-9, atol=1e-12
    )


def test_default_sigma_is_five_percent_of_the_flair_range_for_both_channels():
    from LesionXAILib.explain.smoothgrad import noise_sigma

    image = synthetic_image(SHAPE, seed=7)
    sigma = noise_sigma(image, 0.05)
    flair_range = image[0].max() - image[0].min()
    np.testing.assert_allclose(sigma, [0.05 * flair_range] * 2)
    per_channel = noise_sigma(image, 0.05, per_channel=True)
    np.testing.assert_allclose(per_channel, 0.05 * (image.max(axis=(1, 2, 3)) - image.min(axis=(1, 2, 3))))


def test_positional_noise_of_a_crop_equals_the_full_volume_noise_there():
    shape = (40, 37, 50)
    full = positional_noise(11, 2, full_box(shape, 1), 2)
    assert full.shape == (2,) + shape
    assert abs(full.mean()) < 0.02 and abs(full.std() - 1) < 0.02
    mask = box_mask(shape, (30, 3, 20), (33, 6, 24))
    for box in (lesion_box(mask, (1, 1, 1), 5), align_box(lesion_box(mask, (1, 1, 1), 6), 8)):
        crop = positional_noise(11, 2, box, 2)
        np.testing.assert_array_equal(crop[(slice(None),) + box.inner], full[(slice(None),) + box.slices])
        padding = np.ones(box.shape, bool)
        padding[box.inner] = False
        assert not crop[:, padding].any()  # no noise on padding beyond the image
    other = positional_noise(11, 3, full_box(shape, 1), 2)
    assert abs(np.corrcoef(full.ravel(), other.ravel())[0, 1]) < 0.01  # samples are independent
    # tiles do not repeat each other
    t0 = full[0, :TILE, :TILE, :TILE].ravel()
    t1 = full[0, :TILE, :TILE, TILE : 2 * TILE].ravel()
    assert abs(np.corrcoef(t0, t1)[0, 1]) < 0.1


def test_grow_aligned_holds_the_box_stays_on_the_grid_and_prefers_image_to_padding():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        d = int(rng.choice([1, 2, 4, 8, 16]))
        n = int(rng.integers(1, 90))
        a = int(rng.integers(0, n))
        b = int(rng.integers(a + 1, n + 1))
        box = align_box(CropBox((slice(a, b),) * 3, ((0, 0),) * 3, (n, n, n)), d)
        want = box.shape[0] + d * int(rng.integers(0, 6))
        grown = grow_aligned(box, (want,) * 3, d)
        s = grown.slices[0]
        assert grown.shape == (want,) * 3 and s.start % d == 0 and grown.pad[0][0] == 0
        assert s.start <= box.slices[0].start and s.stop >= box.slices[0].stop and s.stop <= n
        # padding only where the image cannot supply the voxels on the grid
        assert grown.pad[0][1] == 0 or s.start == 0 or s.stop == n
    # growth is split around the box: a box in the middle of a long axis grows on both sides
    mid = grow_aligned(CropBox((slice(40, 56),) * 3, ((0, 0),) * 3, (128,) * 3), (48, 48, 48), 8)
    assert mid.slices[0] == slice(24, 72) and mid.pad[0] == (0, 0)  # 16 voxels each side
    with pytest.raises(ParameterError):
        grow_aligned(CropBox((slice(4, 12),) * 3, ((0, 0),) * 3, (64,) * 3), (16, 16, 16), 8)  # not on the grid
    assert [ladder_size(n, 8) for n in (1, 8, 9, 33, 48, 49, 65)] == [8, 8, 16, 40, 48, 64, 80]
    assert all(ladder_size(n, 16) % 16 == 0 and ladder_size(n, 16) >= n for n in range(1, 300))


def test_align_box_starts_on_the_divisor_grid_and_pads_only_at_the_image_end():
    box = align_box(CropBox((slice(5, 20), slice(0, 9), slice(30, 45)), ((0, 0),) * 3, (40, 40, 45)), 8)
    assert [s.start for s in box.slices] == [0, 0, 24]
    assert [s.stop for s in box.slices] == [24, 16, 45]
    assert box.pad == ((0, 0), (0, 0), (0, 3))
    assert all(n % 8 == 0 for n in box.shape)


def test_roi_mode_matches_full_volume_when_the_margin_covers_the_receptive_field():
    # TinyNet's receptive field is 6 voxels in each direction around an output voxel (3 + 2 x (1 + ...))
    model = tiny_model(seed=8)
    shape = (24, 28, 20)
    image = synthetic_image(shape, seed=9)
    mask = box_mask(shape, (9, 11, 7), (12, 14, 10))
    kw = dict(samples=3, seed=1)
    full = SmoothGrad(model).attribute(image, mask, full_volume=True, **kw)
    roi = SmoothGrad(model).attribute(image, mask, margin_mm=8, **kw)
    torch.testing.assert_close(roi, full, rtol=1e-9, atol=1e-12)
    small = SmoothGrad(model).attribute(image, mask, margin_mm=1, **kw)
    assert not torch.allclose(small, full, rtol=1e-6)


def test_roi_mode_fidelity_on_a_unet_grows_with_the_margin():
    model = tiny_unet(seed=10, dtype=torch.float32)
    shape = (40, 40, 40)
    image = synthetic_image(shape, seed=11, dtype=np.float32)
    mask = box_mask(shape, (18, 19, 20), (21, 22, 22))
    full = SmoothGrad(model).attribute(image, mask, samples=2, full_volume=True)
    r = []
    for margin in (2, 6, 12):
        roi = SmoothGrad(model).attribute(image, mask, samples=2, margin_mm=margin)
        r.append(np.corrcoef(roi.numpy().ravel(), full.numpy().ravel())[0, 1])
    assert r[0] < r[2] and r[2] > 0.99, r


def test_instance_maps_do_not_depend_on_the_other_instances_in_the_call():
    model = tiny_unet(seed=12)
    shape = (32, 32, 32)
    image = synthetic_image(shape, seed=13)
    geo = unit_geometry(shape)
    a = InstanceTarget(box_mask(shape, (5, 5, 5), (7, 7, 7)), instance_id=1)
    b = InstanceTarget(box_mask(shape, (7, 7, 7), (8, 8, 8)), instance_id=2)  # same crop as a
    c = InstanceTarget(box_mask(shape, (24, 24, 24), (27, 26, 26)), instance_id=3)
    settings = ExplainSettings(methods=("smoothgrad", "gradient"), samples=3, roi_margin_mm=4, batch_size=3)
    alone = next(iter_explanations(model, image, [a], geo, settings))
    together = {e.instance_id: e for e in iter_explanations(model, image, [c, b, a], geo, settings)}
    assert together[1].box == together[2].box  # shared one forward pass
    for key, arr in alone.maps.items():
        np.testing.assert_allclose(together[1].maps[key], arr, rtol=1e-6, atol=1e-9)


def test_integrated_gradients_are_complete():
    model = tiny_model(seed=14)
    image = synthetic_image(SHAPE, seed=15)
    mask = box_mask(SHAPE, (7, 7, 7), (9, 10, 9))
    ig = IntegratedGradients(model).attribute(image, mask, steps=64, full_volume=True)
    gap = logits(model, image)[mask].sum() - logits(model, np.zeros_like(image))[mask].sum()
    assert float(ig.sum()) == pytest.approx(float(gap), rel=2e-3)
    coarse = IntegratedGradients(model).attribute(image, mask, steps=1, full_volume=True)
    mid = Gradient(model).attribute(image / 2, mask, full_volume=True) * torch.from_numpy(image)
    torch.testing.assert_close(coarse, mid, rtol=1e-9, atol=1e-12)  # one midpoint step = x * G(x / 2)
