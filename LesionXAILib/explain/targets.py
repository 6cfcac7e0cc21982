"""Instance targets (docs/methods.md#instance-target): which lesion logits an explanation differentiates, and how.

``sum``  S_k(x) = sum of the lesion logits z_v(x) over the instance mask M_k (the anchor's default);
``mean`` the same divided by |M_k| (named option); ``max`` keeps, per input voxel and channel, the
gradient of the single lesion voxel whose gradient there has the largest magnitude (sign kept).
For a missed (FN) lesion the mask is the ground-truth lesion the network failed to segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.explain.settings import AGGREGATIONS
from LesionXAILib.instances import STATUS_FN, InstanceSet


@dataclass(frozen=True)
class InstanceTarget:
    """One lesion instance to explain: its k,j,i boolean mask on the input grid and the aggregation."""

    mask: np.ndarray
    aggregation: str = "sum"
    instance_id: Optional[int] = None
    status: Optional[str] = None

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ParameterError(f"aggregation must be one of {AGGREGATIONS}, got '{self.aggregation}'")
        object.__setattr__(self, "mask", np.asarray(self.mask, dtype=bool))

    @property
    def voxels(self) -> int:
        """Return |M_k|, the number of lesion voxels."""
        return int(np.count_nonzero(self.mask))

    @property
    def label(self) -> str:
        """Return a short human-readable name ("instance 3" or "the given mask")."""
        return f"instance {self.instance_id}" if self.instance_id is not None else "the given instance mask"


def as_target(
    target: "InstanceTarget | np.ndarray | torch.Tensor",
    image_shape: Sequence[int],
    aggregation: Optional[str] = None,
) -> InstanceTarget:
    """Return ``target`` as an InstanceTarget checked against the image's k,j,i shape (clear error if unusable)."""
    if isinstance(target, InstanceTarget):
        t = target if aggregation is None or aggregation == target.aggregation else InstanceTarget(
            target.mask, aggregation, target.instance_id, target.status
        )
    else:
        mask = target.detach().cpu().numpy() if isinstance(target, torch.Tensor) else np.asarray(target)
        t = InstanceTarget(mask, aggregation or "sum")
    shape = tuple(int(s) for s in image_shape)
    if t.mask.shape != shape:
        raise InstanceError(
            f"{t.label}: mask shape {t.mask.shape} (k,j,i) does not match the image {shape}; the mask must lie on "
            "the input grid"
        )
    if not t.mask.any():
        raise InstanceError(f"{t.label}: mask is empty (no lesion voxel inside the image)")
    return t


def instance_target(instances: InstanceSet, instance_id: int, aggregation: str = "sum") -> InstanceTarget:
    """Return the target of one instance of ``instances`` (InstanceError listing valid ids if unknown)."""
    try:
        row = instances.get(int(instance_id))
    except (TypeError, ValueError):
        raise InstanceError(f"lesion instance id must be an integer, got {instance_id!r}") from None
    return InstanceTarget(instances.labels == row.id, aggregation, row.id, row.status)


def missed_lesion_targets(
    predicted: np.ndarray, ground_truth: np.ndarray, aggregation: str = "sum", connectivity: int = 26
) -> list[InstanceTarget]:
    """Return one FN target per ground-truth lesion (connected component) that ``predicted`` does not overlap."""
    from LesionXAILib.matching import compare_masks

    labels = np.asarray(predicted)
    if labels.dtype == bool:
        labels = labels.astype(np.int32)
    _, gt_labels, missed, _ = compare_masks(labels, ground_truth, connectivity)
    return [InstanceTarget(gt_labels == g, aggregation, None, STATUS_FN) for g in missed]


def target_weights(masks: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Return the (K, ...) cotangents of the sum/mean targets: 1 (or 1/|M_k|) on each mask, 0 elsewhere."""
    if aggregation not in ("sum", "mean"):
        raise ParameterError(f"target weights exist for sum/mean aggregation only, not '{aggregation}'")
    w = masks.to(torch.float64)
    if aggregation == "mean":
        w = w / w.flatten(1).sum(1).clamp_min(1).view(-1, *([1] * (w.ndim - 1)))
    return w
