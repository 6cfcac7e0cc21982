"""Intensity normalisation before the network, by name (``ModelConfig.normalization``): NORMALIZERS.

Normalisation runs on the canonical (C, k, j, i) stack, outside the network: explanations are
gradients with respect to the normalised image (as in the anchor study). The per-channel statistics
below do not depend on the array's axis order, so normalising before the contract's permutation
gives exactly what the model's own pipeline gives after it. A format with its own scheme (nnU-Net's
CT normalisation, a bundle's ScaleIntensityRange) registers a function here under a new name.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from LesionXAILib.errors import ModelLoadError


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


def zscore(image: np.ndarray) -> np.ndarray:
    """Return a float32 copy of a (C, ...) stack z-scored per channel over all voxels (MONAI ``NormalizeIntensity(channel_wise=True)``)."""
    arr = np.asarray(image, dtype=np.float32)
    out = np.empty_like(arr, dtype=np.float32)
    for c in range(arr.shape[0]):
        values = arr[c].astype(np.float64)
        std = values.std()
        out[c] = ((values - values.mean()) / (std if std > 0 else 1.0)).astype(np.float32)
    return out


def no_normalization(image: np.ndarray) -> np.ndarray:
    """Return the (C, ...) stack as float32, unchanged (the model normalises inside, or was trained on raw values)."""
    return np.asarray(image, dtype=np.float32).copy()


# name -> function(stack (C, k, j, i), config) -> float32 stack of the same shape
NORMALIZERS: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "zscore-nonzero": lambda image, config: zscore_nonzero(image),
    "zscore": lambda image, config: zscore(image),
    "none": lambda image, config: no_normalization(image),
}


def _zscore_model_space(image: np.ndarray, config: Any) -> np.ndarray:
    from LesionXAILib.models.resampling import zscore_with_model_space_statistics

    return zscore_with_model_space_statistics(image, config)


# a MONAI bundle's NormalizeIntensityd after its Spacingd (statistics measured on the resampled image)
NORMALIZERS["zscore-model-space"] = _zscore_model_space


def normalize(image: np.ndarray, config: Any = None) -> np.ndarray:
    """Return the (C, k, j, i) stack normalised as ``config.normalization`` says (z-score on non-zero voxels without a config)."""
    name = "zscore-nonzero" if config is None else str(config.normalization)
    fn = NORMALIZERS.get(name)
    if fn is None:
        raise ModelLoadError(f"model config: unknown normalization '{name}' (known: {', '.join(sorted(NORMALIZERS))})")
    return fn(image, config)
