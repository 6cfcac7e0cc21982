"""The crop one group of instances is explained on: boxes from :mod:`LesionXAILib.crop`, per-voxel windows, batch size.

The box arithmetic (``explain_box``, ``group_by_box``) lives in :mod:`LesionXAILib.crop` and is re-exported here.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from LesionXAILib.crop import CropBox, explain_box, group_by_box, margin_voxels
from LesionXAILib.explain.crop_inputs import CropInputs, crop_inputs
from LesionXAILib.explain.model_state import model_dtype
from LesionXAILib.lesion_model import LesionModel

__all__ = ["auto_batch_size", "explain_box", "explain_crop", "group_by_box", "window_margin"]


def window_margin(
    aggregation: str, margin_mm: Optional[float], spacing_kji: Sequence[float], full_volume: bool = False
) -> Optional[tuple[int, int, int]]:
    """Return the per-voxel window margin in voxels (k, j, i) for max aggregation on a crop, else None.

    Max aggregation differentiates every lesion voxel on its own window holding ``margin_mm`` around
    that voxel (:mod:`LesionXAILib.explain.windows`); the full-volume reference and sum/mean targets
    (one backward pass for the whole lesion) run on the whole crop.
    """
    if aggregation != "max" or full_volume or margin_mm is None:
        return None
    return margin_voxels(margin_mm, spacing_kji)


def explain_crop(
    model: LesionModel,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    box: CropBox,
    aggregation: str,
    margin_mm: Optional[float],
    spacing_kji: Sequence[float],
    full_volume: bool = False,
) -> CropInputs:
    """Return the crop of ``image`` and ``masks`` on ``box`` as the explainers evaluate it (with per-voxel windows for max)."""
    margin = window_margin(aggregation, margin_mm, spacing_kji, full_volume)
    return crop_inputs(image, masks, box, model.device, model_dtype(model), margin, model.size_divisor)


def auto_batch_size(box: CropBox, budget_voxels: int = 1 << 21, limit: int = 32) -> int:
    """Return how many network copies to run per pass on ``box`` to stay within ~``budget_voxels`` voxels."""
    voxels = int(np.prod(box.shape))
    return int(max(1, min(limit, budget_voxels // max(voxels, 1))))
