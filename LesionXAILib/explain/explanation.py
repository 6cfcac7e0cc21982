"""Explanation: one instance's attribution maps on the input grid, their statistics, and how they were made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from LesionXAILib.explain.settings import ExplainSettings
from LesionXAILib.geometry import Geometry


@dataclass
class Explanation:
    """Maps (full-grid float32 k,j,i) keyed ``<method>_<sequence>`` or ``gradcam``/``gradcampp``, plus statistics.

    ``statistics[key]`` holds inside/ring/outside sums and peaks of map ``key``;
    ``statistics["flair_share"][method]`` is the FLAIR share of the method's total absolute attribution.
    ``fidelity``: how much of the whole-volume attribution the crop holds and how that is known
    (:mod:`LesionXAILib.explain.fidelity`: obtained, margin_mm, captured, pearson_r, cam_captured, passes, flag).
    """

    instance_id: Optional[int]
    maps: dict[str, np.ndarray]
    statistics: dict[str, dict]
    settings: ExplainSettings
    seconds: float
    status: Optional[str] = None
    voxels: int = 0
    box: Optional[dict] = None
    cam_layer: Optional[str] = None
    sigma: Optional[list[float]] = None
    extra: dict = field(default_factory=dict)
    fidelity: dict = field(default_factory=dict)
    check_seconds: float = 0.0  # of ``seconds``, the fidelity check's share (not serialised: a timing)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (everything but the maps themselves)."""
        return {
            "instance_id": self.instance_id,
            "status": self.status,
            "voxels": self.voxels,
            "maps": sorted(self.maps),
            "statistics": self.statistics,
            "settings": self.settings.to_dict(),
            "seconds": round(float(self.seconds), 4),
            "box": self.box,
            "cam_layer": self.cam_layer,
            "sigma": self.sigma,
            **({"fidelity": {k: v for k, v in self.fidelity.items() if k != "check_seconds"}} if self.fidelity else {}),
            **({"extra": self.extra} if self.extra else {}),
        }

    def write(
        self, out_dir: str | os.PathLike, geometry: Geometry, protected: Iterable[Optional[str | os.PathLike]] = ()
    ) -> dict[str, Path]:
        """Write each map as ``<out_dir>/<key>.nii.gz`` on ``geometry`` and return the paths by key."""
        from LesionXAILib.image_io import write_volume

        guard = [p for p in protected if p is not None]
        out = Path(out_dir)
        return {key: write_volume(arr, geometry, out / f"{key}.nii.gz", guard) for key, arr in self.maps.items()}
