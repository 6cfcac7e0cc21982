"""Every Grad-CAM variant against a slow direct implementation of its formula (docs/methods.md#grad-cam), and the
anchor variant against MONAI's own GradCAMpp; layers; hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from explain_fixtures import box_mask, synthetic_image, tiny_model, tiny_unet
from LesionXAILib.errors import ParameterError
from LesionXAILib.explain import GradCAM, GradCAMpp
from LesionXAILib.explain.cam import resolve_layer
from LesionXAILib.explain.cam_variants import CAM_METHODS, GRADCAMPP_DEFAULT

SHAPE = (16, 20, 12)
VARIANTS = ("gradcam", "gradcam_relu", "gradcampp_paper", "gradcampp_local", "gradcampp_anchor", "layercam", "gradcampp_spatial")


def _layer_gradient(model, image, mask, layer_module):
    """Return (A, g) of one full-volume pass: the layer's activations and d(sum of lesion logits)/dA, float64."""
    store = {}
    handle = layer_module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        x = torch.from_numpy(image)[None]
        z = model.lesion_logit(model(x))[0, 0]
        score = z[torch.from_numpy(mask)].sum()
        (g,) = torch.autograd.grad(score, store["a"])
    finally:
        handle.remove()
    return store["a"][0].detach().double(), g[0].double()


def _touches_lesion(mask, grid):
    """Layer positions whose input footprint [u n/m, (u+1) n/m) overlaps the lesion's bounding box, by brute force."""
    idx = np.argwhere(mask)
    lo, hi = idx.min(0), idx.max(0)
    out = torch.zeros(grid, dtype=torch.bool)
    for u in np.ndindex(*grid):
        inside = True
        for axis in range(3):
            n, m = mask.shape[axis], grid[axis]
            start, stop = math.floor(u[axis] * n / m), math.ceil((u[axis] + 1) * n / m)
            inside &= start <= hi[axis] and stop > lo[axis]
        out[u] = bool(inside)
    return out


def _direct_cams(model, image, mask, layer_module):
    """Every variant written out channel by channel, the alphas as Python-level loops over layer positions."""
    a, g = _layer_gradient(model, image, mask, layer_module)
    box = _touches_lesion(mask, tuple(a.shape[1:]))
    maps = {v: torch.zeros(a.shape[1:], dtype=torch.float64) for v in VARIANTS}
    for c in range(a.shape[0]):
        gc, ac = g[c].flatten(), a[c].flatten()
        whole, local = ac.sum(), ac[box.flatten()].sum()
        monai_sum = (ac * gc**3).sum()
        w = {"gradcam": gc.mean(), "gradcam_relu": torch.relu(gc).mean()}
        spatial = torch.zeros_like(gc)  # gradcampp_spatial: the local alphas times ReLU(g), kept per position
        for name, total in (("gradcampp_paper", whole), ("gradcampp_local", local)):
            acc = 0.0
            for u in range(gc.numel()):
                den = 2 * gc[u] ** 2 + total * gc[u] ** 3
                term = (gc[u] ** 2 / den if den != 0 else 0.0) * max(gc[u], 0.0)
                acc += term
                if name == "gradcampp_local":
                    spatial[u] = term
            w[name] = acc
        acc = 0.0
        for u in range(gc.numel()):
            den = 2 * gc[u] ** 2 + monai_sum
            acc += gc[u] ** 2 / ((den if den != 0 else 1.0) + 1e-7) * max(gc[u], 0.0)
        w["gradcampp_anchor"] = acc
        for v in VARIANTS[:5]:
            maps[v] += w[v] * a[c]
        maps["layercam"] += torch.clamp(g[c], min=0) * a[c]  # LayerCAM: every position weighted by its own ReLU(g)
        maps["gradcampp_spatial"] += spatial.view(a[c].shape) * a[c]
    up = lambda m: F.interpolate(torch.relu(m)[None, None], size=image.shape[1:], mode="trilinear", align_corners=False)[0, 0]
    return {v: up(m) for v, m in maps.items()}


def _cam(model, method, image, mask, **kw):
    return GradCAMpp(model, method=method).attribute(image, mask, **kw)


# reach variant -> the per-channel variant whose map it keeps on the lesion's crop only
REACH = {"gradcam_reach": "gradcam", "gradcampp_reach": "gradcampp_local"}


def test_the_method_list_and_the_default_variant():
    assert set(CAM_METHODS) == {"gradcampp", *VARIANTS, *REACH}
    assert GRADCAMPP_DEFAULT in {*VARIANTS, *REACH} and GRADCAMPP_DEFAULT.startswith("gradcampp_")
    with pytest.raises(ParameterError, match="unknown CAM method 'gradcam_nonsense'"):
        GradCAMpp(tiny_model(seed=1), method="gradcam_nonsense")


@pytest.mark.parametrize("head", ["sigmoid", "softmax"])
def test_every_variant_equals_its_direct_formula(head):
    model = tiny_model(head, seed=2)  # with the sigmoid head the maps are ~half zero: the ReLUs matter
    image = synthetic_image(SHAPE, seed=2)
    mask = box_mask(SHAPE, (7, 8, 5), (10, 11, 7))
    ref = _direct_cams(model, image, mask, model.network.down)
    for v in VARIANTS:
        assert ref[v].max() > 0, v
        torch.testing.assert_close(_cam(model, v, image, mask, full_volume=True), ref[v], rtol=1e-9, atol=1e-12)
        # ROI mode: gradients (and the activations paired with them) from the crop, the rest from the
        # whole volume -> the same maps here, the crop holding the tiny network's receptive field
        torch.testing.assert_close(_cam(model, v, image, mask, margin_mm=8), ref[v], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(GradCAM(model).attribute(image, mask, full_volume=True), ref["gradcam"], rtol=1e-9, atol=1e-12)
    # whole volume: a reach variant's crop is the volume, so the default is its per-channel variant's map
    default = REACH.get(GRADCAMPP_DEFAULT, GRADCAMPP_DEFAULT)
    torch.testing.assert_close(GradCAMpp(model).attribute(image, mask, full_volume=True), ref[default], rtol=1e-9, atol=1e-12)
    # the variants are different maps, not one formula under several names
    assert min(float((ref[a] - ref[b]).abs().max()) for a in VARIANTS for b in VARIANTS if a != b) > 0


def test_reach_variants_are_the_per_channel_map_on_the_lesions_crop_only():
    from explain_fixtures import unit_geometry
    from LesionXAILib.explain.api import explain_instance
    from LesionXAILib.explain.settings import ExplainSettings

    model = tiny_model(seed=3)
    shape = (28, 30, 26)
    image = synthetic_image(shape, seed=6)
    mask = box_mask(shape, (12, 13, 11), (15, 16, 14))
    geometry = unit_geometry(shape)
    methods = tuple(REACH) + tuple(REACH.values())
    whole = explain_instance(model, image, mask, geometry, ExplainSettings(methods=methods, samples=1, full_volume=True))
    roi = explain_instance(model, image, mask, geometry, ExplainSettings(methods=methods, samples=1, roi_margin_mm=4, fidelity_check=False))
    start, stop = roi.box["start_kji"], roi.box["stop_kji"]
    inside = np.zeros(shape, dtype=bool)
    inside[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    assert 0 < inside.sum() < inside.size / 4  # a real crop, not the volume
    ref = {v: _direct_cams(model, image, mask, model.network.down)[v] for v in set(REACH.values())}
    for reach, plain in REACH.items():
        # whole volume: the crop is the volume and the map is the per-channel variant's
        np.testing.assert_array_equal(whole.maps[reach], whole.maps[plain])
        # (the pipeline's passes run on a batch-norm-folded copy: equal to the direct formula to float rounding)
        np.testing.assert_allclose(whole.maps[reach], ref[plain].numpy(), rtol=1e-6, atol=1e-12)
        # ROI mode: the same per-channel map inside the crop, 0 beyond it
        got = roi.maps[reach]
        assert np.all(got[~inside] == 0)
        np.testing.assert_array_equal(got[inside], roi.maps[plain][inside])
        np.testing.assert_allclose(got[inside], ref[plain].numpy()[inside], rtol=1e-6, atol=1e-12)
        assert got[inside].max() > 0 and ref[plain].numpy()[~inside].max() > 0  # the cut removed something


def test_variants_on_a_unet_decoder_layer_equal_direct_formulas():
    model = tiny_unet(seed=8)
    shape = (16, 16, 16)
    image = synthetic_image(shape, seed=4)
    mask = box_mask(shape, (7, 7, 7), (9, 10, 9))
    assert resolve_layer(model)[0] == "model.1"  # the measured default layer (full resolution)
    name, module = resolve_layer(model, "model.1.submodule.2")  # half resolution: the direct loops stay short
    ref = _direct_cams(model, image, mask, module)
    for v in VARIANTS:
        assert ref[v].max() > 0, v
        got = GradCAMpp(model, layer=name, method=v).attribute(image, mask, full_volume=True)
        torch.testing.assert_close(got, ref[v], rtol=1e-9, atol=1e-12)


class _InstanceScore(nn.Module):
    """Wraps a LesionModel so that its output is the instance's sum target S(x) as one 'class' (B, 1).

    MONAI's GradCAMpp then differentiates exactly S (class_idx=0). ``offset`` is subtracted from S: it
    changes neither the gradients nor the map's shape, only exp(S), which keeps MONAI's exp(S) finite.
    """

    def __init__(self, model, mask, offset: float = 0.0) -> None:
        super().__init__()
        self.lesion = model
        self.register_buffer("mask", torch.from_numpy(mask)[None, None].to(next(model.parameters()).dtype))
        self.offset = offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.lesion.lesion_logit(self.lesion(x))
        return (z * self.mask).sum(dim=(1, 2, 3, 4))[:, None] - self.offset


@pytest.mark.parametrize("which", ["tiny", "unet"])
def test_anchor_variant_is_monai_gradcampp_up_to_exp_of_the_score(which):
    from monai.visualize import GradCAMpp as MonaiGradCAMpp

    if which == "tiny":
        model, shape, layer = tiny_model("softmax", seed=3), SHAPE, "down"
        mask = box_mask(SHAPE, (6, 8, 4), (9, 12, 7))
    else:
        model, shape = tiny_unet(seed=8, head="softmax"), (16, 16, 16)
        layer = "model.1.submodule.2.0.conv"  # the transposed convolution, as the anchor's `.conv`
        mask = box_mask(shape, (7, 7, 7), (9, 10, 9))
    image = synthetic_image(shape, seed=5)
    ours = GradCAMpp(model, layer=layer, method="gradcampp_anchor").attribute(image, mask, full_volume=True)
    wrapper = _InstanceScore(model, mask)
    with torch.no_grad():
        score = float(wrapper(torch.from_numpy(image)[None]))
    wrapper.offset = score - 1.0  # MONAI's exp(S) is then e exactly
    cam = MonaiGradCAMpp(nn_module=wrapper, target_layers=f"lesion.network.{layer}", postprocessing=lambda m: m)
    ref = cam(torch.from_numpy(image)[None], class_idx=0)[0, 0].detach()
    assert ref.max() > 0
    torch.testing.assert_close(ours * math.e, ref.double(), rtol=1e-6, atol=1e-9 * float(ref.max()))
    r = np.corrcoef(ours.numpy().ravel(), ref.double().numpy().ravel())[0, 1]
    assert r >= 0.999


def test_the_paper_form_degenerates_and_the_local_form_does_not():
    """With a large whole-volume channel sum every positive gradient gets alpha ~ 1/(S g): the weight no longer
    follows the gradient's size (docs/methods.md#grad-cam). Checked on the weight formulas directly."""
    from LesionXAILib.explain.cam_variants import box_sums, closed_form_weights

    g = torch.zeros((2, 1, 4, 4, 4), dtype=torch.float64)
    g[0, 0, 0, 0, :2] = 0.5
    g[1, 0, 0, 0, :2] = 0.05  # the same positions, a gradient ten times smaller
    a = torch.ones((1, 4, 4, 4), dtype=torch.float64)
    huge = torch.tensor([1e6], dtype=torch.float64)
    paper = closed_form_weights(g, huge)
    assert float(paper[0, 0]) == pytest.approx(float(paper[1, 0]), rel=1e-4)  # gradient size lost
    boxes = torch.zeros((2, 4, 4, 4), dtype=torch.bool)
    boxes[:, 0, 0, :2] = True
    local = closed_form_weights(g, box_sums(a, boxes))
    assert local[0, 0] / local[1, 0] > 5  # gradient size kept


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
