"""Re-running one explainer on modified crops, through the registered explainer's own batched routines.

Used by max-sensitivity: the attribution Phi(x + delta) of the same instance, computed exactly as
``explain.api`` computes Phi(x) (same crop, target, aggregation, SmoothGrad noise draws, CAM layer):
the method's class from the explainer registry, its settings taken from the explanation's. A method
may batch several inputs in one engine call (plain gradients do, ``Explainer.perturbed_maps``); layer
methods (CAMs) need the whole perturbed volume for the layer's channel sums (one extra gradient-free
whole-volume pass per input, unless the crop is the whole volume).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from LesionXAILib.explain.cam import resolve_layer
from LesionXAILib.explain.methods.base import BatchContext
from LesionXAILib.explain.model_state import explaining
from LesionXAILib.explain.registry import method_spec
from LesionXAILib.explain.smoothgrad import noise_sigma
from LesionXAILib.metrics.inputs import InstanceInputs


def explainer_maps(inputs: InstanceInputs, method: str, images: Sequence[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    """Yield ``method``'s map for each (C, *crop) image: (C, *crop) for per-sequence methods, (k, j, i) full grid otherwise."""
    spec = method_spec(method)
    model, s = inputs.model, inputs.settings
    layer = resolve_layer(model, s.cam_layer)[0] if spec.uses_layer else None
    # sigma comes from the unperturbed image, as the explanation's own
    sigma = noise_sigma(inputs.image, s.noise_level, s.noise_per_channel)
    ctx = BatchContext(model, inputs.crop, inputs.target.aggregation, batch_size, spec.cls.settings_from(s), sigma, layer)
    whole = spec.uses_layer and not inputs.crop.is_full
    full_images = (inputs.full_image_with(image) if whole else None for image in images)  # one at a time: each is a volume
    with explaining(model):
        yield from spec.cls.perturbed_maps(ctx, method, images, full_images)
