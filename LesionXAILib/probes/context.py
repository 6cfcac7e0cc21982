"""Perilesional-context probe (docs/methods.md#context-probe): how much tissue around a lesion the model needs.

For radii r (mm) the image is kept inside the lesion dilated by a ball of radius r (physical units,
anisotropic spacing honoured) and replaced by a neutral fill elsewhere; the model is re-run and the
lesion's detection, mean probability and Dice are recorded (detection rule: ``probes.detection``).
The unmasked image is evaluated too ("full context", r = infinity).

``element="anchor"`` grows the lesion as the anchor study did instead: n-fold dilation with the
18-connected element in voxel steps (``probes.structuring.dilation_steps``); the radii are then
whole step counts n (default 1 ... 34), not mm, and ``detection="any"`` is the anchor's rule.

Speed: everything runs on one lesion-centred crop, all radii stacked along the batch dimension
(in chunks that bound memory). The crop starts on the network's stride grid (``crop.align_box``)
and reaches ``max(largest radius, receptive_margin_mm)`` beyond the lesion's bounding box. Why that
is enough: only the network's output on (and just around) the lesion is scored, and that output
depends on the input within the network's receptive field; inside the crop the input is exactly
the masked image, so the crop differs from a whole-volume run only through its border, which is at
least ``receptive_margin_mm`` from the lesion. Kept tissue farther out than that cannot change the
scored output, so the crop need not hold the largest ball *plus* the receptive field; it holds the
largest ball (for the shells overlay) or the receptive margin, whichever is larger. Tests check the
crop against whole-volume runs, radius by radius.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.eval_mode import eval_mode
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.curve import ContextCurve, context_needed
from LesionXAILib.probes.detection import DETECTION_RULES, ProbePoint, score_prediction
from LesionXAILib.probes.fill import check_fill, fill_field
from LesionXAILib.probes.structuring import ELEMENTS, dilation_steps, distance_from_mask_mm, within_radius
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter
from LesionXAILib.crop import CropBox, aligned_lesion_box

if TYPE_CHECKING:
    from LesionXAILib.segmentation import SegmentationResult

DEFAULT_MAX_RADIUS_MM = 15
# How far beyond the lesion the crop reaches (at least) so that the network's output on the lesion
# does not feel the crop border. Measured with the shipped demo model (phantom seed 21, 8 lesions,
# full-context mean lesion probability of the stride-aligned crop vs one whole-volume pass): largest
# error 7e-5 at 16 mm, 7e-6 at 20 mm, 1e-7 (float32 rounding) at 24 mm and beyond.
DEFAULT_RECEPTIVE_MARGIN_MM = 24.0
# voxels per network call (batch x crop); about 8 crops of 64^3
MAX_BATCH_VOXELS = 8 * 64**3
# The anchor's dilation steps (federicospagnolo/IES): 1 ... 34 voxels with the 18-connected element
ANCHOR_STEPS = tuple(float(n) for n in range(1, 35))


def default_radii(max_radius_mm: float = DEFAULT_MAX_RADIUS_MM, step_mm: float = 1.0) -> tuple[float, ...]:
    """Return the radii 0, step, 2 step, ... up to ``max_radius_mm`` (included when it is a multiple)."""
    if not (math.isfinite(max_radius_mm) and max_radius_mm >= 0):
        raise ParameterError(f"maximum radius must be a finite number >= 0 mm, got {max_radius_mm}")
    if not (math.isfinite(step_mm) and step_mm > 0):
        raise ParameterError(f"radius step must be > 0 mm, got {step_mm}")
    n = int(math.floor(max_radius_mm / step_mm + 1e-9))
    return tuple(round(i * step_mm, 9) for i in range(n + 1))


@dataclass(frozen=True)
class ContextSettings:
    """Settings of the context probe; radii are sorted and de-duplicated, and checked on creation.

    ``threshold=None`` takes the segmentation's (or the model's) threshold. ``min_size_voxels=None``
    means 1 (any predicted voxel on the lesion) for :func:`context_probe`, and the segmentation's
    minimum size for :func:`context_probe_instances`. ``batch_size=None`` picks the largest batch
    within ``MAX_BATCH_VOXELS``. ``seed`` drives the noise fill. ``element``: 'ball' (radii in mm) or
    'anchor' (radii = whole numbers of 18-connected dilation steps). ``detection``: 'component' (a
    thresholded component overlaps the lesion) or 'any' (a lesion voxel reaches the threshold).
    """

    radii_mm: tuple[float, ...] = default_radii()
    fill: str = "background"
    threshold: Optional[float] = None
    min_size_voxels: Optional[int] = None
    connectivity: int = 26
    receptive_margin_mm: float = DEFAULT_RECEPTIVE_MARGIN_MM
    batch_size: Optional[int] = None
    seed: int = 0
    element: str = "ball"
    detection: str = "component"

    def __post_init__(self) -> None:
        try:
            radii = [float(r) for r in self.radii_mm]
        except (TypeError, ValueError):
            raise ParameterError(f"radii must be numbers in mm, got {self.radii_mm!r}") from None
        if not radii:
            raise ParameterError("the list of radii is empty; give at least one radius in mm (e.g. 0..15)")
        bad = [r for r in radii if not (math.isfinite(r) and r >= 0)]
        if bad:
            raise ParameterError(f"radii must be finite and >= 0 mm; got {bad}")
        object.__setattr__(self, "radii_mm", tuple(sorted(set(radii))))
        check_fill(self.fill)
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.min_size_voxels is not None and int(self.min_size_voxels) < 1:
            raise ParameterError(f"minimum component size must be >= 1 voxel, got {self.min_size_voxels}")
        if self.connectivity not in (6, 18, 26):
            raise ParameterError(f"connectivity must be 6, 18 or 26, got {self.connectivity}")
        if not (math.isfinite(self.receptive_margin_mm) and self.receptive_margin_mm >= 0):
            raise ParameterError(f"receptive margin must be >= 0 mm, got {self.receptive_margin_mm}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}")
        if self.element not in ELEMENTS:
            raise ParameterError(f"probe element must be one of {ELEMENTS}, got '{self.element}'")
        if self.element == "anchor" and any(r != int(r) for r in self.radii_mm):
            raise ParameterError(f"the anchor element counts whole dilation steps; got radii {list(self.radii_mm)}")
        if self.detection not in DETECTION_RULES:
            raise ParameterError(f"detection rule must be one of {DETECTION_RULES}, got '{self.detection}'")

    @classmethod
    def anchor(cls, **changes) -> "ContextSettings":
        """Return the anchor study's probe: 18-connected dilation steps 1 ... 34, fill 0, any-voxel detection."""
        values = {"radii_mm": ANCHOR_STEPS, "element": "anchor", "detection": "any", "fill": "zero", **changes}
        return cls(**values)

    def reach_mm(self, spacing_kji: Sequence[float]) -> float:
        """Return how far (mm) the largest kept region reaches beyond the lesion (n steps reach n voxels per axis)."""
        if self.element == "anchor":
            return self.max_radius_mm * max(float(s) for s in spacing_kji)
        return self.max_radius_mm

    @classmethod
    def up_to(cls, max_radius_mm: float, step_mm: float = 1.0, **changes) -> "ContextSettings":
        """Return settings with radii 0, step, ... up to ``max_radius_mm`` and other fields from ``changes``."""
        return cls(radii_mm=default_radii(max_radius_mm, step_mm), **changes)

    @property
    def max_radius_mm(self) -> float:
        """Return the largest radius probed."""
        return self.radii_mm[-1]

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        d["radii_mm"] = list(self.radii_mm)
        return d


def probe_box(
    instance_mask: np.ndarray, spacing_kji: Sequence[float], settings: ContextSettings, divisor: int = 1
) -> CropBox:
    """Return the lesion-centred, stride-aligned crop the probe evaluates: bbox + max(largest radius, receptive margin) mm."""
    margin = max(settings.reach_mm(spacing_kji), settings.receptive_margin_mm)
    return aligned_lesion_box(instance_mask, spacing_kji, margin, divisor)


def _auto_batch(settings: ContextSettings, crop_shape: Sequence[int], n_points: int) -> int:
    if settings.batch_size is not None:
        return int(settings.batch_size)
    voxels = int(np.prod(crop_shape))
    return max(1, min(n_points, MAX_BATCH_VOXELS // max(voxels, 1)))


def _check_inputs(
    model: LesionModel, normalized: np.ndarray, instance_mask: np.ndarray, geometry: Geometry
) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(normalized.detach().cpu() if isinstance(normalized, torch.Tensor) else normalized, dtype=np.float32)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(geometry.shape):
        raise ParameterError(
            f"normalised input must be (channels, k, j, i) on the grid {geometry.shape}, got shape {tuple(x.shape)}"
        )
    if x.shape[0] != model.config.in_channels:
        raise ParameterError(
            f"model '{model.config.name}' expects {model.config.in_channels} input channels "
            f"({', '.join(model.config.input_order)}), got {x.shape[0]}"
        )
    mask = np.asarray(instance_mask)
    if mask.shape != tuple(geometry.shape):
        raise InstanceError(f"instance mask shape {mask.shape} does not match the image grid {geometry.shape}")
    mask = mask.astype(bool, copy=False)
    if not mask.any():
        raise InstanceError("instance mask is empty (no voxel inside the image)")
    return x, mask


def _probabilities(model: LesionModel, batch: torch.Tensor) -> np.ndarray:
    """Return (B, k, j, i) lesion probabilities for a (B, C, k, j, i) batch."""
    with torch.inference_mode():
        out = model(batch.to(model.device))
        return model.probability(out)[:, 0].float().cpu().numpy()


def context_probe(
    model: LesionModel,
    normalized: np.ndarray,
    instance_mask: np.ndarray,
    geometry: Geometry,
    settings: ContextSettings = ContextSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
    instance_id: Optional[int] = None,
) -> ContextCurve:
    """Return the ContextCurve of one lesion: detection, mean probability and Dice per radius, and the context needed."""
    reporter = as_reporter(progress, cancel)
    start = time.perf_counter()
    x, mask = _check_inputs(model, normalized, instance_mask, geometry)
    threshold = model.config.threshold if settings.threshold is None else float(settings.threshold)
    min_size = 1 if settings.min_size_voxels is None else int(settings.min_size_voxels)
    spacing = tuple(float(s) for s in geometry.spacing_kji)

    box = probe_box(mask, spacing, settings, model.size_divisor)
    crop = torch.from_numpy(np.ascontiguousarray(box.extract(x, 0.0)))
    mask_crop = np.ascontiguousarray(box.extract(mask, False))
    if settings.element == "anchor":
        distance = dilation_steps(mask_crop, int(settings.max_radius_mm))
    else:
        distance = distance_from_mask_mm(mask_crop, spacing)
    fill = torch.from_numpy(fill_field(x, box.shape, settings.fill, model.config.normalization, settings.seed))

    radii: list[Optional[float]] = list(settings.radii_mm) + [None]  # None = full context
    batch_size = _auto_batch(settings, box.shape, len(radii))
    points: list[ProbePoint] = []
    with eval_mode(model):  # batch norm must not mix radii through batch statistics
        for first in range(0, len(radii), batch_size):
            reporter.check()
            chunk = radii[first : first + batch_size]
            inputs = torch.stack(
                [
                    crop if r is None else torch.where(torch.from_numpy(within_radius(distance, r))[None], crop, fill)
                    for r in chunk
                ]
            )
            for prob in _probabilities(model, inputs):
                points.append(score_prediction(prob, mask_crop, threshold, min_size, settings.connectivity, settings.detection))
            done = first + len(chunk)
            last = "full context" if chunk[-1] is None else f"r = {chunk[-1]:g} mm"
            reporter(done / len(radii), f"{last} ({done}/{len(radii)})")

    per_radius, full = points[:-1], points[-1]
    detected = np.array([p.detected for p in per_radius], dtype=bool)
    value, status = context_needed(settings.radii_mm, detected, full.detected)
    return ContextCurve(
        radii_mm=np.asarray(settings.radii_mm, dtype=np.float64),
        detected=detected,
        mean_probability=np.array([p.mean_probability for p in per_radius]),
        max_probability=np.array([p.max_probability for p in per_radius]),
        dice=np.array([p.dice for p in per_radius]),
        predicted_voxels=np.array([p.predicted_voxels for p in per_radius], dtype=np.int64),
        full_context=full,
        context_needed_mm=value,
        status=status,
        threshold=threshold,
        fill=settings.fill,
        lesion_voxels=int(mask.sum()),
        lesion_volume_mm3=float(mask.sum() * geometry.voxel_volume),
        box=box,
        spacing_kji=spacing,
        seconds=time.perf_counter() - start,
        instance_id=instance_id,
        settings={**settings.to_dict(), "threshold": threshold, "min_size_voxels": min_size},
        distance_mm=distance,
    )


def context_probe_instances(
    model: LesionModel,
    result: "SegmentationResult",
    ids: Optional[Sequence[int]] = None,
    settings: ContextSettings = ContextSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> dict[int, ContextCurve]:
    """Return {instance id: ContextCurve} for ``ids`` (default: every instance) of a segmentation result.

    Unknown ids raise InstanceError before any work. The segmentation's threshold and minimum size
    apply unless ``settings`` sets them.
    """
    from dataclasses import replace

    instances = result.instances
    chosen = list(instances.ids if ids is None else ids)
    for i in chosen:
        instances.get(i)
    effective = replace(
        settings,
        threshold=result.threshold if settings.threshold is None else settings.threshold,
        min_size_voxels=instances.min_size_voxels if settings.min_size_voxels is None else settings.min_size_voxels,
    )
    reporter = as_reporter(progress, cancel)
    curves: dict[int, ContextCurve] = {}
    for n, i in enumerate(chosen):
        sub = reporter.sub(n / max(len(chosen), 1), (n + 1) / max(len(chosen), 1))
        curves[int(i)] = context_probe(
            model, result.normalized, instances.mask(i), result.geometry, effective, sub, instance_id=int(i)
        )
    return curves
