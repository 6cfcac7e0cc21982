"""Lesion-centred crops aligned to the network's stride grid.

A U-Net with stride-2 layers is not shift-invariant: a crop whose start is not a multiple of the
network's size divisor sees its input down-sampled at a different phase than a whole-volume pass
starting at voxel 0, and its output differs slightly everywhere. Starting every crop at a multiple
of the divisor (in the full grid) keeps the phase, so a crop that contains the receptive field
reproduces the whole-volume output exactly (see Testing/test_probes_context.py).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.roi import CropBox, margin_voxels, mask_bounds


def grid_aligned_box(lo: Sequence[int], hi: Sequence[int], shape: Sequence[int], divisor: int = 1) -> CropBox:
    """Return a box holding voxels lo..hi-1 (k,j,i, clipped to the image) whose start and size are multiples of ``divisor``.

    Where the box runs past the end of the image, the remainder is padding (filled with 0 on extraction).
    """
    if divisor < 1:
        raise ParameterError(f"size divisor must be >= 1, got {divisor}")
    slices, pads = [], []
    for a, b, n in zip(lo, hi, shape):
        a, b, n = max(0, int(a)), min(int(n), int(b)), int(n)
        if b <= a:
            raise ParameterError(f"empty region [{a}, {b}) on an axis of length {n}")
        start = (a // divisor) * divisor
        stop = start + int(math.ceil((b - start) / divisor)) * divisor
        slices.append(slice(start, min(stop, n)))
        pads.append((0, max(0, stop - n)))
    return CropBox(tuple(slices), tuple(pads), tuple(int(s) for s in shape))


def aligned_lesion_box(
    mask: np.ndarray, spacing_kji: Sequence[float], margin_mm: float, divisor: int = 1
) -> CropBox:
    """Return the stride-aligned box around ``mask``'s voxels grown by ``margin_mm`` (anisotropic spacing honoured)."""
    lo, hi = mask_bounds(mask)
    mv = np.array(margin_voxels(margin_mm, spacing_kji))
    return grid_aligned_box(lo - mv, hi + mv, mask.shape, divisor)
