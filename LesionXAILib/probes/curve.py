"""ContextCurve: one lesion's detection, probability and Dice as the kept context grows, plus its shells."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.geometry import Geometry
from LesionXAILib.probes.detection import ProbePoint
from LesionXAILib.probes.files import write_csv, write_json
from LesionXAILib.probes.structuring import shell_labels
from LesionXAILib.crop import CropBox

STATUS_NEEDS_CONTEXT = "needs_context"
STATUS_WITHOUT_CONTEXT = "detected_without_context"
STATUS_NOT_DETECTED = "not_detected"
STATUSES = (STATUS_NEEDS_CONTEXT, STATUS_WITHOUT_CONTEXT, STATUS_NOT_DETECTED)

CSV_COLUMNS = ["radius_mm", "detected", "mean_probability", "max_probability", "dice", "predicted_voxels"]


def context_needed(
    radii_mm: Sequence[float], detected: Sequence[bool], detected_full: bool
) -> tuple[Optional[float], str]:
    """Return (context needed in mm, status) from detections at ascending radii and at full context.

    The context needed is the smallest radius from which the lesion is detected at every larger
    radius, full context (r = infinity) included. ``math.inf`` means detected with full context but
    not within the largest radius; ``None`` (status not_detected) means not detected with full
    context. Status detected_without_context needs r = 0 among the radii; if the smallest radius
    is positive and every radius detects, that radius is returned as an upper bound (needs_context).
    """
    radii = [float(r) for r in radii_mm]
    flags = [bool(d) for d in detected]
    if len(radii) != len(flags) or not radii:
        raise ParameterError("context_needed needs one detection flag per radius and at least one radius")
    if any(b <= a for a, b in zip(radii, radii[1:])):
        raise ParameterError("radii must be strictly increasing")
    if not detected_full:
        return None, STATUS_NOT_DETECTED
    first = len(flags)
    while first > 0 and flags[first - 1]:
        first -= 1
    if first == len(flags):
        return math.inf, STATUS_NEEDS_CONTEXT
    if radii[first] == 0.0:
        return 0.0, STATUS_WITHOUT_CONTEXT
    return radii[first], STATUS_NEEDS_CONTEXT


def describe_context(value: Optional[float], status: str, max_radius: float) -> str:
    """Return a short human-readable phrase for a context-needed value and status."""
    if status == STATUS_NOT_DETECTED:
        return "not detected even with full context"
    if status == STATUS_WITHOUT_CONTEXT:
        return "detected with no context (lesion alone)"
    if value is not None and math.isinf(value):
        return f"needs more than {max_radius:g} mm of context (detected only with full context)"
    return f"needs {value:g} mm of context"


@dataclass
class ContextCurve:
    """The perilesional-context probe's result for one lesion (docs/methods.md#context-probe)."""

    radii_mm: np.ndarray  # ascending, mm
    detected: np.ndarray  # bool per radius
    mean_probability: np.ndarray  # mean lesion probability per radius
    max_probability: np.ndarray
    dice: np.ndarray  # vs the original instance mask
    predicted_voxels: np.ndarray
    full_context: ProbePoint  # the unmasked image on the same crop
    context_needed_mm: Optional[float]  # float, math.inf (more than the largest radius) or None
    status: str
    threshold: float
    fill: str
    lesion_voxels: int
    lesion_volume_mm3: float
    box: CropBox  # where the probe evaluated the network, on the input grid
    spacing_kji: tuple[float, float, float]
    seconds: float = 0.0
    instance_id: Optional[int] = None
    settings: dict = field(default_factory=dict)
    distance_mm: Optional[np.ndarray] = field(default=None, repr=False)  # crop-shaped, for the shells

    @property
    def points(self) -> list[ProbePoint]:
        """Return one ProbePoint per radius."""
        return [
            ProbePoint(bool(d), float(m), float(x), float(c), int(n))
            for d, m, x, c, n in zip(
                self.detected, self.mean_probability, self.max_probability, self.dice, self.predicted_voxels
            )
        ]

    @property
    def description(self) -> str:
        """Return the context-needed result as a sentence fragment."""
        return describe_context(self.context_needed_mm, self.status, float(self.radii_mm[-1]))

    def shells(self, geometry: Optional[Geometry] = None) -> np.ndarray:
        """Return an int16 k,j,i label volume on the input grid: 1 + index of the smallest ball holding the voxel.

        Label 1 is the lesion (r = 0 when 0 is a radius), label i + 1 the shell out to ``radii_mm[i]``,
        0 beyond the largest radius; with the default radii 0, 1, 2, ... mm the label is radius + 1.
        :meth:`shell_legend` maps labels to radii.
        """
        if self.distance_mm is None:
            raise ParameterError("this context curve carries no distance map (it was loaded without one)")
        if geometry is not None and tuple(geometry.shape) != tuple(self.box.full_shape):
            raise ParameterError(
                f"geometry shape {geometry.shape} (k,j,i) is not the probed image grid {self.box.full_shape}"
            )
        return self.box.insert(shell_labels(self.distance_mm, self.radii_mm), fill=0).astype(np.int16)

    def shell_legend(self) -> dict[int, float]:
        """Return {label value: radius in mm} for the labels of :meth:`shells`."""
        return {i + 1: float(r) for i, r in enumerate(self.radii_mm)}

    def rows(self) -> list[dict[str, Any]]:
        """Return one CSV row per radius plus a last row for full context (radius 'inf')."""
        out = []
        for r, p in zip(self.radii_mm, self.points):
            out.append({"radius_mm": float(r), **_row(p)})
        out.append({"radius_mm": "inf", **_row(self.full_context)})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (inf context is written as null plus a flag)."""
        value = self.context_needed_mm
        beyond = value is not None and math.isinf(value)
        return {
            "instance_id": self.instance_id,
            "status": self.status,
            "context_needed_mm": None if (value is None or beyond) else float(value),
            "context_needed_beyond_max_radius": bool(beyond),
            "description": self.description,
            "threshold": float(self.threshold),
            "fill": self.fill,
            "lesion_voxels": int(self.lesion_voxels),
            "lesion_volume_mm3": float(self.lesion_volume_mm3),
            "radii_mm": [float(r) for r in self.radii_mm],
            "points": [p.to_dict() for p in self.points],
            "full_context": self.full_context.to_dict(),
            "shell_legend": {str(k): v for k, v in self.shell_legend().items()},
            "crop": self.box.to_dict(),
            "spacing_kji": [float(s) for s in self.spacing_kji],
            "seconds": round(float(self.seconds), 4),
            "settings": self.settings,
        }

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the per-radius curve (and the full-context row) as CSV; return the path."""
        return write_csv(path, CSV_COLUMNS, self.rows())

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON; return the path."""
        return write_json(path, self.to_dict())

    def plot(self, path: str | os.PathLike, title: Optional[str] = None) -> Path:
        """Write a PNG of mean probability and Dice vs radius; return the path."""
        from LesionXAILib.probes.plots import plot_context_curve

        return plot_context_curve(self, path, title)


def _row(p: ProbePoint) -> dict[str, Any]:
    return {
        "detected": int(p.detected),
        "mean_probability": round(p.mean_probability, 6),
        "max_probability": round(p.max_probability, 6),
        "dice": round(p.dice, 6),
        "predicted_voxels": p.predicted_voxels,
    }
