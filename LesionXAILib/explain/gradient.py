"""Gradient (saliency) maps: G_k(x) = dS_k/dx, signed, one map per input channel (docs/methods.md#gradient)."""

from __future__ import annotations

from typing import Optional

import torch

from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.vjp import target_gradients
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import ProgressReporter


def gradient_maps(
    model: LesionModel,
    crop: CropInputs,
    aggregation: str = "sum",
    batch_size: int = 8,
    reporter: Optional[ProgressReporter] = None,
) -> torch.Tensor:
    """Return (K, C, *crop) gradients of the K instance targets at the unperturbed image."""
    return target_gradients(model, crop.image[None], crop.masks, aggregation, batch_size, reporter, crop.windows)[:, 0]
