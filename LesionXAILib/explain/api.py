"""explain_instance / explain_instances: every selected explainer for one or many lesion instances.

Instances are evaluated on grid-aligned lesion-centred crops (``settings.roi_margin_mm``) or, with
``settings.full_volume``, on the whole volume (the reference). Instances whose crops coincide share
their forward passes; CAMs share one gradient-free whole-volume pass for their layer activations,
which a caller explaining one lesion at a time can compute once per subject and pass in
(``layer_activations``, e.g. :class:`LesionXAILib.analysis.SubjectAnalysis`).
"""

from __future__ import annotations

import time
from typing import Iterator, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import InputImageError, ParameterError
from LesionXAILib.explain.cam import LayerActivations, cam_maps, resolve_layer
from LesionXAILib.explain.cam import layer_activations as compute_layer_activations
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.gradient import gradient_maps
from LesionXAILib.explain.integrated_gradients import integrated_gradient_maps
from LesionXAILib.explain.model_state import check_model, explaining
from LesionXAILib.explain.region import auto_batch_size, explain_box, explain_crop, group_by_box
from LesionXAILib.explain.settings import CAM_METHODS, ExplainSettings
from LesionXAILib.explain.smoothgrad import VARIANTS as SMOOTHGRAD_VARIANTS
from LesionXAILib.explain.smoothgrad import noise_sigma, smoothgrad_maps
from LesionXAILib.explain.statistics import local_map_statistics, local_regions, sequence_share
from LesionXAILib.explain.targets import InstanceTarget, as_target, instance_target
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter


def sequence_names(model: LesionModel) -> tuple[str, ...]:
    """Return the lower-case input sequence names used in map keys (e.g. 'flair', 'mprage')."""
    return tuple(s.lower() for s in model.config.input_order)


def check_image(model: LesionModel, normalized: np.ndarray | torch.Tensor, geometry: Optional[Geometry]) -> np.ndarray:
    """Return the normalised (C, k, j, i) image as a float numpy array after checking it fits the model and grid."""
    arr = normalized.detach().cpu().numpy() if isinstance(normalized, torch.Tensor) else np.asarray(normalized)
    if arr.ndim != 4 or arr.shape[0] != model.config.in_channels:
        raise InputImageError(
            f"normalised image must be ({model.config.in_channels}, k, j, i) "
            f"({', '.join(model.config.input_order)}), got shape {arr.shape}"
        )
    if geometry is not None and tuple(arr.shape[1:]) != tuple(geometry.shape):
        raise InputImageError(f"normalised image shape {arr.shape[1:]} does not match the grid {geometry.shape}")
    if not np.isfinite(arr).all():
        raise InputImageError("normalised image contains NaN or infinite values")
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float32)


def explain_instance(
    model: LesionModel,
    normalized: np.ndarray,
    instance_mask: np.ndarray | InstanceTarget,
    geometry: Geometry,
    settings: ExplainSettings = ExplainSettings(),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    instance_id: Optional[int] = None,
    status: Optional[str] = None,
) -> Explanation:
    """Return the explanation of one instance given by its k,j,i mask (e.g. a ground-truth lesion for an FN)."""
    if isinstance(instance_mask, InstanceTarget):
        target = instance_mask
    else:
        target = InstanceTarget(np.asarray(instance_mask, dtype=bool), settings.aggregation, instance_id, status)
    return next(iter_explanations(model, normalized, [target], geometry, settings, progress, cancel))


def explain_instances(
    model: LesionModel,
    result: "SegmentationResult",  # noqa: F821 - LesionXAILib.segmentation
    ids: Optional[Sequence[int]] = None,
    settings: ExplainSettings = ExplainSettings(),
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> dict[int, Explanation]:
    """Return {instance id: Explanation} for ``ids`` (default: every instance, FN included) of a segmentation."""
    targets = instance_targets(result.instances, ids, settings.aggregation)
    done = {e.instance_id: e for e in iter_explanations(model, result.normalized, targets, result.geometry, settings, progress, cancel)}
    return {t.instance_id: done[t.instance_id] for t in targets}


def instance_targets(instances, ids: Optional[Sequence[int]], aggregation: str) -> list[InstanceTarget]:
    """Return the targets of ``ids`` (all instances if None) of an InstanceSet; unknown ids raise InstanceError."""
    chosen = instances.ids if ids is None else list(ids)
    if len(set(chosen)) != len(chosen):
        raise ParameterError(f"instance ids listed twice: {list(chosen)}")
    return [instance_target(instances, i, aggregation) for i in chosen]


def iter_explanations(
    model: LesionModel,
    normalized: np.ndarray,
    targets: Sequence[InstanceTarget],
    geometry: Geometry,
    settings: ExplainSettings = ExplainSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
    layer_activations: Optional[LayerActivations] = None,
) -> Iterator[Explanation]:
    """Yield one Explanation per target as soon as its group of instances is done (bounded memory for many).

    ``layer_activations``: the CAM layer's whole-volume activations of this model and image, computed
    before (:func:`LesionXAILib.explain.cam.layer_activations`); without them CAMs in ROI mode compute
    them once per call.
    """
    model = check_model(model)
    settings = settings.resolved(model)  # the margin this model gets is recorded with every explanation
    image = check_image(model, normalized, geometry)
    targets = [as_target(t, image.shape[1:], settings.aggregation) for t in targets]
    reporter = as_reporter(progress, cancel)
    cam_layer = resolve_layer(model, settings.cam_layer)[0] if settings.cam_methods else None
    sigma = noise_sigma(image, settings.noise_level, settings.noise_per_channel)
    boxes = [explain_box(t.mask, geometry.spacing_kji, settings.roi_margin_mm, model.size_divisor, settings.full_volume) for t in targets]
    groups = group_by_box(boxes)
    full_cam: Optional[LayerActivations] = None
    done = 0
    if cam_layer is not None and layer_activations is not None:
        full_cam = check_layer_activations(layer_activations, cam_layer, image.shape[1:], model.size_divisor)
    with explaining(model):
        if cam_layer is not None and not settings.full_volume and full_cam is None:
            reporter(0.0, "CAM layer activations (whole volume)")
            full_cam = compute_layer_activations(model, image, cam_layer)
        for box, members in groups:
            start = time.perf_counter()
            group = [targets[i] for i in members]
            sub = reporter.sub(done / len(targets), (done + len(group)) / len(targets))
            masks = [t.mask for t in group]
            crop = explain_crop(model, image, masks, box, settings.aggregation, settings.roi_margin_mm, geometry.spacing_kji, settings.full_volume)
            maps = _group_maps(model, crop, settings, sigma, cam_layer, full_cam, image, sub, sequence_names(model))
            seconds = (time.perf_counter() - start) / len(group)
            for k, target in enumerate(group):
                one = {key: value[k] for key, value in maps.items()}
                yield _explanation(target, one, settings, geometry, seconds, box, cam_layer, sigma, sequence_names(model))
            done += len(group)
            reporter(done / len(targets), f"{done}/{len(targets)} instances")


def check_layer_activations(
    activations: LayerActivations, layer: str, image_shape: Sequence[int], divisor: int
) -> LayerActivations:
    """Return ``activations`` after checking they are of ``layer`` and of an image of ``image_shape`` (else ParameterError)."""
    from LesionXAILib.roi import full_box

    if activations.layer != layer:
        raise ParameterError(f"layer activations are of '{activations.layer}', not of the CAM layer '{layer}'")
    padded = tuple(full_box(tuple(int(s) for s in image_shape), divisor).shape)
    if tuple(activations.padded_shape) != padded:
        raise ParameterError(
            f"layer activations were computed for a padded grid {tuple(activations.padded_shape)}, this image needs {padded}"
        )
    return activations


def combine_explanations(parts: Sequence[Explanation], settings: ExplainSettings) -> Explanation:
    """Return one Explanation holding the maps and statistics of ``parts`` (same instance, disjoint methods).

    Methods are computed independently of each other (own passes, same crop, same noise draws), so
    explaining ``settings.methods`` in parts and combining gives what one call with all of them gives;
    only ``seconds`` is the sum of the parts' times.
    """
    if not parts:
        raise ParameterError("no explanation to combine")
    first = parts[0]
    maps: dict[str, np.ndarray] = {}
    stats: dict[str, dict] = {}
    shares: dict[str, float] = {}
    extra: dict = {}
    cam_layer = None
    for part in parts:
        if part.instance_id != first.instance_id:
            raise ParameterError(f"cannot combine explanations of instances {first.instance_id} and {part.instance_id}")
        overlap = set(maps) & set(part.maps)
        if overlap:
            raise ParameterError(f"explanation parts both hold map(s) {sorted(overlap)}")
        maps.update(part.maps)
        stats.update({k: v for k, v in part.statistics.items() if k != "flair_share"})
        shares.update(part.statistics.get("flair_share", {}))
        extra.update(part.extra)
        cam_layer = cam_layer or part.cam_layer
    ordered = {m: shares[m] for m in settings.gradient_methods if m in shares}
    stats["flair_share"] = ordered
    return Explanation(
        instance_id=first.instance_id,
        maps=maps,
        statistics=stats,
        settings=settings,
        seconds=float(sum(p.seconds for p in parts)),
        status=first.status,
        voxels=first.voxels,
        box=first.box,
        cam_layer=cam_layer,
        sigma=first.sigma,
        extra=extra,
    )


def _group_maps(
    model: LesionModel,
    crop: CropInputs,
    settings: ExplainSettings,
    sigma: np.ndarray,
    cam_layer: Optional[str],
    full_cam: Optional[LayerActivations],
    image: np.ndarray,
    reporter: ProgressReporter,
    sequences: Sequence[str],
) -> dict[str, np.ndarray]:
    """Return {map key: (K, k, j, i) float32 full-grid array} for one group of instances sharing a crop."""
    bs = int(settings.batch_size or auto_batch_size(crop.box))
    agg = settings.aggregation
    out: dict[str, np.ndarray] = {}

    def per_sequence(name: str, maps: torch.Tensor) -> None:
        full = crop.insert(maps)
        for c, seq in enumerate(sequences):
            out[f"{name}_{seq}"] = full[:, c]

    stages = list(dict.fromkeys(_stage(m) for m in settings.methods))
    for n, stage in enumerate(stages):
        sub = reporter.sub(n / len(stages), (n + 1) / len(stages))
        if stage == "gradient":
            per_sequence("gradient", gradient_maps(model, crop, agg, bs, sub))
        elif stage == "integrated_gradients":
            per_sequence(stage, integrated_gradient_maps(model, crop, settings.ig_steps, agg, bs, sub))
        elif stage == "smoothgrad":
            variants = [m for m in settings.methods if m in SMOOTHGRAD_VARIANTS]
            sg = smoothgrad_maps(model, crop, sigma, settings.samples, settings.seed, agg, variants, bs, sub)
            for name, maps in sg.items():
                per_sequence(name, maps)
        else:
            cams = cam_maps(model, crop, settings.cam_methods, cam_layer, agg, full_cam, image)
            for name, maps in cams.items():
                out[name] = maps.detach().to("cpu", torch.float32).numpy()
        sub(1.0, stage)
    return out


def _stage(method: str) -> str:
    """Return the computation a method belongs to (SmoothGrad variants share samples, CAMs share a pass)."""
    if method in SMOOTHGRAD_VARIANTS:
        return "smoothgrad"
    if method in CAM_METHODS:
        return "cam"
    return method


def _explanation(
    target: InstanceTarget,
    maps: dict[str, np.ndarray],
    settings: ExplainSettings,
    geometry: Geometry,
    seconds: float,
    box,
    cam_layer: Optional[str],
    sigma: np.ndarray,
    sequences: Sequence[str],
) -> Explanation:
    # gradient maps of a crop are 0 beyond it, so their statistics read only the crop and the ring
    local = local_regions(target.mask, geometry.spacing_kji, settings.ring_mm, None if box.is_full else box.slices)
    stats: dict[str, dict] = {
        key: local_map_statistics(arr, local, zero_beyond=key not in CAM_METHODS and not box.is_full)
        for key, arr in maps.items()
    }
    shares = {}
    flair = "flair" if "flair" in sequences else sequences[0]  # science.md: channel 0 is the FLAIR
    for method in settings.gradient_methods:
        shares[method] = sequence_share({seq: stats[f"{method}_{seq}"]["total_abs_sum"] for seq in sequences}, flair)
    stats["flair_share"] = shares
    return Explanation(
        instance_id=target.instance_id,
        maps={k: np.ascontiguousarray(v, dtype=np.float32) for k, v in maps.items()},
        statistics=stats,
        settings=settings,
        seconds=seconds,
        status=target.status,
        voxels=target.voxels,
        box={**box.to_dict(), "full_volume": settings.full_volume},
        cam_layer=cam_layer,
        sigma=[float(s) for s in sigma],
        extra={"ring_mm": list(settings.ring_mm), "cam_target": "sum" if settings.aggregation == "max" else settings.aggregation}
        if cam_layer
        else {"ring_mm": list(settings.ring_mm)},
    )
