"""The randomisation check over the crop and over the whole brain (CAMs), signed and absolute, against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from LesionXAILib.metrics.randomisation import brain_mask, compare_maps
from LesionXAILib.crop import CropBox


def test_brain_wide_and_crop_correlations_equal_scipy_on_the_supports():
    rng = np.random.default_rng(0)
    shape = (12, 14, 10)
    image = np.zeros((2, *shape))
    image[:, 2:10, 2:12, 1:9] = rng.normal(size=(2, 8, 10, 8))
    image[1, 1, 1, 1] = 3.0  # brain = any channel non-zero
    brain = brain_mask(image)
    assert brain.sum() == 8 * 10 * 8 + 1
    trained = rng.normal(size=shape)
    randomised = rng.normal(size=shape)
    box_slices = (slice(4, 8), slice(5, 9), slice(3, 7))
    # near the lesion the two maps agree (the crop passes as "unchanged"); elsewhere they do not
    randomised[box_slices] = trained[box_slices] * 2 + 1
    box = CropBox(slices=box_slices, pad=((0, 0), (0, 0), (0, 0)), full_shape=shape)
    r = compare_maps(trained, randomised, box, brain)
    assert r.spearman == pytest.approx(1.0) and r.spearman_abs < 1.0
    a, b = trained[brain], randomised[brain]
    assert r.spearman_brain == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert r.spearman_abs_brain == pytest.approx(spearmanr(np.abs(a), np.abs(b)).statistic, abs=1e-12)
    assert abs(r.spearman_brain) < 0.5
    assert set(r.to_dict()) == {"spearman", "spearman_abs", "spearman_brain", "spearman_abs_brain"}
    crop_only = compare_maps(trained, randomised, box)
    assert crop_only.spearman_brain is None and set(crop_only.to_dict()) == {"spearman", "spearman_abs"}
