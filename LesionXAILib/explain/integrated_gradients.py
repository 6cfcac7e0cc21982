"""Integrated gradients from the normalised background: (x - x') * mean over alpha of G_k(x' + alpha (x - x')).

The baseline x' is 0 everywhere, the value background voxels have after z-scoring on non-zero
voxels. The path integral uses the midpoint rule with ``steps`` points, batched through the network.
"""

from __future__ import annotations

from typing import Optional

import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.vjp import target_gradients
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import ProgressReporter


def integrated_gradient_maps(
    model: LesionModel,
    crop: CropInputs,
    steps: int = 32,
    aggregation: str = "sum",
    batch_size: int = 8,
    reporter: Optional[ProgressReporter] = None,
) -> torch.Tensor:
    """Return (K, C, *crop) integrated-gradient maps of the K targets along the straight path from 0."""
    if steps < 1:
        raise ParameterError(f"integrated gradients need at least one step, got {steps}")
    baseline = torch.zeros_like(crop.image)
    delta = crop.image - baseline
    alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
    shape = (crop.masks.shape[0],) + tuple(crop.image.shape)
    total = torch.zeros(shape, dtype=torch.float64, device=crop.image.device)
    for start in range(0, steps, batch_size):
        stop = min(steps, start + batch_size)
        a = alphas[start:stop].to(crop.image.device, crop.image.dtype).view(-1, 1, 1, 1, 1)
        x = baseline[None] + a * delta[None]
        sub = reporter.sub(start / steps, stop / steps) if reporter is not None else None
        total += target_gradients(model, x, crop.masks, aggregation, batch_size, sub, crop.windows).sum(1, dtype=torch.float64)
    return (delta[None] * (total / steps)).to(crop.image.dtype)
