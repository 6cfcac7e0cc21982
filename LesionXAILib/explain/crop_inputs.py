"""The tensors one group of instances is explained on: the image crop and the instance masks inside it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from LesionXAILib.roi import CropBox


@dataclass
class CropInputs:
    """A normalised image crop (C, *box.shape) on the model's device/dtype plus K boolean target masks."""

    box: CropBox
    image: torch.Tensor
    masks: torch.Tensor

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
) -> CropInputs:
    """Return the crop of a (C, k, j, i) image and of each k,j,i mask, padded with 0 (normalised background)."""
    img = box.extract(image, 0.0)
    img_t = img.detach().clone() if isinstance(img, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(img))
    m = np.stack([box.extract(np.asarray(mask, dtype=bool), False) for mask in masks])
    return CropInputs(box, img_t.to(device=device, dtype=dtype), torch.from_numpy(m).to(device))
