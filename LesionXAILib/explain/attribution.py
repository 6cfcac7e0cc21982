"""Captum-style explainer classes: ``Method(model).attribute(inputs, target, ...)`` for one instance.

``inputs`` is the normalised (C, k, j, i) image (numpy or torch, a leading batch axis of 1 allowed);
``target`` an InstanceTarget or a boolean k,j,i mask. Each call is self-contained: the model runs in
eval mode (its training flag is restored), hooks are removed, parameters receive no gradients, and
randomness comes only from the ``seed`` argument. Results are torch tensors on the CPU on the input grid.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.api import check_image
from LesionXAILib.explain.cam import cam_maps, resolve_layer
from LesionXAILib.explain.cam_variants import CAM_METHODS
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.gradient import gradient_maps
from LesionXAILib.explain.integrated_gradients import integrated_gradient_maps
from LesionXAILib.explain.model_state import check_model, explaining
from LesionXAILib.explain.region import auto_batch_size, explain_box, explain_crop
from LesionXAILib.explain.settings import resolve_margin
from LesionXAILib.explain.smoothgrad import noise_sigma, smoothgrad_maps
from LesionXAILib.explain.targets import InstanceTarget, as_target
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.models.contract import crop_forbidden

Spacing = Sequence[float] | Geometry


class InstanceAttribution:
    """Base class: holds the model and turns (inputs, target, region options) into a crop to explain."""

    def __init__(self, model: LesionModel) -> None:
        self.model = check_model(model)

    def _crop(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        aggregation: Optional[str],
        spacing: Spacing,
        margin_mm: Optional[float],
        full_volume: bool,
    ) -> tuple[np.ndarray, InstanceTarget, CropInputs]:
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        arr = np.asarray(inputs)
        if arr.ndim == 5 and arr.shape[0] == 1:
            arr = arr[0]
        image = check_image(self.model, arr, None)
        t = as_target(target, image.shape[1:], aggregation)
        full_volume = full_volume or crop_forbidden(self.model.config, t.aggregation, margin_mm is not None)
        margin_mm = resolve_margin(margin_mm, self.model.config, t.aggregation)[0]
        spacing_ijk = spacing.spacing if isinstance(spacing, Geometry) else tuple(float(s) for s in spacing)
        box = explain_box(t.mask, spacing_ijk[::-1], margin_mm, self.model.size_divisor, full_volume)
        crop = explain_crop(self.model, image, [t.mask], box, t.aggregation, margin_mm, spacing_ijk[::-1], full_volume)
        return image, t, crop


class Gradient(InstanceAttribution):
    """Signed gradient dS_k/dx of an instance target, one map per input channel."""

    def attribute(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        *,
        aggregation: Optional[str] = None,
        spacing: Spacing = (1.0, 1.0, 1.0),
        margin_mm: Optional[float] = None,
        full_volume: bool = False,
        batch_size: Optional[int] = None,
    ) -> torch.Tensor:
        """Return the (C, k, j, i) gradient; ``spacing`` is i,j,k mm (or a Geometry) for the ROI margin.

        ``aggregation`` (sum, mean, max) defaults to the InstanceTarget's, or 'sum' for a plain mask.
        """
        _, t, crop = self._crop(inputs, target, aggregation, spacing, margin_mm, full_volume)
        with explaining(self.model):
            g = gradient_maps(self.model, crop, t.aggregation, batch_size or auto_batch_size(crop.box))
        return torch.from_numpy(crop.insert(g)[0])


class SmoothGrad(InstanceAttribution):
    """SmoothGrad of an instance target: the mean gradient over Gaussian-perturbed inputs (anchor: n=50, 5 %)."""

    def attribute(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        *,
        samples: int = 50,
        noise_level: float = 0.05,
        noise_per_channel: bool = False,
        sigma: Optional[Sequence[float]] = None,
        seed: int = 0,
        variant: str = "smoothgrad",
        aggregation: Optional[str] = None,
        spacing: Spacing = (1.0, 1.0, 1.0),
        margin_mm: Optional[float] = None,
        full_volume: bool = False,
        batch_size: Optional[int] = None,
    ) -> torch.Tensor:
        """Return the (C, k, j, i) SmoothGrad map; ``sigma`` (per channel) overrides ``noise_level``.

        ``variant`` is 'smoothgrad' (signed mean), 'smoothgrad_squared' or 'smoothgrad_abs'.
        """
        image, t, crop = self._crop(inputs, target, aggregation, spacing, margin_mm, full_volume)
        if sigma is None:
            sig = noise_sigma(image, noise_level, noise_per_channel)
        else:
            sig = np.array(np.broadcast_to(np.asarray(sigma, dtype=np.float64), (image.shape[0],)))
        bs = batch_size or auto_batch_size(crop.box)
        with explaining(self.model):
            maps = smoothgrad_maps(self.model, crop, sig, samples, seed, t.aggregation, (variant,), bs)
        return torch.from_numpy(crop.insert(maps[variant])[0])


class IntegratedGradients(InstanceAttribution):
    """Integrated gradients from the normalised background (all zeros) to the image."""

    def attribute(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        *,
        steps: int = 32,
        aggregation: Optional[str] = None,
        spacing: Spacing = (1.0, 1.0, 1.0),
        margin_mm: Optional[float] = None,
        full_volume: bool = False,
        batch_size: Optional[int] = None,
    ) -> torch.Tensor:
        """Return the (C, k, j, i) integrated-gradient map (midpoint rule, ``steps`` points)."""
        _, t, crop = self._crop(inputs, target, aggregation, spacing, margin_mm, full_volume)
        with explaining(self.model):
            maps = integrated_gradient_maps(self.model, crop, steps, t.aggregation, batch_size or auto_batch_size(crop.box))
        return torch.from_numpy(crop.insert(maps)[0])


class _LayerCAM(InstanceAttribution):
    method = ""

    def __init__(self, model: LesionModel, layer: Optional[str] = None, method: Optional[str] = None) -> None:
        super().__init__(model)
        self.layer = resolve_layer(self.model, layer)[0]
        if method is not None:
            if method not in CAM_METHODS:
                raise ParameterError(f"unknown CAM method '{method}'; choose from {', '.join(CAM_METHODS)}")
            self.method = method

    def attribute(
        self,
        inputs: np.ndarray | torch.Tensor,
        target: InstanceTarget | np.ndarray | torch.Tensor,
        *,
        aggregation: Optional[str] = None,
        spacing: Spacing = (1.0, 1.0, 1.0),
        margin_mm: Optional[float] = None,
        full_volume: bool = False,
    ) -> torch.Tensor:
        """Return the (k, j, i) map on the input grid (ROI mode adds one gradient-free whole-volume pass)."""
        image, t, crop = self._crop(inputs, target, aggregation, spacing, margin_mm, full_volume)
        with explaining(self.model):
            maps = cam_maps(self.model, crop, (self.method,), self.layer, t.aggregation, image=image)
        return maps[self.method][0].detach().cpu()


class GradCAM(_LayerCAM):
    """Grad-CAM at a named layer (default: the MONAI UNet's half-resolution decoder block)."""

    method = "gradcam"


class GradCAMpp(_LayerCAM):
    """Grad-CAM++ at a named layer: the measured default variant, or ``method`` ('gradcampp_paper', 'gradcampp_anchor', ...)."""

    method = "gradcampp"
