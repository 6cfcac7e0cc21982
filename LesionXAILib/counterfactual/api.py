"""Per-lesion counterfactuals of a segmentation result: which lesions, which direction, and the search driver."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.counterfactual.check import Resegmentation, resegment
from LesionXAILib.counterfactual.problem import LesionProblem, model_roles
from LesionXAILib.counterfactual.result import Counterfactual
from LesionXAILib.counterfactual.search import DetectionRule, Search, SearchState
from LesionXAILib.counterfactual.settings import DEFAULT_MARGIN_MM, CounterfactualSettings
from LesionXAILib.counterfactual.warp import jacobian_determinant
from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.instances import STATUS_FN, InstanceSet
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.structuring import distance_from_mask_mm
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter

if TYPE_CHECKING:
    from LesionXAILib.segmentation import SegmentationResult


def plan(instances: InstanceSet, ids: Optional[Sequence[int]], mode: str = "auto") -> list[tuple[int, str]]:
    """Return (instance id, 'remove' | 'add') for ``ids`` (None: every lesion the mode applies to); InstanceError for what cannot be done."""
    if not instances.instances:
        raise InstanceError("no lesion instance was found in this image; there is nothing to explain by a counterfactual")
    has_fn = any(r.status == STATUS_FN for r in instances.instances)
    if ids is None and mode in ("remove", "add"):  # every lesion the direction applies to
        chosen = [r.id for r in instances.instances if (r.status == STATUS_FN) == (mode == "add")]
        if not chosen:
            raise InstanceError("--mode add needs missed (FN) lesions, which come from the ground truth (--gt)" if mode == "add"
                                else "every lesion here is a missed (FN) lesion: there is nothing to remove")  # fmt: skip
    else:
        chosen = instances.ids if ids is None else [int(i) for i in ids]
    if len(set(chosen)) != len(chosen):
        raise ParameterError(f"instance ids listed twice: {list(chosen)}")
    steps = []
    for i in chosen:
        row = instances.get(i)
        missed = row.status == STATUS_FN
        direction = ("add" if missed else "remove") if mode == "auto" else mode
        if direction == "remove" and missed:
            raise InstanceError(f"instance {i} is a missed (FN) lesion: the model does not detect it, so there is nothing to remove (use --mode add or auto)")
        if direction == "add" and not missed:
            hint = "" if has_fn else "; missed lesions come from the ground truth (--gt)"
            raise InstanceError(f"instance {i} is detected ({row.status}): there is nothing to add (use --mode remove or auto){hint}")
        steps.append((int(i), direction))
    return steps


def iter_counterfactuals(
    model: LesionModel,
    result: "SegmentationResult",
    steps: Sequence[tuple[int, str]],
    settings: CounterfactualSettings = CounterfactualSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> Iterator[Counterfactual]:
    """Yield one Counterfactual per (instance id, direction) of ``steps`` (see :func:`plan`), searched in turn."""
    reporter = as_reporter(progress, cancel)
    for n, (instance_id, direction) in enumerate(steps):
        sub = reporter.sub(n / len(steps), (n + 1) / len(steps))
        yield lesion_counterfactual(model, result, instance_id, direction, settings, sub)


def search_margin(model: LesionModel, settings: CounterfactualSettings) -> Optional[float]:
    """Return the optimisation crop's margin in mm, or None when the model's contract needs the whole volume."""
    from LesionXAILib.models.contract import crop_forbidden

    if crop_forbidden(model.config, "sum", settings.margin_mm is not None):
        return None
    if settings.margin_mm is not None:
        return float(settings.margin_mm)
    calibrated = getattr(model.config, "explain_margin_mm", None)
    return float(calibrated) if calibrated is not None else DEFAULT_MARGIN_MM


def lesion_counterfactual(
    model: LesionModel,
    result: "SegmentationResult",
    instance_id: int,
    direction: str,
    settings: CounterfactualSettings = CounterfactualSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> Counterfactual:
    """Return the counterfactual of one lesion: the smallest change found that flips its detection in ``direction``.

    The result's ``passed`` says whether the re-segmentation confirmed the flip and the warp is
    diffeomorphic; a search that ran out of iterations returns its last iterate with ``flipped`` False.
    """
    reporter = as_reporter(progress, cancel)
    start = time.perf_counter()
    if direction not in ("remove", "add"):
        raise ParameterError(f"counterfactual direction must be 'remove' or 'add', got '{direction}'")
    row = result.instances.get(instance_id)
    mask = result.instances.mask(instance_id)
    margin = search_margin(model, settings)
    check = "whole" if margin is None else settings.check
    check_margin = None if margin is None else max(settings.check_margin_mm, margin)
    raw = np.stack([result.pair.flair, result.pair.t1]).astype(np.float32, copy=False)
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(settings.seed))
            problem = LesionProblem(raw, result.normalized, mask, result.geometry, model_roles(model.config.input_order),
                                    str(model.config.normalization), settings, margin, model.size_divisor,
                                    model.device)  # fmt: skip
            rule = DetectionRule(result.threshold, result.instances.min_size_voxels, result.settings.connectivity, direction == "add")
            before = resegment(model, result, problem, rule, None, mask, mask, check, check_margin)
            if before.detected == rule.want_detected:
                raise InstanceError(
                    f"instance {instance_id}: the {'whole-volume' if check == 'whole' else 'crop'} re-segmentation "
                    f"{'already detects' if before.detected else 'does not detect'} it, unlike the segmentation; "
                    "nothing to flip (widen --check-margin-mm or use --check whole)"
                )
            search = Search(model, problem, rule)
            outcome = search.run(SearchState(*problem.zeros()), reporter.sub(0.0, 0.9))
            if outcome.flipped and outcome.iterations == 0:
                raise InstanceError(
                    f"instance {instance_id}: the search crop does not reproduce the segmentation's detection; "
                    "widen the crop with --margin-mm"
                )
            after, outcome = _confirm(model, result, problem, rule, search, outcome, mask, check, check_margin, reporter)
    finally:
        model.train(was_training)
    reporter(1.0, "done")
    return _assemble(row, direction, problem, outcome, before, after, time.perf_counter() - start, margin, check_margin, check)


def _confirm(model, result, problem, rule, search, outcome, mask, check, check_margin, reporter):
    """Return (re-segmentation, outcome) after confirming the flip, pushing further up to ``confirm_retries`` times."""
    settings = problem.settings
    after = _resegment_outcome(model, result, problem, rule, outcome, mask, check, check_margin)
    tries = 0
    while outcome.flipped and after.detected != rule.want_detected and tries < settings.confirm_retries:
        tries += 1
        reporter.check()
        # the search crop saw a flip that the wider check does not: keep going from the flipped iterate
        more = search.run(outcome.last_state, reporter.sub(0.9, 0.95), max_iter=settings.max_iter, push=2)
        outcome = type(outcome)(more.state, more.rendered, more.flipped, outcome.iterations + more.iterations,
                                more.evaluations, more.last_state)  # fmt: skip
        after = _resegment_outcome(model, result, problem, rule, outcome, mask, check, check_margin)
    return after, outcome


def _resegment_outcome(model, result, problem, rule, outcome, mask, check, check_margin) -> Resegmentation:
    region = mask.copy()
    region[problem.lattice.slices] |= problem.warped_mask(outcome.rendered.displacement).numpy() >= 0.5
    raw_box = outcome.rendered.raw.detach().cpu().numpy()
    return resegment(model, result, problem, rule, raw_box, mask, region, check, check_margin)


def _assemble(row, direction, problem: LesionProblem, outcome, before, after, seconds, margin, check_margin, check) -> Counterfactual:
    rendered = outcome.rendered
    u = rendered.displacement.detach()
    with torch.no_grad():
        det = jacobian_determinant(u).cpu().numpy()
        warped = problem.warped_mask(u).cpu().numpy()
        # in the original image's normalised units, without the statistics drift that moves every voxel a little
        original = problem.raw_crop[(slice(None),) + problem.inner]
        used = sorted(set(problem.roles))
        change = ((rendered.raw[used] - original[used]).abs() * problem.intensity_scale[used]).sum(0).cpu().numpy()
    total = float(change.sum())
    near = None
    if total > 0:
        distance = distance_from_mask_mm(problem.mask_box, problem.spacing_kji)
        near = float(change[distance <= problem.settings.near_mm].sum() / total)
    crop = {"search_crop": problem.crop.to_dict(), "search_margin_mm": margin, "check": check, "check_margin_mm": check_margin}
    return Counterfactual(
        instance=row,
        mode=direction,
        lattice=problem.lattice,
        geometry=problem.geometry,
        displacement=u.cpu().numpy().astype(np.float32),
        raw=rendered.raw.detach().cpu().numpy().astype(np.float32),
        intensity=rendered.intensity.detach().cpu().numpy().astype(np.float32),
        pullback_jacobian=det.astype(np.float32),
        warped_mask=warped.astype(np.float32),
        crop_flipped=bool(outcome.flipped),
        before=before,
        after=after,
        iterations=int(outcome.iterations),
        evaluations=int(outcome.evaluations),
        seconds=seconds,
        change_near_share=near,
        crop=crop,
        settings=problem.settings.to_dict(),
    )
