"""Grad-CAM and Grad-CAM++ at a named layer, instance-targeted (science.md section 3).

With A^c the layer's activations and g^c_u = dS_k/dA^c_u:
  Grad-CAM   w_c = mean_u g^c_u
  Grad-CAM++ alpha^c_u = (g^c_u)^2 / (2 (g^c_u)^2 + (sum_v A^c_v) (g^c_u)^3), 0 where the denominator is 0,
             w_c = sum_u alpha^c_u ReLU(g^c_u)  (the paper's closed form; no exp(S) factor, which
             overflows for instance sums, and not MONAI's/medcam's variant)
  map = ReLU(sum_c w_c A^c), resampled trilinearly from the layer grid to the input grid.
The means and sums over u run over the layer's whole grid for the whole (padded) volume. In ROI
mode g comes from the lesion crop (it vanishes outside the instance's receptive field), while A
and its channel sums come from one gradient-free forward pass over the whole volume, shared by all
instances: the maps then match the full-volume ones up to the receptive field the crop cuts off.
CAM targets are always the sum (or mean) of the lesion logits; max aggregation applies to input
gradients only and CAMs fall back to the sum.

Default layer (MONAI UNet): ``model.1.submodule.2``, the decoder block producing the half-resolution
feature map, i.e. the last decoder stage before the full-resolution output layer (which has only
the output channels). The anchor hooked ``model.1.submodule.2.conv``, the transposed convolution of
the same block before its normalisation and activation; pass that name to reproduce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.targets import target_weights
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.roi import CropBox, full_box

CAM_DEFAULT_LAYERS = ("model.1.submodule.2", "model.1")


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


def gradcam_weights(g: torch.Tensor, positions: int) -> torch.Tensor:
    """Return (K, C) Grad-CAM weights: the mean of g over ``positions`` layer positions (g is 0 off the crop)."""
    return g.sum(dim=(2, 3, 4), dtype=torch.float64) / positions


def gradcampp_weights(g: torch.Tensor, channel_sums: torch.Tensor) -> torch.Tensor:
    """Return (K, C) Grad-CAM++ weights sum_u alpha^c_u ReLU(g^c_u) with the closed-form alpha."""
    g = g.to(torch.float64)
    s = channel_sums.to(torch.float64).view(1, -1, 1, 1, 1)
    g2 = g * g
    denom = 2 * g2 + s * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    return (alpha * torch.relu(g)).sum(dim=(2, 3, 4))


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
    """Return {method: (K, k, j, i)} full-grid CAMs of the K targets for 'gradcam' and/or 'gradcampp'.

    ``full`` (whole-volume activations of the same layer) is needed unless the crop is the whole
    volume; pass it to share one forward pass between instances, or pass ``image`` to compute it.
    """
    bad = [m for m in methods if m not in ("gradcam", "gradcampp")]
    if bad:
        raise ParameterError(f"unknown CAM method(s) {bad}; choose from gradcam, gradcampp")
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
    out = {}
    for method in methods:
        w = gradcam_weights(g, full.positions) if method == "gradcam" else gradcampp_weights(g, full.channel_sums)
        out[method] = torch.stack([cam_from_weights(wk, full, image_shape) for wk in w])
    return out
