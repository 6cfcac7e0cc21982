"""Comparing predicted instances with a ground-truth mask: TP/FP per instance, FN lesions, lesion-wise F1, Dice."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.instances import (
    STATUS_FN,
    STATUS_FP,
    STATUS_TP,
    InstanceSet,
    describe_components,
    label_components,
)


@dataclass
class LesionMetrics:
    """Lesion-wise and voxel-wise agreement between predicted instances and ground truth."""

    tp: int
    fp: int
    fn: int
    gt_lesions: int
    gt_detected: int
    precision: float
    recall: float
    f1: float
    dice: float

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def voxel_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Return the Dice coefficient of two binary masks (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    denom = int(a.sum()) + int(b.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a, b).sum()) / denom


def lesion_scores(tp: int, fp: int, gt_lesions: int, gt_detected: int) -> tuple[float, float, float]:
    """Return (precision, recall, F1); NaN where undefined, F1 = 1 when both sides are empty."""
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = gt_detected / gt_lesions if gt_lesions else float("nan")
    if tp + fp == 0 and gt_lesions == 0:
        return precision, recall, 1.0
    if not (precision > 0 and recall > 0):  # also catches NaN
        return precision, recall, 0.0
    return precision, recall, 2 * precision * recall / (precision + recall)


def compare_masks(
    pred_labels: np.ndarray, gt_mask: np.ndarray, connectivity: int = 26
) -> tuple[dict[int, str], np.ndarray, list[int], LesionMetrics]:
    """Return (status per predicted id, GT component labels, undetected GT ids, metrics).

    A predicted component is TP if it overlaps any ground-truth voxel, else FP; a ground-truth
    lesion (26-connected component) that no predicted component overlaps is FN.
    """
    gt_mask = np.asarray(gt_mask, dtype=bool)
    if gt_mask.shape != pred_labels.shape:
        raise ParameterError(f"ground truth shape {gt_mask.shape} does not match prediction {pred_labels.shape}")
    n_pred = int(pred_labels.max()) if pred_labels.size else 0
    gt_labels, n_gt = label_components(gt_mask, connectivity)
    overlap_pred = np.unique(pred_labels[gt_mask])
    overlap_pred = set(int(v) for v in overlap_pred if v > 0)
    status = {i: (STATUS_TP if i in overlap_pred else STATUS_FP) for i in range(1, n_pred + 1)}
    detected_gt = set(int(v) for v in np.unique(gt_labels[pred_labels > 0]) if v > 0)
    missed = [g for g in range(1, n_gt + 1) if g not in detected_gt]
    tp = sum(1 for s in status.values() if s == STATUS_TP)
    fp = n_pred - tp
    precision, recall, f1 = lesion_scores(tp, fp, n_gt, len(detected_gt))
    metrics = LesionMetrics(
        tp=tp,
        fp=fp,
        fn=len(missed),
        gt_lesions=n_gt,
        gt_detected=len(detected_gt),
        precision=precision,
        recall=recall,
        f1=f1,
        dice=voxel_dice(pred_labels > 0, gt_mask),
    )
    return status, gt_labels, missed, metrics


def match_to_ground_truth(
    instances: InstanceSet, gt_mask: np.ndarray, probability: Optional[np.ndarray] = None, connectivity: int = 26
) -> LesionMetrics:
    """Mark ``instances`` TP/FP, append FN lesions (ids after the predicted ones) to it, and return the metrics."""
    status, gt_labels, missed, metrics = compare_masks(instances.labels, gt_mask, connectivity)
    for row in instances.instances:
        if row.source == "prediction":
            row.status = status[row.id]
    n_pred = int(instances.labels.max()) if instances.labels.size else 0
    fn_rows = []
    if missed:
        # FN lesions do not touch any prediction, so they can share the label map with new ids
        fn_labels = np.zeros_like(instances.labels)
        for offset, g in enumerate(missed, start=1):
            fn_labels[gt_labels == g] = n_pred + offset
        fn_rows = describe_components(
            fn_labels, range(n_pred + 1, n_pred + 1 + len(missed)), instances.geometry, probability, STATUS_FN, "ground_truth"
        )
        instances.labels = np.where(fn_labels > 0, fn_labels, instances.labels)
    instances.instances = [r for r in instances.instances if r.source == "prediction"] + fn_rows
    instances.metrics = metrics
    return metrics
