"""Metrics with the shipped demo model on a phantom (skipped while the demo model is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesionXAILib.resources import DEMO_MODEL_NAME, resources_dir

DEMO_MODEL = resources_dir() / "models" / DEMO_MODEL_NAME
pytestmark = pytest.mark.skipif(not DEMO_MODEL.exists(), reason=f"demo model {DEMO_MODEL} is not installed")

from LesionXAILib.explain import ExplainSettings, explain_instance  # noqa: E402
from LesionXAILib.metrics import deletion_insertion, deletion_region, feature_order, instance_inputs  # noqa: E402
from LesionXAILib.model_loading import load_model  # noqa: E402
from LesionXAILib.phantom import PhantomSettings, generate_phantom  # noqa: E402
from LesionXAILib.segmentation import SegmentationSettings, segment  # noqa: E402


def test_a_random_map_deletes_worse_than_the_gradient():
    model = load_model()
    p = generate_phantom(21, PhantomSettings(n_lesions=6, fov_mm=(64.0, 64.0, 64.0)))
    result = segment(p.pair(), model, SegmentationSettings(), ground_truth=p.lesions)
    tp = sorted((r for r in result.instances.instances if r.status == "TP"), key=lambda r: r.voxels)[:2]
    assert tp, "the demo model found no lesion in this phantom"
    settings = ExplainSettings(methods=("gradient",))
    for row in tp:
        mask = result.instances.mask(row.id)
        e = explain_instance(model, result.normalized, mask, result.geometry, settings)
        inputs = instance_inputs(model, result.normalized, mask, result.geometry, settings)
        region = deletion_region(inputs, 4.0)
        gradient = deletion_insertion(inputs, feature_order(inputs.attribution(e, "gradient"), region), steps=8)
        noise = torch.from_numpy(np.random.default_rng(row.id).normal(size=tuple(inputs.crop.image.shape)))
        random = deletion_insertion(inputs, feature_order(noise, region), steps=8)
        # lower deletion AUC is better: removing what the gradient ranks first must hurt S more than random removal
        assert gradient.deletion_auc < random.deletion_auc - 0.1, (row.id, gradient.deletion_auc, random.deletion_auc)
        assert gradient.insertion_auc > random.insertion_auc, row.id
        assert 0.2 < random.deletion_auc < 0.8  # a random order removes S roughly linearly
