"""evaluate_model: voxel Dice and lesion-wise precision/recall/F1 of a model on unseen phantoms."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.matching import lesion_scores
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter
from LesionXAILib.training.data import TRAIN_SEED_START


@dataclass
class EvaluationResult:
    """Per-subject rows and pooled scores (lesion counts summed over subjects, Dice averaged)."""

    rows: list[dict] = field(default_factory=list)

    @property
    def mean_dice(self) -> float:
        """Return the mean voxel Dice over subjects."""
        return float(np.mean([r["dice"] for r in self.rows])) if self.rows else float("nan")

    def pooled(self) -> dict:
        """Return lesion-wise precision, recall and F1 from TP/FP/detected counts summed over subjects."""
        tp = sum(r["tp"] for r in self.rows)
        fp = sum(r["fp"] for r in self.rows)
        gt = sum(r["gt_lesions"] for r in self.rows)
        detected = sum(r["gt_detected"] for r in self.rows)
        precision, recall, f1 = lesion_scores(tp, fp, gt, detected)
        return {"tp": tp, "fp": fp, "fn": gt - detected, "gt_lesions": gt, "precision": precision, "recall": recall, "f1": f1}

    def summary(self) -> dict:
        """Return a JSON-serialisable summary: seeds, mean/min Dice, pooled and mean per-subject lesion scores."""
        pooled = self.pooled()
        return {
            "subjects": len(self.rows),
            "seeds": [r["seed"] for r in self.rows],
            "dice_mean": self.mean_dice,
            "dice_min": float(min(r["dice"] for r in self.rows)) if self.rows else float("nan"),
            "lesion_precision": pooled["precision"],
            "lesion_recall": pooled["recall"],
            "lesion_f1": pooled["f1"],
            "lesion_f1_mean_per_subject": float(np.mean([r["f1"] for r in self.rows])) if self.rows else float("nan"),
            "tp": pooled["tp"],
            "fp": pooled["fp"],
            "fn": pooled["fn"],
            "gt_lesions": pooled["gt_lesions"],
            "rows": self.rows,
        }


def evaluate_model(
    model: LesionModel,
    seeds: Sequence[int],
    phantom_settings=None,
    segmentation_settings=None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> EvaluationResult:
    """Return Dice and lesion-wise scores of ``model`` on fresh phantoms of ``seeds`` (all below the training range)."""
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import SegmentationSettings, segment

    seen = [s for s in seeds if s >= TRAIN_SEED_START]
    if seen:
        raise ParameterError(f"evaluation seeds must be < {TRAIN_SEED_START} (training range), got {seen[:5]}")
    if not seeds:
        raise ParameterError("no evaluation seed given")
    phantom_settings = phantom_settings or PhantomSettings()
    segmentation_settings = segmentation_settings or SegmentationSettings()
    reporter = as_reporter(progress, cancel)
    result = EvaluationResult()
    for n, seed in enumerate(seeds):
        sub = reporter.sub(n / len(seeds), (n + 1) / len(seeds))
        start = time.perf_counter()
        phantom = generate_phantom(int(seed), phantom_settings)
        seg = segment(phantom.pair(), model, segmentation_settings, ground_truth=phantom.lesions, progress=sub)
        m = seg.instances.metrics
        row = {"seed": int(seed), **m.to_dict(), "seconds": round(time.perf_counter() - start, 2)}
        result.rows.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        reporter((n + 1) / len(seeds), f"seed {seed}: Dice {m.dice:.3f} F1 {m.f1:.3f}")
    return result
