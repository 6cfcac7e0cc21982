"""Activation precision (MProtoNet, Wei et al. 2023): AP = |B intersect T| / |B|.

B binarises the map: after min-max normalisation over the evaluated region, the voxels with a value
>= the threshold (0.5 by default), or the top k % of the region's voxels by value (ties broken by
voxel order). T is the lesion mask, optionally dilated by a ball of ``dilate_mm`` millimetres
(anisotropic spacing honoured). The region is the crop the explainer evaluated the instance on, the
same for every map, so gradient maps (0 beyond the crop) and CAMs (whole grid) are compared alike.
Higher is better; a map equal to the lesion mask has AP 1. A constant map has no defined B: NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError


@dataclass
class PrecisionResult:
    """Activation precision at the threshold and at the top k %, with the size of each binarised set."""

    at_threshold: float
    selected: int
    at_top_k: Optional[float] = None
    top_k_selected: int = 0

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return {"ap": self.at_threshold, "selected": self.selected, "ap_top_k": self.at_top_k,
                "top_k_selected": self.top_k_selected}  # fmt: skip


def lesion_target(mask: np.ndarray, dilate_mm: float = 0.0, spacing_kji: Sequence[float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Return T: the lesion mask, dilated by a ball of ``dilate_mm`` mm when that is > 0."""
    from LesionXAILib.probes.structuring import dilate_mm as dilate

    m = np.asarray(mask, dtype=bool)
    return dilate(m, dilate_mm, spacing_kji) if dilate_mm > 0 else m


def activation_precision(
    saliency: np.ndarray,
    target: np.ndarray,
    threshold: float = 0.5,
    top_k_percent: Optional[float] = None,
    region: Optional[np.ndarray] = None,
) -> PrecisionResult:
    """Return the AP of ``saliency`` against the mask ``target`` (same shape) within ``region`` (default: all)."""
    s = np.asarray(saliency, dtype=np.float64)
    t = np.asarray(target, dtype=bool)
    if s.shape != t.shape:
        raise ParameterError(f"saliency shape {s.shape} does not match the lesion mask {t.shape}")
    r = np.ones(s.shape, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    values, truth = s[r], t[r]
    if values.size == 0:
        raise ParameterError("activation precision: the evaluated region is empty")
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        chosen = (values - lo) / (hi - lo) >= threshold
        n = int(chosen.sum())
        ap = float(np.count_nonzero(chosen & truth)) / n
    else:
        n, ap = 0, float("nan")
    result = PrecisionResult(ap, n)
    if top_k_percent is not None:
        k = max(1, int(math.ceil(values.size * float(top_k_percent) / 100.0 - 1e-9)))
        order = np.argsort(-values, kind="stable")[:k]
        result.at_top_k = float(np.count_nonzero(truth[order])) / k
        result.top_k_selected = k
    return result
