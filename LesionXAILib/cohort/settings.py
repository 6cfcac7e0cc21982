"""CohortSettings: what is computed per subject, and the fingerprint that decides whether a result can be reused."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.analysis import AnalysisSettings
from LesionXAILib.errors import ParameterError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.metrics.settings import MetricSettings
from LesionXAILib.segmentation import SegmentationSettings

GROUND_TRUTH_MODES = ("auto", "require", "ignore")


@dataclass(frozen=True)
class ModelSpec:
    """A model to load in every worker: checkpoint path (None: the shipped demo model), config, device.

    ``trust``: the user allowed a model that runs code when loaded (TorchScript, ``--trust-model``);
    ``weights_only``: the path came from ``--weights`` (data only, never TorchScript).
    """

    path: Optional[str] = None
    config: Optional[str] = None
    device: str = "cpu"
    trust: bool = False
    weights_only: bool = False
    options: tuple[tuple[str, Any], ...] = ()  # format options (nnU-Net folds, checkpoint, ...) as sorted (key, value) pairs

    def __post_init__(self) -> None:
        opts = self.options.items() if isinstance(self.options, dict) else self.options
        object.__setattr__(self, "options", tuple(sorted((str(k), _hashable(v)) for k, v in opts)))

    def resolved(self) -> "ModelSpec":
        """Return a copy with the demo model's path filled in (raises if it is not installed) and paths absolute."""
        from LesionXAILib.resources import default_model_path

        path = str(Path(self.path).resolve()) if self.path else str(default_model_path())
        config = self.config
        if config and Path(config).suffix.lower() == ".json":
            config = str(Path(config).resolve())
        return ModelSpec(path, config, self.device, self.trust, self.weights_only, self.options)

    def load(self) -> LesionModel:
        """Return the eval-mode LesionModel this spec names (under the same loading policy as every caller)."""
        from LesionXAILib.model_loading import load_model, load_weights

        if self.weights_only:
            return load_weights(self.path, self.config, self.device)
        return load_model(self.path, self.config, self.device, trust=self.trust, options=dict(self.options))

    def identity(self) -> dict[str, Any]:
        """Return what identifies the network's results: content hash of the file or folder, config, format options (not the device)."""
        from LesionXAILib.models.identity import source_hash

        ident: dict[str, Any] = {"path": self.path, "sha256": source_hash(self.path, dict(self.options)) if self.path else None,
                                 "config": self.config}  # fmt: skip
        if self.options:
            ident["options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}
        return ident


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def model_identity(model: LesionModel) -> dict[str, Any]:
    """Return the identity of an in-memory model: its description and a hash of its config and weights."""
    from LesionXAILib.models.identity import weights_hash

    return {"model": model.describe(), "weights_sha256": weights_hash(model)}


@dataclass(frozen=True)
class CohortSettings:
    """Per-subject work: segmentation, explanations + context probe (``analysis``), metrics, and options.

    ``ground_truth``: 'auto' uses a subject's ground truth when it has one, 'require' fails subjects
    without one, 'ignore' never reads it. ``metrics=None`` skips the metrics (they need explanations).
    ``lesion_files`` writes each lesion's folder (maps as NIfTI, context curve CSV/JSON/PNG, shells). ``threads``: torch threads per subject task (the
    same in serial and distributed runs, so both compute the same numbers).
    """

    segmentation: SegmentationSettings = field(default_factory=SegmentationSettings)
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    metrics: Optional[MetricSettings] = field(default_factory=MetricSettings)
    ground_truth: str = "auto"
    lesion_files: bool = True
    threads: int = 1

    def __post_init__(self) -> None:
        if self.ground_truth not in GROUND_TRUTH_MODES:
            raise ParameterError(f"ground truth mode must be one of {GROUND_TRUTH_MODES}, got '{self.ground_truth}'")
        if int(self.threads) < 1:
            raise ParameterError(f"threads per subject must be >= 1, got {self.threads}")

    @property
    def computes_metrics(self) -> bool:
        """Return True if metrics are selected and there are explanations to score."""
        return self.metrics is not None and bool(self.metrics.metrics) and self.analysis.explain is not None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {
            "segmentation": self.segmentation.to_dict(),
            "analysis": self.analysis.to_dict(),
            "metrics": self.metrics.to_dict() if self.metrics is not None else None,
            "ground_truth": self.ground_truth,
            "lesion_files": self.lesion_files,
            "threads": int(self.threads),
        }

    def fingerprint(self, model: dict[str, Any]) -> str:
        """Return a hash of everything that changes a subject's results (settings and model, not threads/workers)."""
        d = self.to_dict()
        d.pop("threads")
        text = json.dumps({"settings": d, "model": model, "format": 1}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

