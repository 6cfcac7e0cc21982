"""Explainers on the shipped demo model and phantoms: finite differences, randomisation sanity, the sign finding."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

from LesionXAILib.explain import ExplainSettings, Gradient, explain_instances
from LesionXAILib.metrics.randomisation import randomised_model, spearman
from LesionXAILib.model_loading import load_model
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.segmentation import SegmentationSettings, segment


@functools.lru_cache(maxsize=None)
def segmented(seed: int = 31):
    model = load_model()
    p = generate_phantom(seed, PhantomSettings(n_lesions=10, fov_mm=(72.0, 72.0, 72.0)))
    result = segment(p.pair(), model, SegmentationSettings(), ground_truth=p.lesions)
    tp = [r for r in result.instances.instances if r.status == "TP"]
    assert tp, "the demo model found no lesion in this phantom"
    return model, result, tp


def test_gradient_of_the_shipped_model_equals_finite_differences():
    model, result, tp = segmented()
    lesion = max(tp, key=lambda r: r.voxels)
    mask = result.instances.mask(lesion.id)
    # a 32^3 crop around the lesion keeps the float64 finite differences cheap
    c = np.round(lesion.centroid_ijk[::-1]).astype(int)
    lo = np.clip(c - 16, 0, np.array(mask.shape) - 32)
    sl = tuple(slice(int(a), int(a) + 32) for a in lo)
    image = result.normalized[(slice(None), *sl)].astype(np.float64)
    m = mask[sl]
    net64 = copy.deepcopy(model).double().eval()
    grad = Gradient(net64).attribute(image, m, full_volume=True).numpy()

    def target(x):
        with torch.no_grad():
            return float(net64.lesion_logit(net64(torch.from_numpy(x)[None]))[0, 0][torch.from_numpy(m)].sum())

    inside = np.argwhere(m)
    voxels = [tuple(inside[0]), tuple(inside[len(inside) // 2]), tuple(np.clip(inside[0] + 3, 0, 31))]
    h = 1e-4
    for ch in (0, 1):
        for v in voxels:
            plus, minus = image.copy(), image.copy()
            plus[(ch, *v)] += h
            minus[(ch, *v)] -= h
            fd = (target(plus) - target(minus)) / (2 * h)
            assert grad[(ch, *v)] == pytest.approx(fd, rel=1e-4, abs=1e-7), (ch, v)


def test_maps_of_a_randomised_network_do_not_resemble_the_trained_ones():
    """Adebayo et al.'s model-parameter randomisation: an explainer must depend on the weights.

    The signed maps must decorrelate; the absolute maps keep some rank correlation (both networks'
    gradients decay with distance from the lesion), which is reported, not asserted.
    """
    model, result, tp = segmented()
    ids = [r.id for r in tp[:3]]
    settings = ExplainSettings(methods=("smoothgrad",), samples=4, seed=0)
    trained = explain_instances(model, result, ids, settings)
    randomised = explain_instances(randomised_model(model, seed=0), result, ids, settings)
    report = {}
    for i in ids:
        for key in ("smoothgrad_flair", "smoothgrad_mprage"):
            a, b = trained[i].maps[key], randomised[i].maps[key]
            near = (a != 0) | (b != 0)
            report[(i, key)] = (spearman(a[near], b[near]), spearman(np.abs(a[near]), np.abs(b[near])))
            assert abs(report[(i, key)][0]) < 0.5, report
    print("Spearman (signed, abs) trained vs randomised:", report)


def test_flair_smoothgrad_is_positive_inside_true_positive_lesions():
    """The anchor study's finding (docs/methods.md#anchor-findings): positive FLAIR saliency inside TP lesions."""
    model, result, tp = segmented()
    settings = ExplainSettings(methods=("smoothgrad",), samples=8, seed=0)
    expl = explain_instances(model, result, [r.id for r in tp], settings)
    inside = np.array([e.statistics["smoothgrad_flair"]["inside_mean"] for e in expl.values()])
    assert (inside > 0).mean() >= 0.8, inside
    assert np.median(inside) > 0
