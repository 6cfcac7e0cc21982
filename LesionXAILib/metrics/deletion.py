"""Deletion and insertion curves: remove (or add) input features in order of attribution, re-evaluate S.

Features are (channel, voxel) pairs of the evaluated region: the voxels of the instance's crop within
``region_mm`` of the lesion (all crop voxels with ``region_mm=None``; padding never). They are ranked
by decreasing attribution (stable for ties). For fractions t = 0, 1/n, ..., 1 of the features:
  deletion  x with the first t of them set to the baseline (0 = normalised background),
  insertion the baseline image (every region feature at 0, the rest of the crop as is) with the first
            t of them restored to x.
Each S is normalised as (S - S_base) / (S(x) - S_base), S_base = S with all region features at the
baseline, so deletion runs from 1 to 0 and insertion from 0 to 1 whatever the target's sign or scale
(in between a curve may leave [0, 1]: deleting features can push S below S_base); the AUC is the
trapezoid integral over the normalised x-axis t in [0, 1] (0.5 for a straight line). Deletion lower and insertion higher is
better. All perturbed crops go through the network in batches (forward passes only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.model_state import explaining
from LesionXAILib.metrics.cost import MetricCost, count_passes
from LesionXAILib.metrics.inputs import InstanceInputs
from LesionXAILib.metrics.scores import target_scores

# |S(x) - S_base| below this (relative to the larger of the two, or absolute 1e-12) leaves the curves undefined
_FLAT = 1e-9


@dataclass
class DeletionResult:
    """Deletion/insertion curves and AUCs of one ranking for one instance."""

    fractions: np.ndarray
    deletion: np.ndarray  # normalised S per fraction deleted
    insertion: np.ndarray  # normalised S per fraction inserted
    deletion_auc: float
    insertion_auc: float
    score: float  # S(x)
    baseline_score: float  # S with every region feature at the baseline
    features: int
    cost: MetricCost

    def to_dict(self, curves: bool = True) -> dict:
        """Return a JSON-serialisable dict (with the curves unless ``curves=False``)."""
        d = {"deletion_auc": self.deletion_auc, "insertion_auc": self.insertion_auc, "score": self.score,
             "baseline_score": self.baseline_score, "features": self.features, "cost": self.cost.to_dict()}  # fmt: skip
        if curves:
            d.update(fractions=self.fractions.tolist(), deletion=self.deletion.tolist(), insertion=self.insertion.tolist())
        return d


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Return the trapezoid integral of ``values`` over ``fractions``."""
    x = np.asarray(fractions, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


def deletion_region(inputs: InstanceInputs, region_mm: Optional[float]) -> np.ndarray:
    """Return the crop-shaped boolean mask of the voxels whose features are ranked (image voxels only)."""
    inner = inputs.inner_mask()
    if region_mm is None:
        return inner
    from LesionXAILib.probes.structuring import dilate_mm

    return dilate_mm(inputs.lesion_crop(), float(region_mm), inputs.geometry.spacing_kji) & inner


def feature_order(attribution: torch.Tensor, region: np.ndarray) -> np.ndarray:
    """Return the flat (channel, voxel) indices of the region's features, by decreasing attribution (stable)."""
    phi = attribution.detach().to("cpu", torch.float64).numpy()
    flat_region = np.flatnonzero(np.broadcast_to(region, phi.shape))
    if flat_region.size == 0:
        raise ParameterError("deletion/insertion: the evaluated region holds no voxel")
    values = phi.reshape(-1)[flat_region]
    return flat_region[np.argsort(-values, kind="stable")]


def deletion_insertion(
    inputs: InstanceInputs,
    order: np.ndarray,
    steps: int = 32,
    batch_size: Optional[int] = None,
    baseline: float = 0.0,
) -> DeletionResult:
    """Return the deletion and insertion curves of the ranking ``order`` (flat feature indices into the crop)."""
    model = inputs.model
    x = inputs.crop.image
    flat_x = x.reshape(-1)
    idx = torch.from_numpy(np.asarray(order, dtype=np.int64)).to(x.device)
    n = int(idx.numel())
    counts = [int(round(j * n / steps)) for j in range(steps + 1)]
    base = flat_x.clone()
    base[idx] = baseline

    def deleted(c: int) -> torch.Tensor:
        out = flat_x.clone()
        out[idx[:c]] = baseline
        return out.view_as(x)

    def inserted(c: int) -> torch.Tensor:
        out = base.clone()
        out[idx[:c]] = flat_x[idx[:c]]
        return out.view_as(x)

    inner = counts[1:-1]
    def images():  # built lazily: only one batch of perturbed crops is in memory at a time
        yield x
        yield base.view_as(x)
        yield from (deleted(c) for c in inner)
        yield from (inserted(c) for c in inner)

    bs = inputs.batch_size(batch_size)
    with count_passes(model) as cost, explaining(model):
        s = target_scores(model, images(), inputs.crop.masks[0], inputs.score_aggregation, bs)
    s_x, s_base = float(s[0]), float(s[1])
    m = len(inner)
    raw_del = np.concatenate([[s_x], s[2 : 2 + m], [s_base]])
    raw_ins = np.concatenate([[s_base], s[2 + m :], [s_x]])
    fractions = np.asarray(counts, dtype=np.float64) / n
    span = s_x - s_base
    if abs(span) <= _FLAT * max(abs(s_x), abs(s_base), 1e-3):
        nan = np.full(steps + 1, np.nan)
        return DeletionResult(fractions, nan, nan.copy(), float("nan"), float("nan"), s_x, s_base, n, cost)
    dele = (raw_del - s_base) / span
    ins = (raw_ins - s_base) / span
    return DeletionResult(fractions, dele, ins, auc(fractions, dele), auc(fractions, ins), s_x, s_base, n, cost)


def random_order(region: np.ndarray, channels: int, seed: int) -> np.ndarray:
    """Return the region's flat feature indices in a seeded random order (the random-attribution control)."""
    flat_region = np.flatnonzero(np.broadcast_to(region, (channels,) + region.shape))
    return np.random.default_rng(seed).permutation(flat_region)
