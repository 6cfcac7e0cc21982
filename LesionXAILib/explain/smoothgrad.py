"""SmoothGrad (Smilkov et al. 2017): SG_k(x) = (1/n) sum_i G_k(x + eps_i), eps_i ~ N(0, sigma^2).

The signed average is the method; ``smoothgrad_squared`` (mean of G^2) and ``smoothgrad_abs``
(mean of |G|) are offered under their own names. Noise samples are batched through the network.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.noise import positional_noise
from LesionXAILib.explain.vjp import target_gradients
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import ProgressReporter

VARIANTS = {
    "smoothgrad": lambda g: g,
    "smoothgrad_squared": lambda g: g * g,
    "smoothgrad_abs": torch.abs,
}


def noise_sigma(image: np.ndarray | torch.Tensor, noise_level: float, per_channel: bool = False) -> np.ndarray:
    """Return per-channel sigma: ``noise_level`` x (max - min) of the normalised FLAIR (channel 0), or of each channel."""
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    ranges = np.array([float(c.max() - c.min()) for c in arr], dtype=np.float64)
    if per_channel:
        return noise_level * ranges
    return np.full(arr.shape[0], noise_level * ranges[0])


def smoothgrad_maps(
    model: LesionModel,
    crop: CropInputs,
    sigma: Sequence[float],
    samples: int,
    seed: int,
    aggregation: str = "sum",
    variants: Sequence[str] = ("smoothgrad",),
    batch_size: int = 8,
    reporter: Optional[ProgressReporter] = None,
) -> dict[str, torch.Tensor]:
    """Return {variant: (K, C, *crop)} SmoothGrad maps of the K targets over ``samples`` noise draws.

    Draw i is :func:`positional_noise` (seed, i) scaled by ``sigma`` per channel; padding gets none.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ParameterError(f"unknown SmoothGrad variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if samples < 1:
        raise ParameterError(f"SmoothGrad needs at least one sample, got {samples}")
    channels = crop.image.shape[0]
    sig = torch.as_tensor(np.asarray(sigma, dtype=np.float64), dtype=crop.image.dtype, device=crop.image.device)
    if sig.numel() != channels:
        raise ParameterError(f"sigma has {sig.numel()} values for {channels} channels")
    sig = sig.view(1, channels, 1, 1, 1)
    shape = (crop.masks.shape[0], channels) + tuple(crop.image.shape[1:])
    sums = {v: torch.zeros(shape, dtype=torch.float64, device=crop.image.device) for v in variants}
    for start in range(0, samples, batch_size):
        stop = min(samples, start + batch_size)
        noise = np.stack([positional_noise(seed, s, crop.box, channels) for s in range(start, stop)])
        x = crop.image[None] + sig * torch.from_numpy(noise).to(crop.image.device, crop.image.dtype)
        sub = reporter.sub(start / samples, stop / samples) if reporter is not None else None
        g = target_gradients(model, x, crop.masks, aggregation, batch_size, sub, crop.windows)
        for v in variants:
            sums[v] += VARIANTS[v](g).sum(1, dtype=torch.float64)
        del g, x
    return {v: (s / samples).to(crop.image.dtype) for v, s in sums.items()}
