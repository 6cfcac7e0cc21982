"""What a session computes (SessionSettings) and what one segmentation run reads (RunInputs): no scene objects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from LesionXAILib.errors import ParameterError


@dataclass(frozen=True)
class SessionSettings:
    """What the session computes: segmentation (threshold, min size) and per-lesion analysis settings."""

    threshold: Optional[float] = None  # None -> the model's
    min_size: float = 3  # voxels
    methods: tuple[str, ...] = ("smoothgrad", "gradcampp")
    samples: int = 16
    seed: int = 0
    max_radius_mm: float = 15.0
    aggregation: str = "sum"
    connectivity: int = 26  # of lesion instances (the anchor: 18)

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {self.threshold}")
        if not float(self.min_size) >= 0:
            raise ParameterError(f"minimum lesion size must be >= 0 voxels, got {self.min_size}")
        self.analysis_settings()  # validates methods, samples, seed, radius, aggregation

    def segmentation_settings(self) -> Any:
        """Return the SegmentationSettings these settings imply."""
        from LesionXAILib.segmentation import SegmentationSettings

        return SegmentationSettings(threshold=self.threshold, min_size=float(self.min_size), connectivity=int(self.connectivity))

    def analysis_settings(self) -> Any:
        """Return the AnalysisSettings (explainers + context probe) these settings imply."""
        from LesionXAILib.analysis import AnalysisSettings
        from LesionXAILib.explain.settings import ExplainSettings
        from LesionXAILib.probes.context import ContextSettings

        explain = None
        if self.methods:
            explain = ExplainSettings(
                methods=self.methods, aggregation=self.aggregation, samples=int(self.samples), seed=int(self.seed)
            )
        return AnalysisSettings(explain=explain, context=ContextSettings.up_to(float(self.max_radius_mm), seed=int(self.seed)))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = dataclasses.asdict(self)
        d["methods"] = list(self.methods)
        return d

    def replace(self, **changes: Any) -> "SessionSettings":
        """Return a copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def segmentation_fields(self) -> tuple:
        """Return the fields that change the instances themselves (a change needs a new run)."""
        return (self.threshold, float(self.min_size), int(self.connectivity))


def check_settings(settings: Any) -> "SessionSettings":
    """Return ``settings`` if it is a SessionSettings, else raise a clear ParameterError."""
    if not isinstance(settings, SessionSettings):
        raise ParameterError(f"settings must be SessionSettings, got {type(settings).__name__}")
    return settings


@dataclass(frozen=True)
class RunInputs:
    """What one segmentation run reads: the image pair, ground truth, the inputs' stamps when read, the settings.

    ``stamps`` is opaque to the session: a front end puts there whatever tells it later that an input
    changed (the MRML side: the input nodes' voxel and geometry fingerprints).
    """

    pair: Any  # InputPair on the FLAIR grid
    ground_truth: Optional[np.ndarray]
    stamps: tuple
    settings: SessionSettings
