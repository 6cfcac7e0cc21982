"""The batch pipeline: every selected explainer for one or many lesion instances (explain_instance / explain_instances).

Methods come from the explainer registry (:mod:`LesionXAILib.explain.registry`); each registered family
runs once per group of instances sharing a crop (:func:`_group_maps`).

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

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.cam import LayerActivations, resolve_layer
from LesionXAILib.explain.cam import layer_activations as compute_layer_activations
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.grouping import prefill_checks
from LesionXAILib.explain.methods.base import BatchContext, check_image
from LesionXAILib.explain.model_state import check_model, explaining
from LesionXAILib.explain.region import auto_batch_size, explain_box, explain_crop, group_by_box
from LesionXAILib.explain.registry import families, method_spec
from LesionXAILib.explain.settings import ExplainSettings
from LesionXAILib.explain.smoothgrad import noise_sigma
from LesionXAILib.explain.statistics import local_map_statistics, local_regions, sequence_share
from LesionXAILib.explain.targets import InstanceTarget, as_target, instance_target
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter
from LesionXAILib.vocabulary import map_key


def sequence_names(model: LesionModel) -> tuple[str, ...]:
    """Return the lower-case input sequence names used in map keys (e.g. 'flair', 'mprage')."""
    return tuple(s.lower() for s in model.config.input_order)


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
    fidelity_memo: Optional[dict] = None,
) -> Iterator[Explanation]:
    """Yield one Explanation per target as soon as its group of instances is done (bounded memory for many).

    The margin is the chosen one, else the model's calibrated or auto-calibrated one (an uncalibrated
    model is calibrated on these targets first), and each target's crop is checked against a wider one
    (``settings.fidelity_check``; :mod:`LesionXAILib.explain.fidelity`): below the rule the margin is
    widened or the target explained on the whole volume. ``fidelity_memo`` (a dict kept per model and
    image) reuses those checks between calls, e.g. staged explanations of one lesion.

    ``layer_activations``: the CAM layer's whole-volume activations of this model and image, computed
    before (:func:`LesionXAILib.explain.cam.layer_activations`); without them CAMs in ROI mode compute
    them once per call.
    """
    model = check_model(model)
    image = check_image(model, normalized, geometry)
    targets = [as_target(t, image.shape[1:], settings.aggregation) for t in targets]
    reporter = as_reporter(progress, cancel)
    settings, source = margin_settings(model, image, [t.mask for t in targets], geometry, settings, reporter)
    cam_layer = resolve_layer(model, settings.cam_layer)[0] if settings.cam_methods else None
    check_layer = _check_layer(model, settings)
    sigma = noise_sigma(image, settings.noise_level, settings.noise_per_channel)
    full_cam: Optional[LayerActivations] = None
    done = 0
    if cam_layer is not None and layer_activations is not None:
        full_cam = check_layer_activations(layer_activations, cam_layer, image.shape[1:], model.size_divisor)
    with explaining(model):
        # issue 15: every lesion's first fidelity check in batches of equal-shaped crops (explain/grouping.py)
        fidelity_memo = prefill_checks(model, image, [t.mask for t in targets], geometry.spacing_kji, settings, source,
                                       check_layer, fidelity_memo)  # fmt: skip
        plans = [
            _fidelity_plan(model, image, t.mask, geometry, settings, source, check_layer, fidelity_memo)
            for t in targets
        ]
        margins = [m for m, _ in plans]
        boxes = [explain_box(t.mask, geometry.spacing_kji, m, model.size_divisor, m is None) for t, m in zip(targets, margins)]
        groups = group_by_box(boxes, margins)
        if cam_layer is not None and full_cam is None and any(m is not None for m in margins):
            reporter(0.0, "CAM layer activations (whole volume)")
            full_cam = compute_layer_activations(model, image, cam_layer)
        for box, members in groups:
            start = time.perf_counter()
            group = [targets[i] for i in members]
            margin = margins[members[0]]
            used = settings.replace(roi_margin_mm=margin) if margin is not None else settings.replace(full_volume=True)
            sub = reporter.sub(done / len(targets), (done + len(group)) / len(targets))
            masks = [t.mask for t in group]
            crop = explain_crop(model, image, masks, box, used.aggregation, margin, geometry.spacing_kji, margin is None)
            maps = _group_maps(model, crop, used, sigma, cam_layer, full_cam, image, sub, sequence_names(model))
            seconds = (time.perf_counter() - start) / len(group)
            for k, (i, target) in enumerate(zip(members, group)):
                one = {key: value[k] for key, value in maps.items()}
                fidelity = plans[i][1]
                yield _explanation(target, one, used, geometry, seconds + fidelity.get("check_seconds", 0.0), box, cam_layer, sigma,
                                   sequence_names(model), fidelity)  # fmt: skip
            done += len(group)
            reporter(done / len(targets), f"{done}/{len(targets)} instances")


def margin_settings(
    model: LesionModel,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    geometry: Geometry,
    settings: ExplainSettings,
    reporter: Optional[ProgressReporter] = None,
) -> tuple[ExplainSettings, str]:
    """Return (settings with the margin fixed, its source) for ``model``; an uncalibrated model is auto-calibrated on ``masks``.

    source: "chosen", "calibrated", "auto-calibrated" or "whole-volume" (asked for, or no passing margin).
    """
    from LesionXAILib.explain.fidelity import ensure_margin
    from LesionXAILib.models.contract import crop_forbidden

    if settings.full_volume:
        return settings, "whole-volume"
    # a contract that never allows crops (resampling, nnU-Net's non-zero crop, 'whole-volume'), whoever calls
    if crop_forbidden(model.config, settings.aggregation, True):
        return settings.replace(full_volume=True), "whole-volume"
    if settings.roi_margin_mm is not None:
        return settings, "chosen"
    sub = reporter.sub(0.0, 0.0) if reporter is not None else None
    margin, source = ensure_margin(model, image, masks, geometry, settings.aggregation, sub)
    if margin is None:
        return settings.replace(full_volume=True), source
    return settings.replace(roi_margin_mm=margin), source


def _check_layer(model: LesionModel, settings: ExplainSettings) -> Optional[tuple[str, torch.nn.Module]]:
    """Return the CAM layer the fidelity check also measures (the chosen or default one; None if there is none)."""
    if settings.cam_methods:
        return resolve_layer(model, settings.cam_layer)
    try:
        layer = resolve_layer(model, settings.cam_layer)
    except (ParameterError, RuntimeError):  # no (hookable) CAM layer, e.g. TorchScript: the input check needs none
        return None
    return layer if not isinstance(layer[1], torch.jit.ScriptModule) else None


def _fidelity_plan(model, image, mask, geometry, settings, source, layer, memo) -> tuple[Optional[float], dict]:
    """Return (margin or None = whole volume, fidelity record) of one target under ``settings``."""
    from LesionXAILib.explain.fidelity import checked_fidelity, unchecked_fidelity, whole_volume_fidelity

    if settings.full_volume:
        return None, whole_volume_fidelity(source)
    if not settings.fidelity_check:
        return settings.roi_margin_mm, {**unchecked_fidelity(model, settings.roi_margin_mm, source, settings.aggregation),
                                        "margin_source": source}  # fmt: skip
    return checked_fidelity(
        model, image, mask, geometry.spacing_kji, settings.roi_margin_mm, source, settings.aggregation,
        layer[1] if layer else None, memo, layer[0] if layer else None,
    )  # fmt: skip


def check_layer_activations(
    activations: LayerActivations, layer: str, image_shape: Sequence[int], divisor: int
) -> LayerActivations:
    """Return ``activations`` after checking they are of ``layer`` and of an image of ``image_shape`` (else ParameterError)."""
    from LesionXAILib.crop import full_box

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
    # every part ran the same fidelity-guarded crop (deterministic checks), so the first one's margin holds
    settings = settings.replace(roi_margin_mm=first.settings.roi_margin_mm, full_volume=first.settings.full_volume)
    return Explanation(
        instance_id=first.instance_id,
        maps=maps,
        statistics=stats,
        settings=settings,
        seconds=float(sum(p.seconds for p in parts)),
        fidelity=dict(first.fidelity),
        check_seconds=float(sum(p.check_seconds for p in parts)),
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
    """Return {map key: (K, k, j, i) float32 full-grid array} for one group of instances sharing a crop.

    Each registered family of the selected methods runs once (:func:`LesionXAILib.explain.registry.families`).
    """
    bs = int(settings.batch_size or auto_batch_size(crop.box))
    out: dict[str, np.ndarray] = {}
    groups = families(settings.methods)
    for n, (spec, names) in enumerate(groups):
        sub = reporter.sub(n / len(groups), (n + 1) / len(groups))
        ctx = BatchContext(model, crop, settings.aggregation, bs, spec.cls.settings_from(settings), sigma,
                           cam_layer, full_cam, image, sub)  # fmt: skip
        for name, maps in spec.cls.maps(ctx, names).items():
            if method_spec(name).per_sequence:  # (K, C, *crop): one full-grid map per sequence
                full = crop.insert(maps)
                for c, seq in enumerate(sequences):
                    out[map_key(name, seq)] = full[:, c]
            else:  # (K, k, j, i) on the full grid
                out[name] = maps.detach().to("cpu", torch.float32).numpy()
        sub(1.0, spec.family)
    return out


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
    fidelity: Optional[dict] = None,
) -> Explanation:
    # per-sequence maps of a crop are 0 beyond it, so their statistics read only the crop and the ring
    per_instance = {m for m in settings.methods if not method_spec(m).per_sequence}
    local = local_regions(target.mask, geometry.spacing_kji, settings.ring_mm, None if box.is_full else box.slices)
    stats: dict[str, dict] = {
        key: local_map_statistics(arr, local, zero_beyond=key not in per_instance and not box.is_full)
        for key, arr in maps.items()
    }
    shares = {}
    flair = "flair" if "flair" in sequences else sequences[0]  # docs/methods.md#input-contract: channel 0 is the FLAIR
    for method in settings.gradient_methods:
        shares[method] = sequence_share({seq: stats[map_key(method, seq)]["total_abs_sum"] for seq in sequences}, flair)
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
        fidelity={k: v for k, v in (fidelity or {}).items() if k != "check_seconds"},
        check_seconds=float((fidelity or {}).get("check_seconds", 0.0)),
        cam_layer=cam_layer,
        sigma=[float(s) for s in sigma],
        extra={"ring_mm": list(settings.ring_mm), "cam_target": "sum" if settings.aggregation == "max" else settings.aggregation}
        if cam_layer
        else {"ring_mm": list(settings.ring_mm)},
    )
