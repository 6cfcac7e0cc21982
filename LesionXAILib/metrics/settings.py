"""MetricSettings: which explanation-quality metrics to compute (docs/methods.md#metrics), and how."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

from LesionXAILib.errors import ParameterError

METRICS = ("infidelity", "max_sensitivity", "activation_precision", "deletion_insertion", "randomisation")


@dataclass(frozen=True)
class MetricSettings:
    """Settings of the metrics; perturbation sizes are fractions of the (max - min) range of the normalised FLAIR.

    ``infidelity_scale``: standard deviation of the Gaussian perturbations I (Yeh et al. 2019).
    ``sensitivity_radius``: L-infinity bound r of the perturbations delta (uniform in [-r, r]).
    ``ap_threshold`` / ``ap_top_k_percent``: activation precision after min-max normalisation,
    binarised at the threshold and (if not None) at the top k % of the region; ``ap_dilate_mm``
    dilates the lesion mask T by a ball in mm. ``deletion_region_mm``: voxels within this distance
    of the lesion are the ones deleted/inserted (None: the whole crop). ``randomisation_seed``
    seeds the re-initialised network of the sanity check. ``batch_size=None``: from the crop size.
    """

    metrics: tuple[str, ...] = METRICS
    infidelity_perturbations: int = 16
    infidelity_scale: float = 0.01
    sensitivity_samples: int = 8
    sensitivity_radius: float = 0.02
    ap_threshold: float = 0.5
    ap_top_k_percent: Optional[float] = 1.0
    ap_dilate_mm: float = 0.0
    deletion_steps: int = 32
    deletion_region_mm: Optional[float] = 8.0
    randomisation_seed: int = 0
    seed: int = 1
    batch_size: Optional[int] = None

    def __post_init__(self) -> None:
        metrics = (self.metrics,) if isinstance(self.metrics, str) else tuple(self.metrics)
        object.__setattr__(self, "metrics", metrics)
        self.validate()

    def validate(self) -> None:
        """Raise ParameterError naming the first invalid field."""
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ParameterError(f"unknown metric(s) {unknown}; choose from {', '.join(METRICS)}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ParameterError(f"metrics listed twice: {list(self.metrics)}")
        if int(self.infidelity_perturbations) < 1:
            raise ParameterError(f"infidelity needs >= 1 perturbation, got {self.infidelity_perturbations}")
        if not (math.isfinite(self.infidelity_scale) and self.infidelity_scale > 0):
            raise ParameterError(f"infidelity scale must be > 0, got {self.infidelity_scale}")
        if int(self.sensitivity_samples) < 1:
            raise ParameterError(f"max-sensitivity needs >= 1 sample, got {self.sensitivity_samples}")
        if not (math.isfinite(self.sensitivity_radius) and self.sensitivity_radius >= 0):
            raise ParameterError(f"sensitivity radius must be >= 0, got {self.sensitivity_radius}")
        if not 0.0 < self.ap_threshold < 1.0:
            raise ParameterError(f"activation-precision threshold must be in (0, 1), got {self.ap_threshold}")
        if self.ap_top_k_percent is not None and not 0.0 < self.ap_top_k_percent <= 100.0:
            raise ParameterError(f"activation-precision top-k must be in (0, 100] %, got {self.ap_top_k_percent}")
        if not (math.isfinite(self.ap_dilate_mm) and self.ap_dilate_mm >= 0):
            raise ParameterError(f"lesion dilation must be >= 0 mm, got {self.ap_dilate_mm}")
        if int(self.deletion_steps) < 1:
            raise ParameterError(f"deletion/insertion needs >= 1 step, got {self.deletion_steps}")
        if self.deletion_region_mm is not None and not (
            math.isfinite(self.deletion_region_mm) and self.deletion_region_mm >= 0
        ):
            raise ParameterError(f"deletion region must be >= 0 mm (or None), got {self.deletion_region_mm}")
        if int(self.seed) < 0 or int(self.randomisation_seed) < 0:
            raise ParameterError("seeds must be >= 0")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}")

    def replace(self, **changes: Any) -> "MetricSettings":
        """Return a copy with some fields changed (validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MetricSettings":
        """Return settings from :meth:`to_dict` output."""
        d = dict(data)
        d["metrics"] = tuple(d.get("metrics", METRICS))
        return cls(**d)
