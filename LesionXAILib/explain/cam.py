"""Grad-CAM and its Grad-CAM++ variants at a named layer, instance-targeted (docs/methods.md#grad-cam).

With A^c the layer's activations and g^c_u = dS_k/dA^c_u, every variant's map is
ReLU(sum_c w_c A^c), resampled trilinearly from the layer grid to the input grid; the weights w_c of
each variant (gradcam, gradcam_relu, gradcampp_paper, gradcampp_local, gradcampp_anchor, the reach
variants that keep that map on the lesion's crop, and the default ``gradcampp``) are in
:mod:`LesionXAILib.explain.cam_variants`.
Whole-volume means and sums over u run over the layer's whole grid for the whole (padded) volume. In
ROI mode g comes from the lesion crop (it vanishes outside the instance's receptive field), while A
and its channel sums come from one gradient-free forward pass over the whole volume, shared by all
instances: the maps then match the full-volume ones up to the receptive field the crop cuts off.
Sums that pair A with g (MONAI's denominator, the lesion-box sums) use the crop's own activations.
CAM targets are always the sum (or mean) of the lesion logits; max aggregation applies to input
gradients only and CAMs fall back to the sum.

Default layer (MONAI UNet): ``model.1``, the full-resolution feature map entering the output layer (the
top skip connection: encoder features concatenated with the decoder's upsampled ones). Chosen by
measurement (benchmarks/bench_cam_variants.py, README "Grad-CAM for one lesion"): on the demo model every
variant ranks voxels better there (deletion / insertion AUC) than at ``model.1.submodule.2``, the
half-resolution decoder block that was the default before. Its whole-volume activations cost
channels x voxels x 4 bytes (630 MB for the demo model on a 160 x 192 x 160 grid). The anchor hooked ``model.1.submodule.2.conv``, the transposed convolution of
the same block before its normalisation and activation, through MONAI's formula: ``gradcampp_anchor``
at that layer (``--preset anchor``) reproduces it; other variants at ``.conv`` do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.cam_variants import CAM_METHODS, REACH_VARIANTS, SPATIAL_VARIANTS, VARIANTS, closed_form_weights, variant_of
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.targets import target_weights
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.crop import CropBox, full_box

CAM_DEFAULT_LAYERS = ("model.1", "model.1.submodule.2")


def resolve_layer(model: LesionModel, name: Optional[str] = None) -> tuple[str, nn.Module]:
    """Return (name relative to the network, module) of a CAM layer; ``None`` picks the documented default.

    Names may be relative to the network (``model.1.submodule.2``), to the LesionModel
    (``network.model.1.submodule.2``) or carry a DataParallel ``module.`` prefix.
    """
    network = model.network
    if name is None:
        name = model.config.cam_layer
    if name is None:
        for candidate in CAM_DEFAULT_LAYERS:
            module = _find(network, candidate)
            if module is not None:
                return candidate, module
        raise ParameterError(
            "no default CAM layer for this network (it is not a MONAI UNet); give one by module name (--cam-layer)"
        )
    key = name[len("module.") :] if name.startswith("module.") else name
    key = key[len("network.") :] if key.startswith("network.") else key
    module = _find(network, key)
    if module is None:
        names = [n for n, _ in network.named_modules() if n]
        near = [n for n in names if n.startswith(key.rsplit(".", 1)[0])][:8] or names[:8]
        raise ParameterError(
            f"CAM layer '{name}' does not exist in the network; examples of valid names: {', '.join(near)}"
        )
    if module is network:
        raise ParameterError("CAM layer name is empty; give a module name such as 'model.1.submodule.2'")
    return key, module


def _find(network: nn.Module, name: str) -> Optional[nn.Module]:
    try:
        return network.get_submodule(name)
    except AttributeError:
        return None


class _Capture:
    """Forward hook recording a layer's output; removed by :meth:`remove` (always, via ``with``)."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.name = name
        self.output: Optional[torch.Tensor] = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim != 5:
            raise ParameterError(f"CAM layer '{self.name}' does not output a (B, C, k, j, i) tensor")
        self.output = output

    def remove(self) -> None:
        self.handle.remove()

    def __enter__(self) -> "_Capture":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class LayerActivations:
    """A layer's activations over the whole (padded) volume and their per-channel sums over the grid."""

    layer: str
    activations: torch.Tensor  # (C_layer, *layer grid)
    channel_sums: torch.Tensor  # (C_layer,) float64
    padded_shape: tuple[int, int, int]  # the network input grid the layer grid is resampled to

    @property
    def positions(self) -> int:
        """Return the number of positions u of the layer grid."""
        return int(np.prod(self.activations.shape[1:]))


def layer_activations(model: LesionModel, image: np.ndarray | torch.Tensor, layer: Optional[str] = None) -> LayerActivations:
    """Return the CAM layer's activations for the whole (C, k, j, i) normalised image (one forward pass, no gradients)."""
    name, module = resolve_layer(model, layer)
    box = full_box(tuple(image.shape[1:]), model.size_divisor)
    x = box.extract(image, 0.0)
    x = x.detach().clone() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    p = next(model.parameters(), None)
    x = x.to(device=model.device, dtype=p.dtype if p is not None else torch.float32)
    with _Capture(module, name) as cap, torch.no_grad():
        model(x[None])
    return _as_layer_activations(name, model.layer_to_canonical(cap.output[0].detach()), box)  # model axes -> k, j, i


def _as_layer_activations(name: str, a: torch.Tensor, box: CropBox) -> LayerActivations:
    return LayerActivations(name, a, a.sum(dim=(1, 2, 3), dtype=torch.float64), tuple(box.shape))


def layer_gradients(
    model: LesionModel, crop: CropInputs, layer: str, aggregation: str = "sum"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (A (C_layer, *grid), g (K, C_layer, *grid)): the layer's activations on the crop and dS_k/dA."""
    name, module = resolve_layer(model, layer)
    weights = target_weights(crop.masks, "sum" if aggregation == "max" else aggregation).to(crop.image.dtype)
    with _Capture(module, name) as cap:
        x = crop.image[None].detach().clone()
        z = model.lesion_logit(model(x))
        a = cap.output
        if a is None:
            raise ParameterError(f"CAM layer '{name}' is not used by the network's forward pass")
        grads = []
        for k in range(weights.shape[0]):
            (g,) = torch.autograd.grad(z, a, weights[k][None, None], retain_graph=k < weights.shape[0] - 1)
            grads.append(g[0])
    return a[0].detach(), torch.stack(grads)


def gradcampp_weights(g: torch.Tensor, channel_sums: torch.Tensor) -> torch.Tensor:
    """Return (K, C) weights of the closed-form Grad-CAM++ with whole-volume channel sums (``gradcampp_paper``)."""
    return closed_form_weights(g, channel_sums)


def lesion_boxes(masks: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Return (K, *grid) bool: each (K, *crop) mask's bounding box mapped onto a layer grid covering the same crop."""
    shape = masks.shape[1:]
    out = torch.zeros((masks.shape[0], *grid), dtype=torch.bool, device=masks.device)
    for k in range(masks.shape[0]):
        idx = torch.nonzero(masks[k])
        if idx.numel() == 0:
            continue
        lo, hi = idx.min(0).values.tolist(), idx.max(0).values.tolist()
        sl = []
        for a, b, n, m in zip(lo, hi, shape, grid):
            # every layer position whose footprint on the input grid touches the box
            start = int(np.floor(a * m / n))
            stop = max(start + 1, int(np.ceil((b + 1) * m / n)))
            sl.append(slice(start, min(stop, int(m))))
        out[(k, *sl)] = True
    return out


def cam_from_weights(weights: torch.Tensor, full: LayerActivations, image_shape: Sequence[int]) -> torch.Tensor:
    """Return the (k, j, i) map ReLU(sum_c w_c A^c) resampled (trilinear) to the padded input grid, cut to the image."""
    a = full.activations
    cam = torch.relu(torch.einsum("c,c...->...", weights.to(a.dtype), a))
    up = F.interpolate(cam[None, None], size=full.padded_shape, mode="trilinear", align_corners=False)[0, 0]
    k, j, i = (int(s) for s in image_shape)
    return up[:k, :j, :i]


def cam_maps(
    model: LesionModel,
    crop: CropInputs,
    methods: Sequence[str],
    layer: Optional[str] = None,
    aggregation: str = "sum",
    full: Optional[LayerActivations] = None,
    image: Optional[np.ndarray | torch.Tensor] = None,
) -> dict[str, torch.Tensor]:
    """Return {method: (K, k, j, i)} full-grid CAMs of the K targets for each CAM method (cam_variants.CAM_METHODS).

    ``full`` (whole-volume activations of the same layer) is needed unless the crop is the whole
    volume; pass it to share one forward pass between instances, or pass ``image`` to compute it.
    """
    bad = [m for m in methods if m not in CAM_METHODS]
    if bad:
        raise ParameterError(f"unknown CAM method(s) {bad}; choose from {', '.join(CAM_METHODS)}")
    name, _ = resolve_layer(model, layer)
    a, g = layer_gradients(model, crop, name, aggregation)
    if crop.is_full:
        full = _as_layer_activations(name, model.layer_to_canonical(a), crop.box)  # model axes -> k, j, i
    elif full is None:
        if image is None:
            raise ParameterError("ROI-mode CAMs need the whole image (or its layer activations)")
        full = layer_activations(model, image, name)
    elif full.layer != name:
        raise ParameterError(f"layer activations are of '{full.layer}', not of the CAM layer '{name}'")
    image_shape = crop.box.full_shape
    g = g.to(torch.float64)
    a64 = a.to(torch.float64)
    boxes = lesion_boxes(crop.masks, a.shape[1:])
    out = {}
    for method in methods:
        variant = variant_of(method)
        reach = variant in REACH_VARIANTS
        variant = REACH_VARIANTS.get(variant, variant)
        if variant in SPATIAL_VARIANTS:
            out[method] = spatial_cam(SPATIAL_VARIANTS[variant](g, a64, boxes), a64, crop).to(full.activations.dtype)
            continue
        w = VARIANTS[variant](g, a64, full.positions, full.channel_sums, boxes)
        maps = torch.stack([cam_from_weights(wk, full, image_shape) for wk in w])
        out[method] = keep_on_crop(maps, crop) if reach else maps
    return out


def keep_on_crop(maps: torch.Tensor, crop: CropInputs) -> torch.Tensor:
    """Return (K, k, j, i) full-grid maps set to 0 beyond the crop's image part (the lesions' measured reach)."""
    kept = torch.zeros_like(maps)
    sl = (slice(None), *crop.box.slices)
    kept[sl] = maps[sl]
    return kept


def spatial_cam(weights: torch.Tensor, a: torch.Tensor, crop: CropInputs) -> torch.Tensor:
    """Return (K, k, j, i) full-grid maps ReLU(sum_c w^c_u A^c_u) of per-position weights (K, C, *crop layer grid).

    The weights vanish where the crop's gradient does, so the map is resampled on the crop and is 0 beyond it.
    """
    cam = torch.relu(torch.einsum("kc...,c...->k...", weights, a))
    up = F.interpolate(cam[:, None], size=tuple(crop.box.shape), mode="trilinear", align_corners=False)[:, 0]
    return torch.from_numpy(crop.insert(up))
