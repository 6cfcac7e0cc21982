"""Where the network is evaluated for one instance: a grid-aligned lesion-centred crop, or the whole volume."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from LesionXAILib.explain.crop_inputs import CropInputs, crop_inputs
from LesionXAILib.explain.model_state import model_dtype
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.roi import CropBox, align_box, full_box, lesion_box, margin_voxels


def explain_box(
    mask: np.ndarray,
    spacing_kji: Sequence[float],
    margin_mm: Optional[float],
    divisor: int,
    full_volume: bool = False,
) -> CropBox:
    """Return the crop (or, with ``full_volume``, the whole grid) the network is evaluated on for ``mask``.

    The crop is the lesion's bounding box grown by ``margin_mm`` on each side, then extended to start
    on multiples of the network's size divisor (the only shifts a strided U-Net commutes with), so
    inside the crop the network computes exactly what it computes on the whole volume, up to the
    receptive field the margin cuts off. A margin of None (no measured margin) is the whole grid.
    """
    if full_volume or margin_mm is None:
        return full_box(mask.shape, divisor)
    return align_box(lesion_box(mask, spacing_kji, margin_mm), divisor)


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


def group_by_box(boxes: Sequence[CropBox], margins: Optional[Sequence[Optional[float]]] = None) -> list[tuple[CropBox, list[int]]]:
    """Return (box, indices) for each distinct box (and margin), so instances with the same crop share forward passes.

    Only identical boxes are merged: every instance keeps the crop it would get alone, so its maps do
    not depend on which other instances are explained in the same call. ``margins`` (per box) keeps
    apart instances whose per-voxel windows differ although their boxes coincide.
    """
    groups: dict[tuple, tuple[CropBox, list[int]]] = {}
    for i, box in enumerate(boxes):
        key = (tuple((s.start, s.stop) for s in box.slices), box.pad, box.full_shape)  # slices hash only on 3.12+
        if margins is not None:
            key += (margins[i],)
        groups.setdefault(key, (box, []))[1].append(i)
    return list(groups.values())


def auto_batch_size(box: CropBox, budget_voxels: int = 1 << 21, limit: int = 32) -> int:
    """Return how many network copies to run per pass on ``box`` to stay within ~``budget_voxels`` voxels."""
    voxels = int(np.prod(box.shape))
    return int(max(1, min(limit, budget_voxels // max(voxels, 1))))
