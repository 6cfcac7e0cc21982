"""Re-running one explainer on modified crops, through the explainer's own batched routines.

Used by max-sensitivity: the attribution Phi(x + delta) of the same instance, computed exactly as
``explain.api`` computes Phi(x) (same crop, target, aggregation, SmoothGrad noise draws, CAM layer).
Plain gradients of all inputs go through one batched vector-Jacobian engine call
(``explain.vjp.target_gradients``); SmoothGrad and integrated gradients batch their own samples or
path steps per input; CAMs need the whole perturbed volume for the layer's channel sums (one extra
gradient-free whole-volume pass per input, unless the crop is the whole volume).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.cam import cam_maps, resolve_layer
from LesionXAILib.explain.integrated_gradients import integrated_gradient_maps
from LesionXAILib.explain.model_state import explaining
from LesionXAILib.explain.settings import CAM_METHODS
from LesionXAILib.explain.smoothgrad import VARIANTS as SMOOTHGRAD_VARIANTS
from LesionXAILib.explain.smoothgrad import noise_sigma, smoothgrad_maps
from LesionXAILib.explain.vjp import target_gradients
from LesionXAILib.metrics.inputs import InstanceInputs


def explainer_maps(inputs: InstanceInputs, method: str, images: Sequence[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Yield ``method``'s map for each (C, *crop) image: (C, *crop) for gradient methods, (k, j, i) full grid for CAMs."""
    model, s = inputs.model, inputs.settings
    masks = inputs.crop.masks
    agg = inputs.target.aggregation
    with explaining(model):
        if method == "gradient":
            for start in range(0, len(images), batch_size):
                chunk = torch.stack(list(images[start : start + batch_size]))
                yield from target_gradients(model, chunk, masks, agg, batch_size, windows=inputs.crop.windows)[0]
        elif method in SMOOTHGRAD_VARIANTS:
            # sigma comes from the unperturbed image, as the explanation's own
            sigma = noise_sigma(inputs.image, s.noise_level, s.noise_per_channel)
            for image in images:
                yield smoothgrad_maps(model, inputs.with_image(image), sigma, s.samples, s.seed, agg, (method,), batch_size)[method][0]
        elif method == "integrated_gradients":
            for image in images:
                yield integrated_gradient_maps(model, inputs.with_image(image), s.ig_steps, agg, batch_size)[0]
        elif method in CAM_METHODS:
            layer = resolve_layer(model, s.cam_layer)[0]
            for image in images:
                crop = inputs.with_image(image)
                full = None if crop.is_full else inputs.full_image_with(image)
                yield cam_maps(model, crop, (method,), layer, agg, image=full)[method][0]
        else:
            raise ParameterError(f"no explainer named '{method}'")
