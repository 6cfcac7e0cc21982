"""The tensors one group of instances is explained on: the image crop and the instance masks inside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.explain.windows import VoxelWindow, voxel_windows
from LesionXAILib.crop import CropBox


@dataclass
class CropInputs:
    """A normalised image crop (C, *box.shape) on the model's device/dtype plus K boolean target masks.

    ``windows``: for max aggregation, the per-voxel windows the voxels' gradients are computed on
    (:mod:`LesionXAILib.explain.windows`); None computes them on the whole crop.
    """

    box: CropBox
    image: torch.Tensor
    masks: torch.Tensor
    windows: Optional[tuple[VoxelWindow, ...]] = None

    def with_image(self, image: torch.Tensor) -> "CropInputs":
        """Return the same crop, targets and windows around another (C, *box.shape) image."""
        return CropInputs(self.box, image, self.masks, self.windows)

    @property
    def is_full(self) -> bool:
        """Return True if the crop covers the whole image (padding at the end allowed)."""
        return all(s.start == 0 and s.stop == n for s, n in zip(self.box.slices, self.box.full_shape))

    def insert(self, crop_maps: torch.Tensor) -> np.ndarray:
        """Return crop-grid maps (..., *box.shape) as full-grid numpy arrays (same dtype), 0 outside the crop."""
        return self.box.insert(crop_maps.detach().cpu())


def crop_inputs(
    image: np.ndarray | torch.Tensor,
    masks: Sequence[np.ndarray],
    box: CropBox,
    device: torch.device,
    dtype: torch.dtype,
    window_margin: Optional[Sequence[int]] = None,
    divisor: int = 1,
) -> CropInputs:
    """Return the crop of a (C, k, j, i) image and of each k,j,i mask, padded with 0 (normalised background).

    ``window_margin`` (voxels per k, j, i axis; max aggregation only) plans per-voxel windows on the
    ``divisor`` grid; None differentiates every voxel on the whole crop.
    """
    img = box.extract(image, 0.0)
    img_t = img.detach().clone() if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img))
    m = torch.from_numpy(np.stack([box.extract(np.asarray(mask, dtype=bool), False) for mask in masks]))
    windows = None if window_margin is None else voxel_windows(m, window_margin, divisor)
    return CropInputs(box, img_t.to(device=device, dtype=dtype), m.to(device), windows)
