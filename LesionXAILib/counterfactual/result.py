"""One lesion's counterfactual: the change on its box, the measurements that describe it, and its full-grid maps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from LesionXAILib.counterfactual.check import Resegmentation
from LesionXAILib.counterfactual.lattice import ControlLattice
from LesionXAILib.counterfactual.problem import ROLE_NAMES, ROLES
from LesionXAILib.counterfactual.warp import displacement_mm_lps
from LesionXAILib.geometry import Geometry
from LesionXAILib.instances import Instance


@dataclass
class Counterfactual:
    """The counterfactual of one lesion: box arrays (k, j, i) and its summary (see :meth:`summary`).

    ``displacement``: (3, box) voxel units, components k, j, i; ``raw``: (2, box) counterfactual FLAIR
    and MPRAGE; ``intensity``: (2, box) additive change in raw units; ``pullback_jacobian``: (box)
    det(I + du/dx) of the displacement (the map from counterfactual to original voxels, what ITK computes
    from displacement.nii.gz); ``warped_mask``: (box) the lesion pulled back through the warp (0..1).
    The anatomy's own deformation has determinant 1 / ``pullback_jacobian`` (at the same voxel): below 1
    where tissue shrank, above 1 where it grew.
    """

    instance: Instance
    mode: str
    lattice: ControlLattice
    geometry: Geometry
    displacement: np.ndarray
    raw: np.ndarray
    intensity: np.ndarray
    pullback_jacobian: np.ndarray
    warped_mask: np.ndarray
    crop_flipped: bool
    before: Resegmentation
    after: Resegmentation
    iterations: int
    evaluations: int
    seconds: float
    change_near_share: Optional[float]
    crop: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def instance_id(self) -> int:
        """Return the instance id."""
        return int(self.instance.id)

    @property
    def flipped(self) -> bool:
        """Return True if the re-segmentation confirms the flip (the lesion's detection changed)."""
        return bool(self.after.detected != self.before.detected)

    @property
    def diffeomorphic(self) -> bool:
        """Return True if the warp's Jacobian determinant is positive everywhere."""
        return bool(float(self.pullback_jacobian.min()) > 0)

    @property
    def passed(self) -> bool:
        """Return True if the counterfactual is valid: the flip is confirmed and the warp does not fold."""
        return self.flipped and self.diffeomorphic

    def log_jacobian(self, floor: float = 1e-6) -> np.ndarray:
        """Return log of the anatomy's volume change per counterfactual voxel (box): < 0 shrinkage, > 0 growth.

        It is -log det(I + du/dx) of the pull-back; determinants at or below ``floor`` (a folded warp,
        reported as such) are clipped there so the map stays finite.
        """
        return (-np.log(np.maximum(self.pullback_jacobian.astype(np.float64), floor))).astype(np.float32)

    def displacement_mm(self) -> np.ndarray:
        """Return the (k, j, i, 3) LPS displacement in mm on the box."""
        return displacement_mm_lps(self.displacement, self.geometry.spacing, self.geometry.direction)

    def full(self, box: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Return a full-grid array (k, j, i, ...) holding ``box`` (k, j, i, ...) at the lattice's place."""
        out = np.full(tuple(self.geometry.shape) + box.shape[3:], fill, dtype=box.dtype)
        out[self.lattice.slices] = box
        return out

    def summary(self) -> dict[str, Any]:
        """Return the JSON record written to counterfactual.json."""
        vv = self.geometry.voxel_volume
        before_mm3 = float(self.instance.voxels * vv)
        after_mm3 = float(self.warped_mask.sum() * vv)
        norm = np.linalg.norm(self.displacement_mm(), axis=-1)
        det = self.pullback_jacobian
        return {
            "instance_id": self.instance_id,
            "status": self.instance.status,
            "mode": self.mode,
            "flipped": self.flipped,
            "passed": self.passed,
            "target": {"definition": "sum of lesion log-odds over the lesion mask", "before": _num(self.before.target),
                       "after": _num(self.after.target)},  # fmt: skip
            "probability": {
                "mean_before": _num(self.before.mean_probability), "mean_after": _num(self.after.mean_probability),
                "max_before": _num(self.before.max_probability), "max_after": _num(self.after.max_probability),
            },  # fmt: skip
            "lesion_volume": {
                "before_mm3": round(before_mm3, 4),
                "after_mm3": round(after_mm3, 4),
                "change_mm3": round(after_mm3 - before_mm3, 4),
                "change_percent": round(100.0 * (after_mm3 - before_mm3) / before_mm3, 3) if before_mm3 else None,
            },
            "largest_displacement_mm": round(float(norm.max()), 4),
            "largest_intensity_change": {
                ROLE_NAMES[r]: round(float(np.abs(self.intensity[i]).max()), 6) for i, r in enumerate(ROLES)
            },
            "change_within_near_share": _num(self.change_near_share),
            "near_mm": self.settings.get("near_mm"),
            "jacobian": {
                "definition": "determinant of the anatomy's deformation (counterfactual / original volume), "
                              "1 / det(I + du/dx) of displacement.nii.gz",
                "min": _num(1.0 / float(det.max())) if det.max() > 0 else None,
                "max": _num(1.0 / float(det.min())) if det.min() > 0 else None,
                "pullback_min": _num(float(det.min())),
                "positive": self.diffeomorphic,
            },  # fmt: skip
            "iterations": int(self.iterations),
            "network_evaluations": int(self.evaluations),
            "seconds": round(float(self.seconds), 3),
            "crop_flipped": bool(self.crop_flipped),
            "resegmentation": {"before": self.before.to_dict(), "after": self.after.to_dict(), "confirms_flip": self.flipped},
            "region": {"changed_box": self.lattice.to_dict(), **self.crop},
            "settings": self.settings,
        }


def _num(value: Optional[float], digits: int = 6) -> Optional[float]:
    if value is None:
        return None
    v = float(value)
    return round(v, digits) if math.isfinite(v) else None
