"""The detection rule shared by the probes: re-segment a probability map and compare it with one lesion.

Re-segmentation follows the segmentation pipeline: voxels with probability >= threshold, split into
connected components (26-connectivity by default) of at least ``min_size_voxels`` voxels. The lesion
counts as **detected** when at least one such component overlaps its mask (rule ``component``), or, as
the anchor study counted it (rule ``any``), when any lesion voxel reaches the threshold. Dice compares
the lesion mask with the union of the overlapping components only, so other lesions inside the same
crop do not lower it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.instances import label_components

DETECTION_RULES = ("component", "any")


@dataclass(frozen=True)
class ProbePoint:
    """One re-segmentation of one lesion: detected or not, probabilities inside it, and Dice."""

    detected: bool
    mean_probability: float  # mean probability over the lesion mask (the anchor study's score)
    max_probability: float
    dice: float  # lesion mask vs the union of re-segmented components that overlap it
    predicted_voxels: int  # voxels in those overlapping components

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        d["detected"] = bool(d["detected"])
        return d


def overlapping_components(
    probability: np.ndarray, lesion_mask: np.ndarray, threshold: float, min_size_voxels: int = 1, connectivity: int = 26
) -> np.ndarray:
    """Return the boolean mask of thresholded components (>= ``min_size_voxels``) that overlap ``lesion_mask``."""
    labels, n = label_components(probability >= threshold, connectivity, min_size_voxels)
    if n == 0:
        return np.zeros(labels.shape, dtype=bool)
    hit = np.unique(labels[lesion_mask])
    hit = hit[hit > 0]
    if hit.size == 0:
        return np.zeros(labels.shape, dtype=bool)
    keep = np.zeros(n + 1, dtype=bool)
    keep[hit] = True
    return keep[labels]


def score_prediction(
    probability: np.ndarray,
    lesion_mask: np.ndarray,
    threshold: float,
    min_size_voxels: int = 1,
    connectivity: int = 26,
    rule: str = "component",
) -> ProbePoint:
    """Return the ProbePoint of ``probability`` (k,j,i) for the lesion ``lesion_mask`` (same shape), detected by ``rule``."""
    if rule not in DETECTION_RULES:
        raise ParameterError(f"detection rule must be one of {DETECTION_RULES}, got '{rule}'")
    mask = np.asarray(lesion_mask, dtype=bool)
    if probability.shape != mask.shape:
        raise ParameterError(f"probability shape {probability.shape} does not match lesion mask {mask.shape}")
    n_lesion = int(mask.sum())
    if n_lesion == 0:
        raise ParameterError("lesion mask is empty")
    predicted = overlapping_components(probability, mask, threshold, min_size_voxels, connectivity)
    n_pred = int(predicted.sum())
    inside = probability[mask]
    return ProbePoint(
        detected=n_pred > 0 if rule == "component" else bool((inside >= threshold).any()),
        mean_probability=float(inside.mean()),
        max_probability=float(inside.max()),
        dice=2.0 * int(np.count_nonzero(predicted & mask)) / (n_pred + n_lesion),
        predicted_voxels=n_pred,
    )
