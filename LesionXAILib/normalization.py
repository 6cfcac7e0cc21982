"""Intensity normalisation used before the network: per-channel z-score on non-zero voxels (as the anchor)."""

from __future__ import annotations

import numpy as np


def zscore_nonzero(image: np.ndarray) -> np.ndarray:
    """Return a float32 copy of a (C, ...) stack z-scored per channel over its non-zero voxels; zeros stay 0.

    This mirrors MONAI's ``NormalizeIntensity(nonzero=True, channel_wise=True)`` used by the anchor
    study, so "normalised background" is exactly 0.
    """
    arr = np.asarray(image, dtype=np.float32)
    out = np.zeros_like(arr, dtype=np.float32)
    for c in range(arr.shape[0]):
        channel = arr[c]
        mask = channel != 0
        if not mask.any():
            continue
        values = channel[mask].astype(np.float64)
        mean = values.mean()
        std = values.std()
        if std == 0:
            std = 1.0
        out[c][mask] = ((values - mean) / std).astype(np.float32)
    return out
