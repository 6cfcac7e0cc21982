"""Max-sensitivity (Yeh et al. 2019): max over ||delta||_inf <= r of ||Phi(x + delta) - Phi(x)|| / ||Phi(x)||.

The maximum is estimated, as in Yeh et al. and Captum, over ``samples`` draws of delta uniform in
[-r, r] on every voxel and channel of the instance's crop (r = radius x the normalised FLAIR range),
reproducible per voxel. Phi is recomputed by the explainer's own batched routine
(``metrics.explainer_maps``) for x and every x + delta, so a zero radius gives exactly 0. Norms are
Frobenius norms over all channels and voxels of the map. Lower is better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from LesionXAILib.metrics.cost import MetricCost, count_passes
from LesionXAILib.metrics.explainer_maps import explainer_maps
from LesionXAILib.metrics.inputs import InstanceInputs
from LesionXAILib.metrics.perturbations import uniform_perturbation


@dataclass
class SensitivityResult:
    """Max- (and mean-) sensitivity of one explainer for one instance, per-draw ratios, and the cost."""

    max_sensitivity: float
    mean_sensitivity: float
    ratios: np.ndarray
    cost: MetricCost

    def to_dict(self) -> dict:
        """Return a JSON-serialisable summary."""
        return {"max_sensitivity": self.max_sensitivity, "mean_sensitivity": self.mean_sensitivity,
                "samples": int(self.ratios.size), "cost": self.cost.to_dict()}  # fmt: skip


def max_sensitivity(
    inputs: InstanceInputs,
    method: str,
    radius: float = 0.02,
    samples: int = 8,
    seed: int = 1,
    batch_size: int | None = None,
) -> SensitivityResult:
    """Return the max-sensitivity of ``method`` for the instance over ``samples`` draws within ``radius``."""
    x = inputs.crop.image
    r = inputs.flair_range_sigma(radius)
    images = [x] + [x + uniform_perturbation(seed, j, inputs.box, r).to(x.device, x.dtype) for j in range(int(samples))]
    bs = inputs.batch_size(batch_size)
    ratios = []
    with count_passes(inputs.model) as cost:
        maps = explainer_maps(inputs, method, images, bs)
        reference = next(maps).to(torch.float64)
        norm = float(torch.linalg.vector_norm(reference))
        for m in maps:
            diff = float(torch.linalg.vector_norm(m.to(torch.float64) - reference))
            ratios.append(diff / norm if norm > 0 else float("nan"))  # undefined for an all-zero map
    arr = np.asarray(ratios, dtype=np.float64)
    return SensitivityResult(float(arr.max()), float(arr.mean()), arr, cost)
