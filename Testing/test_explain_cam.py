"""Grad-CAM / Grad-CAM++ against a slow direct implementation of science.md's formulas; layers; hooks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from explain_fixtures import box_mask, synthetic_image, tiny_model, tiny_unet
from LesionXAILib.errors import ParameterError
from LesionXAILib.explain import GradCAM, GradCAMpp
from LesionXAILib.explain.cam import resolve_layer

SHAPE = (16, 20, 12)


def _direct_cams(model, image, mask, layer_module):
    """Grad-CAM and Grad-CAM++ written out channel by channel, voxel sums as Python-level loops over channels."""
    store = {}
    handle = layer_module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        x = torch.from_numpy(image)[None]
        z = model.lesion_logit(model(x))[0, 0]
        score = z[torch.from_numpy(mask)].sum()
        (g,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    a, g = store["a"][0].detach().double(), g[0].double()
    cam = torch.zeros(a.shape[1:], dtype=torch.float64)
    campp = torch.zeros(a.shape[1:], dtype=torch.float64)
    for c in range(a.shape[0]):
        w = g[c].mean()
        total = a[c].sum()
        alpha = torch.zeros_like(g[c])
        gc = g[c].flatten()
        al = alpha.view(-1)
        for u in range(gc.numel()):
            den = 2 * gc[u] ** 2 + total * gc[u] ** 3
            al[u] = gc[u] ** 2 / den if den != 0 else 0.0
        wpp = (alpha * torch.relu(g[c])).sum()
        cam += w * a[c]
        campp += wpp * a[c]
    up = lambda m: F.interpolate(torch.relu(m)[None, None], size=image.shape[1:], mode="trilinear", align_corners=False)[0, 0]
    return up(cam), up(campp)


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_cams_equal_direct_formulas(head):
    model = tiny_model(head, seed=2)  # with the sigmoid head both maps are ~half zero: the ReLUs matter
    image = synthetic_image(SHAPE, seed=2)
    mask = box_mask(SHAPE, (7, 8, 5), (10, 11, 7))
    ref_cam, ref_pp = _direct_cams(model, image, mask, model.network.down)
    cam = GradCAM(model).attribute(image, mask, full_volume=True)
    pp = GradCAMpp(model).attribute(image, mask, full_volume=True)
    assert cam.shape == SHAPE and pp.shape == SHAPE
    assert ref_cam.max() > 0 and ref_pp.max() > 0
    torch.testing.assert_close(cam, ref_cam, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(pp, ref_pp, rtol=1e-9, atol=1e-12)
    # ROI mode: gradients from the crop, activations from the whole volume -> the same maps here
    torch.testing.assert_close(GradCAM(model).attribute(image, mask, margin_mm=8), ref_cam, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(GradCAMpp(model).attribute(image, mask, margin_mm=8), ref_pp, rtol=1e-9, atol=1e-12)


def test_cams_on_the_default_unet_layer_equal_direct_formulas():
    model = tiny_unet(seed=8)  # both maps non-zero, Grad-CAM partly cut by its ReLU
    shape = (16, 16, 16)
    image = synthetic_image(shape, seed=4)
    mask = box_mask(shape, (7, 7, 7), (9, 10, 9))
    name, module = resolve_layer(model)
    assert name == "model.1.submodule.2"
    ref_cam, ref_pp = _direct_cams(model, image, mask, module)
    assert ref_cam.max() > 0 and ref_pp.max() > 0
    torch.testing.assert_close(GradCAM(model).attribute(image, mask, full_volume=True), ref_cam, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(GradCAMpp(model).attribute(image, mask, full_volume=True), ref_pp, rtol=1e-9, atol=1e-12)


def test_layer_names_accept_prefixes_and_bad_names_fail_clearly():
    model = tiny_unet(seed=5)
    assert resolve_layer(model, "network.model.1.submodule.2")[0] == "model.1.submodule.2"
    assert resolve_layer(model, "module.model.1")[0] == "model.1"
    with pytest.raises(ParameterError, match="'model.9.conv' does not exist"):
        GradCAMpp(model, layer="model.9.conv")
    with pytest.raises(ParameterError, match="does not exist"):
        resolve_layer(model, "nonsense")


def test_hooks_are_removed_and_no_gradients_leak():
    model = tiny_model(seed=6)
    image = synthetic_image(SHAPE, seed=7)
    mask = box_mask(SHAPE, (7, 8, 5), (10, 11, 7))
    GradCAMpp(model).attribute(image, mask)
    GradCAM(model).attribute(image, mask, full_volume=True)
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
