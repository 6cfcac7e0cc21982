"""Infidelity (Yeh et al. 2019): E_I[(I^T Phi(x) - (S(x) - S(x - I)))^2] over random perturbations I.

I is Gaussian, I ~ N(0, sigma^2) on every voxel and channel of the instance's crop (sigma = scale x
the normalised FLAIR range), drawn reproducibly per voxel (``metrics.perturbations``). S is the
instance target (sum or mean of lesion logits over M_k) evaluated on the crop, perturbed crops
batched through the network. Lower is better; 0 means the attribution predicts every perturbation's
effect exactly (e.g. the gradient of a linear model).

Besides the contract value, Yeh et al.'s scale-free variant is reported: ``normalized`` uses the
best rescaling beta* = sum(I^T Phi dS) / sum((I^T Phi)^2) of the attribution (what their code and
Captum's ``normalize=True`` do), which makes maps of arbitrary scale (CAMs) comparable; ``relative``
divides that by E[dS^2], so 0 is perfect and 1 is no better than a zero attribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from LesionXAILib.explain.model_state import explaining
from LesionXAILib.metrics.cost import MetricCost, count_passes, timed
from LesionXAILib.metrics.inputs import InstanceInputs
from LesionXAILib.metrics.perturbations import gaussian_perturbation
from LesionXAILib.metrics.scores import target_scores


@dataclass
class InfidelityResult:
    """Infidelity of one attribution for one instance, with the per-perturbation terms and the cost."""

    infidelity: float
    normalized: float
    relative: float
    beta: float
    dot: np.ndarray  # I^T Phi per perturbation
    delta: np.ndarray  # S(x) - S(x - I) per perturbation
    cost: MetricCost

    def to_dict(self) -> dict:
        """Return a JSON-serialisable summary (no per-perturbation arrays)."""
        return {"infidelity": self.infidelity, "normalized": self.normalized, "relative": self.relative,
                "beta": self.beta, "perturbations": int(self.dot.size), "cost": self.cost.to_dict()}  # fmt: skip


def infidelity_terms(dot: np.ndarray, delta: np.ndarray) -> tuple[float, float, float, float]:
    """Return (infidelity, normalised infidelity, relative infidelity, beta*) from I^T Phi and dS per perturbation."""
    dot = np.asarray(dot, dtype=np.float64)
    delta = np.asarray(delta, dtype=np.float64)
    raw = float(np.mean((dot - delta) ** 2))
    dd = float(np.sum(dot * dot))
    beta = float(np.sum(dot * delta) / dd) if dd > 0 else 0.0
    normalized = float(np.mean((beta * dot - delta) ** 2))
    energy = float(np.mean(delta * delta))
    relative = normalized / energy if energy > 0 else float("nan")
    return raw, normalized, relative, beta


@dataclass
class PerturbationEffects:
    """Perturbations I of one instance's crop and their effects dS = S(x) - S(x - I); shared by every method."""

    draws: list[torch.Tensor]  # (C, *crop) float64 each
    delta: np.ndarray
    cost: MetricCost


def perturbation_effects(
    inputs: InstanceInputs, perturbations: int = 16, scale: float = 0.01, seed: int = 1, batch_size: int | None = None
) -> PerturbationEffects:
    """Return ``perturbations`` Gaussian draws (sigma = ``scale`` x FLAIR range) and S(x) - S(x - I) for each."""
    model = inputs.model
    sigma = inputs.flair_range_sigma(scale)
    x = inputs.crop.image
    draws = [gaussian_perturbation(seed, i, inputs.box, sigma) for i in range(int(perturbations))]
    bs = inputs.batch_size(batch_size)
    with count_passes(model) as cost, explaining(model):
        images = (x if d is None else x - d.to(x.device, x.dtype) for d in [None] + draws)
        s = target_scores(model, images, inputs.crop.masks[0], inputs.score_aggregation, bs)
    return PerturbationEffects(draws, s[0] - s[1:], cost)


def attribution_infidelity(effects: PerturbationEffects, attribution: torch.Tensor) -> InfidelityResult:
    """Return the infidelity of ``attribution`` ((C, *crop)) against precomputed perturbation effects."""
    with timed() as cost:
        phi = attribution.to(torch.float64)
        dot = np.array([float((d.to(phi.device) * phi).sum()) for d in effects.draws])
        raw, normalized, relative, beta = infidelity_terms(dot, effects.delta)
    return InfidelityResult(raw, normalized, relative, beta, dot, effects.delta, cost)


def infidelity(
    inputs: InstanceInputs,
    attribution: torch.Tensor,
    perturbations: int = 16,
    scale: float = 0.01,
    seed: int = 1,
    batch_size: int | None = None,
) -> InfidelityResult:
    """Return the infidelity of ``attribution`` ((C, *crop), on the instance's crop) over ``perturbations`` draws."""
    effects = perturbation_effects(inputs, perturbations, scale, seed, batch_size)
    result = attribution_infidelity(effects, attribution)
    result.cost = effects.cost + result.cost
    return result
