"""The honesty check: re-segment a counterfactual with the same model, as the segmentation pipeline would.

The changed raw images are pasted into copies of the whole FLAIR/MPRAGE, normalised afresh (so the
statistics drift the change causes is included) and passed through the network either on a crop
reaching ``check_margin_mm`` beyond the changed box or, with ``check='whole'``, through the sliding-window
inference of ``segment``. The detection rule (``probes.detection``, rule 'component') is applied to the
lesion's region: where the lesion was and where the warp took it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from LesionXAILib.counterfactual.problem import LesionProblem, crop_around
from LesionXAILib.counterfactual.search import DetectionRule, lesion_log_odds
from LesionXAILib.image_io import InputPair
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.detection import score_prediction

if TYPE_CHECKING:
    from LesionXAILib.segmentation import SegmentationResult

# log-odds of probabilities this close to 0 or 1 are clipped (whole-volume checks only see probabilities)
PROBABILITY_CLIP = 1e-7


@dataclass(frozen=True)
class Resegmentation:
    """One re-segmentation of a lesion: detection, probabilities and log-odds over its mask, Dice."""

    detected: bool
    mean_probability: float
    max_probability: float
    target: float  # sum of the lesion log-odds over its mask (S_k of docs/methods.md#3-the-instance-target for sigmoid heads)
    predicted_voxels: int
    dice: float
    method: str
    margin_mm: Optional[float]

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        d["detected"] = bool(d["detected"])
        return d


def full_raw(result: "SegmentationResult", problem: LesionProblem, raw_box: Optional[np.ndarray]) -> np.ndarray:
    """Return the (2, k, j, i) raw FLAIR/MPRAGE of the subject with the changed box replaced by ``raw_box``."""
    pair = result.pair
    raw = np.stack([pair.flair, pair.t1]).astype(np.float32, copy=True)
    if raw_box is not None:
        raw[(slice(None),) + problem.lattice.slices] = raw_box
    return raw


def resegment(
    model: LesionModel,
    result: "SegmentationResult",
    problem: LesionProblem,
    rule: DetectionRule,
    raw_box: Optional[np.ndarray],
    mask: np.ndarray,
    region: np.ndarray,
    method: str,
    margin_mm: Optional[float],
) -> Resegmentation:
    """Return the re-segmentation of the subject with ``raw_box`` pasted in (None: the original).

    ``mask`` is the lesion (full grid), ``region`` where a component counts as detecting it.
    """
    from LesionXAILib.segmentation import prepare_input

    if raw_box is None:
        normalized = result.normalized
    else:
        raw = full_raw(result, problem, raw_box)
        normalized = prepare_input(InputPair(raw[0], raw[1], result.geometry), model)
    if method == "whole":
        from LesionXAILib.inference import predict_probability

        if raw_box is None:
            prob = result.probability
        else:
            prob = predict_probability(model, normalized, result.settings.inference)
        p64 = np.clip(prob[mask].astype(np.float64), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
        target = float(np.log(p64 / (1 - p64)).sum())
        point = score_prediction(prob, region, rule.threshold, rule.min_size_voxels, rule.connectivity)
        lesion_p = prob[mask]
    else:
        box = crop_around(problem.lattice, region.shape, problem.spacing_kji, margin_mm, model.size_divisor)
        x = torch.from_numpy(np.ascontiguousarray(box.extract(normalized, 0.0), dtype=np.float32))
        with torch.no_grad():
            log_odds = lesion_log_odds(model, model(x[None].to(model.device)))[0, 0].double().cpu()
        prob_crop = torch.sigmoid(log_odds).float().numpy()
        mask_crop = np.asarray(box.extract(mask, False), dtype=bool)
        region_crop = np.asarray(box.extract(region, False), dtype=bool)
        target = float(log_odds.numpy()[mask_crop].sum())
        point = score_prediction(prob_crop, region_crop, rule.threshold, rule.min_size_voxels, rule.connectivity)
        lesion_p = prob_crop[mask_crop]
    return Resegmentation(
        detected=bool(point.detected),
        mean_probability=float(lesion_p.mean()),
        max_probability=float(lesion_p.max()),
        target=target if math.isfinite(target) else float("nan"),
        predicted_voxels=int(point.predicted_voxels),
        dice=float(point.dice),
        method=method,
        margin_mm=None if method == "whole" else margin_mm,
    )

