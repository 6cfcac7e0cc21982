"""Context probe with the shipped demo model on phantoms (skipped while the demo model is not installed)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from LesionXAILib.resources import DEMO_MODEL_NAME, resources_dir

DEMO_MODEL = resources_dir() / "models" / DEMO_MODEL_NAME
pytestmark = pytest.mark.skipif(not DEMO_MODEL.exists(), reason=f"demo model {DEMO_MODEL} is not installed")
phantom_module = pytest.importorskip("LesionXAILib.phantom", reason="needs the phantom generator")

from LesionXAILib.model_loading import load_model  # noqa: E402
from LesionXAILib.probes import ContextSettings, context_probe_instances  # noqa: E402
from LesionXAILib.probes.curve import STATUSES  # noqa: E402
from LesionXAILib.probes.detection import score_prediction  # noqa: E402
from LesionXAILib.segmentation import SegmentationSettings, segment  # noqa: E402


@functools.lru_cache(maxsize=None)
def segmented_phantom(seed: int):
    model = load_model()
    p = phantom_module.generate_phantom(seed, phantom_module.PhantomSettings(n_lesions=8, fov_mm=(64.0, 64.0, 64.0)))
    return model, segment(p.pair(), model, SegmentationSettings(), ground_truth=p.lesions)


@pytest.mark.parametrize("seed", [21])
def test_every_true_positive_gets_a_finite_context_or_a_not_detected_flag(seed):
    model, result = segmented_phantom(seed)
    tp = [r.id for r in result.instances.instances if r.status == "TP"]
    assert tp, "the demo model found no lesion in this phantom"
    curves = context_probe_instances(model, result, tp, ContextSettings())
    for i, curve in curves.items():
        assert curve.status in STATUSES
        if curve.status == "not_detected":
            assert curve.context_needed_mm is None and not curve.full_context.detected
        else:
            assert curve.context_needed_mm is not None and math.isfinite(curve.context_needed_mm), (i, curve.description)
            assert 0.0 <= curve.context_needed_mm <= 15.0
            assert curve.detected[curve.radii_mm >= curve.context_needed_mm].all()


def test_full_context_crop_reproduces_the_whole_volume_prediction():
    model, result = segmented_phantom(21)
    # the whole-volume reference is one forward pass (the segmentation may blend sliding windows)
    with torch.inference_mode():
        whole = model.probability(model(torch.from_numpy(result.normalized)[None]))[0, 0].numpy()
    ids = result.instances.ids
    curves = context_probe_instances(model, result, ids, ContextSettings(radii_mm=(0.0, 15.0)))
    for i, curve in curves.items():
        expected = score_prediction(whole, result.instances.mask(i), result.threshold, result.instances.min_size_voxels)
        assert curve.full_context.detected == expected.detected, i
        assert curve.full_context.mean_probability == pytest.approx(expected.mean_probability, abs=1e-5)
        assert curve.full_context.dice == pytest.approx(expected.dice, abs=1e-6)
        if result.instances.get(i).status in ("TP", "FP") and np.allclose(whole, result.probability, atol=1e-5):
            assert curve.full_context.detected  # a predicted instance is detected by its own segmentation
