"""The segmentation pipeline: inputs -> normalised stack -> probability -> lesion instances -> files."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from LesionXAILib.atomic_write import write_csv, write_json
from LesionXAILib.image_checks import check_finite_output
from LesionXAILib.image_io import InputPair, write_volume
from LesionXAILib.inference import InferenceSettings, predict_probability
from LesionXAILib.instances import InstanceSet, extract_instances, min_size_in_voxels
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.errors import ModelLoadError
from LesionXAILib.normalization import normalize
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter
from LesionXAILib.run_identity import run_ids


@dataclass(frozen=True)
class SegmentationSettings:
    """Thresholding and labelling settings; ``threshold=None`` takes the model's default."""

    threshold: Optional[float] = None
    min_size: float = 3
    min_size_unit: str = "voxels"
    connectivity: int = 26
    inference: InferenceSettings = field(default_factory=InferenceSettings)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return json.loads(json.dumps(asdict(self)))


@dataclass
class SegmentationResult:
    """Everything one segmentation run produced, kept in memory for explainers and probes."""

    pair: InputPair
    normalized: np.ndarray  # (2, k, j, i) float32, the network's input
    probability: np.ndarray  # (k, j, i) float32
    instances: InstanceSet
    threshold: float
    settings: SegmentationSettings
    model_info: dict
    seconds: float = 0.0

    @property
    def geometry(self):
        """Return the reference (FLAIR) grid."""
        return self.pair.geometry

    def summary(self) -> dict[str, Any]:
        """Return the JSON summary written to instances.json."""
        return {
            "lesionxai_version": __import__("LesionXAILib").__version__,
            **run_ids(self.instances.labels),
            "inputs": {
                "flair": str(self.pair.flair_path) if self.pair.flair_path else None,
                "t1": str(self.pair.t1_path) if self.pair.t1_path else None,
            },
            "notes": list(self.pair.notes),
            "geometry": self.geometry.to_dict(),
            "threshold": self.threshold,
            "min_size_voxels": self.instances.min_size_voxels,
            "settings": self.settings.to_dict(),
            "model": self.model_info,
            "seconds": round(self.seconds, 3),
            "metrics": self.instances.metrics.to_dict() if self.instances.metrics else None,
            "instances": self.instances.table(),
        }

    def write(self, out_dir: str | os.PathLike, protected: Iterable[Optional[str | os.PathLike]] = ()) -> dict[str, Path]:
        """Write probability.nii.gz, instances.nii.gz, instances.csv and instances.json; return their paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        guard = [p for p in protected if p is not None] + [
            p for p in (self.pair.flair_path, self.pair.t1_path) if p is not None
        ]
        paths = {
            "probability": write_volume(self.probability, self.geometry, out / "probability.nii.gz", guard),
            "instances": write_volume(self.instances.labels.astype(np.int32), self.geometry, out / "instances.nii.gz", guard),
        }
        paths["csv"] = write_instance_csv(self.instances, out / "instances.csv")
        json_path = out / "instances.json"
        write_json(json_path, self.summary(), allow_nan=True)
        paths["json"] = json_path
        return paths


CSV_COLUMNS = [
    "id", "status", "source", "voxels", "volume_mm3",
    "centroid_i", "centroid_j", "centroid_k", "centroid_r", "centroid_a", "centroid_s",
    "bbox_i_min", "bbox_j_min", "bbox_k_min", "bbox_i_max", "bbox_j_max", "bbox_k_max",
    "mean_probability", "max_probability",
]  # fmt: skip


def instance_csv_rows(instances: InstanceSet) -> list[dict[str, Any]]:
    """Return the instance table flattened to CSV_COLUMNS."""
    rows = []
    for r in instances.instances:
        rows.append(
            {
                "id": r.id,
                "status": r.status,
                "source": r.source,
                "voxels": r.voxels,
                "volume_mm3": round(r.volume_mm3, 4),
                **{f"centroid_{a}": round(v, 3) for a, v in zip("ijk", r.centroid_ijk)},
                **{f"centroid_{a}": round(v, 3) for a, v in zip("ras", r.centroid_ras)},
                **{f"bbox_{a}_min": v for a, v in zip("ijk", r.bbox_ijk_min)},
                **{f"bbox_{a}_max": v for a, v in zip("ijk", r.bbox_ijk_max)},
                "mean_probability": round(r.mean_probability, 6),
                "max_probability": round(r.max_probability, 6),
            }
        )
    return rows


def write_instance_csv(instances: InstanceSet, path: str | os.PathLike) -> Path:
    """Write the instance table as CSV and return its path."""
    return write_csv(path, CSV_COLUMNS, instance_csv_rows(instances))


# sequence names a model may list in ModelConfig.input_order, and which input of the pair each one is
SEQUENCE_ALIASES = {"FLAIR": "flair", "T2FLAIR": "flair", "MPRAGE": "t1", "T1": "t1", "T1W": "t1", "T1N": "t1"}


def input_stack(pair: InputPair, input_order: Optional[tuple[str, ...]] = None) -> np.ndarray:
    """Return the raw (C, k, j, i) float32 stack of the pair's sequences in ``input_order`` (default FLAIR, MPRAGE)."""
    if input_order is None:
        return pair.stacked()
    channels = []
    for name in input_order:
        role = SEQUENCE_ALIASES.get(str(name).upper().replace("-", "").replace("_", ""))
        if role is None:
            raise ModelLoadError(
                f"model input channel '{name}' is not a sequence LesionXAI reads (known: {', '.join(sorted(SEQUENCE_ALIASES))})"
            )
        channels.append(getattr(pair, role))
    return np.stack(channels).astype(np.float32, copy=False)


def prepare_input(pair: InputPair, model: Optional[LesionModel] = None) -> np.ndarray:
    """Return the network input on the FLAIR grid: the model's channels stacked and normalised as its contract says.

    Without a model: (FLAIR, MPRAGE) z-scored per channel on non-zero voxels (LesionXAI's own models).
    """
    if model is None:
        return normalize(pair.stacked())
    return normalize(input_stack(pair, tuple(model.config.input_order)), model.config)


def segment(
    pair: InputPair,
    model: LesionModel,
    settings: SegmentationSettings = SegmentationSettings(),
    ground_truth: Optional[np.ndarray] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> SegmentationResult:
    """Return the probability map and lesion instances of one subject (TP/FP/FN with ``ground_truth``)."""
    reporter = as_reporter(progress, cancel)
    start = time.perf_counter()
    threshold = model.config.threshold if settings.threshold is None else float(settings.threshold)
    min_voxels = min_size_in_voxels(settings.min_size, settings.min_size_unit, pair.geometry)
    reporter(0.0, "normalising")
    model.bind(pair.geometry, pair)  # contracts that reorient or resample depend on the FLAIR's direction and spacing
    x = prepare_input(pair, model)
    prob = check_finite_output(predict_probability(model, x, settings.inference, reporter.sub(0.02, 0.95)), "model output")
    reporter(0.95, "labelling instances")
    instances = extract_instances(prob, pair.geometry, threshold, min_voxels, settings.connectivity, ground_truth)
    reporter(1.0, f"{len(instances.instances)} instances")
    return SegmentationResult(
        pair=pair,
        normalized=x,
        probability=prob,
        instances=instances,
        threshold=threshold,
        settings=settings,
        model_info=model.describe(),
        seconds=time.perf_counter() - start,
    )
