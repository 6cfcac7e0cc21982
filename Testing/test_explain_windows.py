"""Per-voxel windows of max aggregation: the plan, the engine on it, and agreement with the full volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain import SmoothGrad
from LesionXAILib.explain.region import explain_box, explain_crop, window_margin
from LesionXAILib.explain.vjp import target_gradients, voxel_copies
from LesionXAILib.explain.windows import axis_windows, voxel_windows

from explain_fixtures import box_mask, synthetic_image, tiny_model, tiny_unet


@pytest.mark.parametrize("divisor", [1, 2, 8, 16])
def test_axis_windows_hold_every_coordinate_with_the_margin_on_the_divisor_grid(divisor):
    rng = np.random.default_rng(divisor)
    for _ in range(200):
        length = divisor * int(rng.integers(1, 12))
        margin = int(rng.integers(0, 14))
        coords = sorted(set(rng.integers(0, length, size=int(rng.integers(1, 12))).tolist()))
        plan = axis_windows(coords, margin, length, divisor)
        assert sorted(plan) == coords
        for c, (start, size) in plan.items():
            stop = start + size
            assert start % divisor == 0 and size % divisor == 0 and 0 <= start and stop <= length
            assert start <= c < stop
            assert c - start >= margin or start == 0, (c, start, size, margin)
            assert stop - 1 - c >= margin or stop == length, (c, start, size, margin)
            # never larger than the margin needs: 2 m + 1 voxels rounded up, plus one grid step of freedom
            assert size < 2 * margin + 1 + 2 * divisor


def test_axis_windows_reject_a_crop_off_the_grid_and_voxels_outside_it():
    with pytest.raises(ParameterError, match="multiple"):
        axis_windows([3], 2, 30, 16)
    with pytest.raises(ParameterError, match="outside"):
        axis_windows([40], 2, 32, 16)


def test_voxel_windows_hold_each_voxel_once_with_its_target_in_raster_order():
    shape = (32, 32, 48)
    m1 = box_mask(shape, (3, 4, 5), (9, 7, 26))
    m2 = box_mask(shape, (20, 20, 30), (23, 22, 33))
    masks = torch.from_numpy(np.stack([m1, m2]))
    windows = voxel_windows(masks, (4, 5, 6), 8)
    seen = []
    for w in windows:
        assert all(s % 8 == 0 for s in w.start) and all(n % 8 == 0 for n in w.shape)
        assert all(s + n <= full for s, n, full in zip(w.start, w.shape, shape))
        for k, v in zip(w.targets, w.voxels):
            g = tuple(a + b for a, b in zip(w.start, v))
            assert all(0 <= a < n for a, n in zip(v, w.shape))
            assert masks[(k,) + g]
            seen.append((k,) + g)
        pairs = list(zip(w.targets, w.voxels))
        assert pairs == sorted(pairs)  # target, then raster order: ties keep the first, as a plain loop
    assert sorted(seen) == sorted(map(tuple, torch.nonzero(masks).tolist()))
    assert len(seen) == len(set(seen))


def _brute_force_on_windows(model, inputs, masks, windows):
    """Every voxel alone: slice its window, run the network, one backward pass, keep the largest magnitude."""
    best = torch.zeros((masks.shape[0],) + tuple(inputs.shape), dtype=inputs.dtype)
    for w in windows:
        for k, v in zip(w.targets, w.voxels):
            for b in range(inputs.shape[0]):
                x = inputs[b][(slice(None),) + w.slices][None].clone().requires_grad_(True)
                (g,) = torch.autograd.grad(model.lesion_logit(model(x))[(0, 0) + tuple(v)], x)
                region = best[k, b][(slice(None),) + w.slices]
                region.copy_(torch.where(g[0].abs() > region.abs(), g[0], region))
    return best


def test_max_gradients_on_windows_equal_one_pass_per_voxel_on_its_window():
    model = tiny_unet(seed=21)
    shape = (24, 24, 32)
    image = synthetic_image(shape, seed=22)
    big = box_mask(shape, (8, 8, 9), (11, 11, 12))  # 27 voxels: windows with >= 8 voxels run copies
    small = box_mask(shape, (16, 15, 24), (17, 17, 25))  # 2 voxels: a shared forward pass
    masks = torch.from_numpy(np.stack([big, small]))
    windows = voxel_windows(masks, (3, 3, 3), model.size_divisor)
    copies = [voxel_copies(w.size, len(w.voxels)) for w in windows]
    assert max(copies) > 1 and min(copies) == 1, copies  # both engine paths are exercised
    inputs = torch.from_numpy(np.stack([image, image + 0.2 * synthetic_image(shape, seed=23)]))
    fast = target_gradients(model, inputs, masks, "max", 8, windows=windows)
    torch.testing.assert_close(fast, _brute_force_on_windows(model, inputs, masks, windows), rtol=1e-10, atol=1e-13)


def test_max_roi_equals_the_full_volume_when_the_margin_covers_the_receptive_field():
    # TinyNet's receptive field is 6 voxels around an output voxel and it commutes with even shifts, so a
    # window holding 8 voxels around every lesion voxel computes exactly what the whole volume computes
    model = tiny_model(seed=24)
    shape = (24, 28, 30)
    image = synthetic_image(shape, seed=25)
    mask = box_mask(shape, (10, 12, 7), (11, 13, 19))  # 12 voxels along i: several windows
    kw = dict(samples=2, seed=3, aggregation="max")
    box = explain_box(mask, (1.0, 1.0, 1.0), 8, model.size_divisor)
    crop = explain_crop(model, image, [mask], box, "max", 8, (1.0, 1.0, 1.0))
    assert len(crop.windows) > 1 and all(w.size < np.prod(box.shape) for w in crop.windows)
    full = SmoothGrad(model).attribute(image, mask, full_volume=True, **kw)
    roi = SmoothGrad(model).attribute(image, mask, margin_mm=8, **kw)
    torch.testing.assert_close(roi, full, rtol=1e-9, atol=1e-12)
    small = SmoothGrad(model).attribute(image, mask, margin_mm=1, **kw)
    assert not torch.allclose(small, full, rtol=1e-6)


def test_window_margin_applies_to_max_on_a_crop_only():
    assert window_margin("max", 8.0, (3.0, 1.0, 0.5)) == (3, 8, 16)
    assert window_margin("sum", 8.0, (1.0, 1.0, 1.0)) is None
    assert window_margin("mean", 8.0, (1.0, 1.0, 1.0)) is None
    assert window_margin("max", 8.0, (1.0, 1.0, 1.0), full_volume=True) is None
