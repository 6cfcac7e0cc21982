"""Neutral values that replace the image outside the kept region when probing a model.

- ``background``: the normalised value of non-brain voxels. LesionXAI normalises by z-scoring each
  channel over its non-zero voxels (``prepare_input``), so background is exactly 0; filling with it is
  what the anchor study does (it multiplies the normalised image by the mask).
- ``zero``: 0 in every channel, whatever the normalisation (identical to ``background`` under z-score
  on non-zero voxels; distinct for a model declaring another normalisation).
- ``mean``: each channel's mean over brain voxels (voxels where any channel is non-zero).
- ``noise``: Gaussian noise with each channel's brain mean and standard deviation, from a seeded
  generator; one noise field per probe, shared by all radii, so curves differ only by the mask.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from LesionXAILib.errors import ParameterError

FILLS = ("background", "zero", "mean", "noise")
# normalisations whose background value is known exactly
BACKGROUND_VALUE = {"zscore-nonzero": 0.0}


def check_fill(fill: str) -> str:
    """Return ``fill`` if it names a supported fill, else raise ParameterError."""
    if fill not in FILLS:
        raise ParameterError(f"fill must be one of {', '.join(FILLS)}; got '{fill}'")
    return fill


def brain_statistics(normalized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return per-channel (mean, std) over brain voxels (any channel non-zero) of a (C, k, j, i) stack."""
    brain = np.any(normalized != 0, axis=0)
    if not brain.any():
        raise ParameterError("normalised input is zero everywhere; no brain voxels to take fill statistics from")
    values = normalized[:, brain].astype(np.float64)
    return values.mean(axis=1), values.std(axis=1)


def fill_field(
    normalized: np.ndarray,
    crop_shape: Sequence[int],
    fill: str,
    normalization: str = "zscore-nonzero",
    seed: int = 0,
) -> np.ndarray:
    """Return the float32 fill for a crop: shape (C, 1, 1, 1) for constants, (C, *crop_shape) for noise."""
    check_fill(fill)
    channels = normalized.shape[0]
    if fill == "background":
        if normalization not in BACKGROUND_VALUE:
            raise ParameterError(
                f"fill 'background' is undefined for normalisation '{normalization}'; use zero, mean or noise"
            )
        return np.full((channels, 1, 1, 1), BACKGROUND_VALUE[normalization], dtype=np.float32)
    if fill == "zero":
        return np.zeros((channels, 1, 1, 1), dtype=np.float32)
    mean, std = brain_statistics(normalized)
    if fill == "mean":
        return mean.reshape(channels, 1, 1, 1).astype(np.float32)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((channels, *tuple(int(s) for s in crop_shape)), dtype=np.float32)
    return (noise * std.reshape(-1, 1, 1, 1) + mean.reshape(-1, 1, 1, 1)).astype(np.float32)
