"""The network's intensity normalisation inside the search, so that raw-image changes stay differentiable.

Counterfactuals change the raw images (what is written, and what a re-segmentation normalises again).
For LesionXAI's z-score normalisations the search recomputes the statistics of the whole image with
the changed box in it (sums over the rest of the image are constants), so the search sees exactly what
the re-segmentation will: a change that shrinks a lesion also lowers the image's spread, which raises
every normalised intensity a little. ``none`` is the identity. Any other normaliser is replaced by the
per-channel linear map ``a x + b`` (zero background to its constant) fitted on the original image and
held fixed; the re-segmentation check then sees the drift that map ignores.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from LesionXAILib.errors import ParameterError

# largest misfit (as a share of the normalised range) accepted before a normaliser counts as non-linear
AFFINE_TOLERANCE = 1e-4


class ChannelNormaliser:
    """Normalises one channel of a crop whose box part changes: ``__call__(crop_raw, box_raw) -> crop``."""

    def __init__(self, kind: str, inner: tuple, valid: torch.Tensor, scale: float, offset: float, background: float,
                 counts: Optional[tuple[float, float, float]] = None) -> None:  # fmt: skip
        self.kind = kind  # 'zscore-nonzero', 'zscore', 'none' or 'fixed'
        self.inner = inner
        self.valid = valid
        self.scale = float(scale)
        self.offset = float(offset)
        self.background = float(background)
        self.counts = counts  # (voxels, sum, sum of squares) of the image outside the box (z-scores)

    def statistics(self, box_raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (scale, offset) of the normalisation of the image with ``box_raw`` in its box."""
        if self.kind in ("none", "fixed"):
            one = box_raw.new_tensor(self.scale, dtype=torch.float64)
            return one, box_raw.new_tensor(self.offset, dtype=torch.float64)
        x = box_raw.to(torch.float64)
        n0, s1, s2 = self.counts
        if self.kind == "zscore-nonzero":
            keep = (x != 0).to(torch.float64).detach()
            n = n0 + keep.sum()
            x = x * keep
        else:
            n = box_raw.new_tensor(n0 + x.numel(), dtype=torch.float64)
        mean = (s1 + x.sum()) / n
        var = torch.clamp((s2 + (x * x).sum()) / n - mean * mean, min=0.0)
        std = torch.sqrt(var)
        std = torch.where(std > 0, std, torch.ones_like(std))
        return 1.0 / std, -mean / std

    def __call__(self, crop_raw: torch.Tensor, box_raw: torch.Tensor) -> torch.Tensor:
        """Return the normalised crop (k, j, i) of ``crop_raw`` with ``box_raw`` pasted into its box."""
        full = crop_raw.clone()
        full[self.inner] = box_raw
        scale, offset = self.statistics(box_raw)
        y = full * scale.to(full.dtype) + offset.to(full.dtype)
        if self.kind in ("zscore-nonzero", "fixed"):
            y = torch.where(full != 0, y, torch.full_like(y, self.background))
        return y * self.valid


def channel_normaliser(
    kind: str, raw: np.ndarray, normalized: np.ndarray, box: tuple, inner: tuple, valid: torch.Tensor, name: str
) -> ChannelNormaliser:
    """Return the normaliser of one channel: full-image ``raw`` and ``normalized`` (k, j, i), the box's slices on the full grid and in the crop."""
    if kind == "none":
        return ChannelNormaliser("none", inner, valid, 1.0, 0.0, 0.0)
    if kind in ("zscore-nonzero", "zscore"):
        x = np.asarray(raw, dtype=np.float64)
        outside = np.ones(x.shape, bool)
        outside[box] = False
        values = x[outside & (x != 0)] if kind == "zscore-nonzero" else x[outside]
        return ChannelNormaliser(kind, inner, valid, 1.0, 0.0, 0.0, (float(values.size), float(values.sum()), float((values**2).sum())))
    scale, offset, background = fit_linear_map(raw[box], normalized[box], name)
    return ChannelNormaliser("fixed", inner, valid, scale, offset, background)


def fit_linear_map(raw: np.ndarray, normalized: np.ndarray, name: str = "channel") -> tuple[float, float, float]:
    """Return (a, b, c) with normalized = a raw + b where raw != 0 and c where raw == 0 (ParameterError if none fits)."""
    x = np.asarray(raw, dtype=np.float64).ravel()
    y = np.asarray(normalized, dtype=np.float64).ravel()
    nz = x != 0
    if nz.sum() < 2 or float(np.ptp(x[nz])) == 0:
        raise ParameterError(f"{name}: the image has fewer than two distinct non-zero intensities near the lesion; nothing to change")
    xm, ym = x[nz].mean(), y[nz].mean()
    scale = float(((x[nz] - xm) * (y[nz] - ym)).sum() / ((x[nz] - xm) ** 2).sum())
    offset = float(ym - scale * xm)
    misfit = float(np.abs(y[nz] - (scale * x[nz] + offset)).max())
    background = float(y[~nz][0]) if (~nz).any() else offset
    if (~nz).any():
        misfit = max(misfit, float(np.abs(y[~nz] - background).max()))
    if misfit > AFFINE_TOLERANCE * max(float(np.ptp(y)), 1e-6) or scale == 0:
        raise ParameterError(
            f"{name}: the model's intensity normalisation is not a per-channel linear map of the raw image "
            f"(misfit {misfit:.3g}); counterfactuals support z-score-like normalisations only"
        )
    return scale, offset, background
