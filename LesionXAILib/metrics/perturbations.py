"""Random perturbations for the metrics, reproducible per (seed, sample, voxel) like SmoothGrad's noise.

They reuse ``explain.noise.positional_noise``: a voxel's value depends only on the seed, the sample
index and its position on the full grid, never on the crop, so a brute-force whole-volume check sees
exactly the perturbations the crop saw. Padding voxels of the crop get none.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.special import ndtr

from LesionXAILib.explain.noise import positional_noise
from LesionXAILib.crop import CropBox

# sample-index offset of the uniform (sensitivity) draws, so they never reuse a Gaussian (infidelity) draw
UNIFORM_OFFSET = 1 << 24


def gaussian_perturbation(seed: int, sample: int, box: CropBox, sigma: Sequence[float]) -> torch.Tensor:
    """Return a (C, *box.shape) float64 perturbation I ~ N(0, sigma_c^2) per channel (0 in the padding)."""
    sig = np.asarray(sigma, dtype=np.float64)
    z = positional_noise(seed, sample, box, sig.size).astype(np.float64)
    return torch.from_numpy(z * sig.reshape(-1, 1, 1, 1))


def uniform_perturbation(seed: int, sample: int, box: CropBox, radius: Sequence[float]) -> torch.Tensor:
    """Return a (C, *box.shape) float64 perturbation uniform in [-r_c, r_c] (0 in the padding).

    The uniform values are the normal CDF of positional Gaussian noise, mapped to [-1, 1].
    """
    r = np.asarray(radius, dtype=np.float64)
    z = positional_noise(seed, UNIFORM_OFFSET + sample, box, r.size).astype(np.float64)
    u = 2.0 * ndtr(z) - 1.0
    u[:, ~_inner(box)] = 0.0
    return torch.from_numpy(u * r.reshape(-1, 1, 1, 1))


def _inner(box: CropBox) -> np.ndarray:
    m = np.zeros(box.shape, dtype=bool)
    m[box.inner] = True
    return m
