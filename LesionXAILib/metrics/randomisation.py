"""Model-parameter randomisation sanity check (Adebayo et al. 2018).

Every learnable layer of a copy of the network is re-initialised (full randomisation): modules with
``reset_parameters`` use their own initialisation scheme (batch-norm running statistics are reset
too); any parameter left over (e.g. inside TorchScript modules) is redrawn from a Gaussian with its
trained mean and standard deviation. The draw is seeded and leaves the global torch RNG untouched.
The same explainer, target and settings then explain the instance with the randomised network, and
the Spearman rank correlation between the trained and randomised maps is taken over the crop the
explainer evaluated, restricted to the voxels where either map is non-zero (signed maps, and their
absolute values as Adebayo et al. also report). The restriction matters for ROI gradient maps: both
are exactly 0 beyond the lesion's receptive field, and those shared ties alone would make any two
maps look alike. A map that explains the model must change: |rho| near 0 passes, rho near 1 fails.

CAMs are full-grid maps (the layer's activations come from the whole volume), so they are also compared
over the whole brain (voxels where any input channel is non-zero): a CAM can differ near the lesion
and still be the same map everywhere else. Gradient maps of a crop are 0 beyond it, so for them the
brain-wide value is the crop's. The absolute maps are reported next to the signed ones because
|SmoothGrad| of a trained network correlates far more with that of a random one than signed SmoothGrad.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.crop import CropBox


@dataclass
class RandomisationResult:
    """Spearman correlation of one map between the trained and the randomised network."""

    spearman: float
    spearman_abs: float
    spearman_brain: Optional[float] = None  # over the whole brain (CAMs)
    spearman_abs_brain: Optional[float] = None

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (the brain-wide values only where measured)."""
        d = {"spearman": self.spearman, "spearman_abs": self.spearman_abs}
        if self.spearman_brain is not None:
            d.update(spearman_brain=self.spearman_brain, spearman_abs_brain=self.spearman_abs_brain)
        return d


def randomised_model(model: LesionModel, seed: int = 0) -> LesionModel:
    """Return an eval-mode copy of ``model`` with every learnable parameter re-initialised (seeded)."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(int(seed))
        touched: set[int] = set()
        for module in clone.network.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset) and not isinstance(module, torch.jit.ScriptModule):
                reset()
                touched.update(id(p) for p in module.parameters(recurse=False))
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
        for p in clone.network.parameters():
            if id(p) in touched or not p.is_floating_point():
                continue
            mean, std = p.mean(), p.std() if p.numel() > 1 else torch.zeros((), dtype=p.dtype)
            p.copy_(mean + std * torch.randn(p.shape, dtype=p.dtype, device=p.device))
    clone.source = f"{model.source or 'model'} (randomised, seed {seed})"
    return clone.eval()


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Return Spearman's rank correlation of two equally shaped arrays (NaN if either is constant)."""
    from scipy.stats import spearmanr

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def compare_maps(
    trained: np.ndarray, randomised: np.ndarray, box: CropBox, brain: Optional[np.ndarray] = None
) -> RandomisationResult:
    """Return the Spearman correlations of two full-grid maps over the image part of ``box`` where either is non-zero,
    and, given a full-grid ``brain`` mask, over the brain's voxels where either is non-zero."""
    a = np.asarray(trained)[box.slices]
    b = np.asarray(randomised)[box.slices]
    support = (a != 0) | (b != 0)
    a, b = a[support], b[support]
    result = RandomisationResult(spearman(a, b), spearman(np.abs(a), np.abs(b)))
    if brain is not None:
        region = np.asarray(brain, dtype=bool)
        a, b = np.asarray(trained)[region], np.asarray(randomised)[region]
        support = (a != 0) | (b != 0)
        a, b = a[support], b[support]
        result.spearman_brain, result.spearman_abs_brain = spearman(a, b), spearman(np.abs(a), np.abs(b))
    return result


def brain_mask(image: np.ndarray) -> np.ndarray:
    """Return the (k, j, i) brain of a normalised (C, k, j, i) image: voxels where any channel is non-zero."""
    return np.any(np.asarray(image) != 0, axis=0)
