"""Several lesions' fidelity checks in one pass: crops of equal shape stacked along the batch axis.

The fidelity guard (:mod:`LesionXAILib.explain.fidelity`) takes, per lesion, one noise-free gradient
on its working crop and one on a wider reference crop, each a pass of a single crop. On 2 CPU threads a
single-crop pass costs several times more per crop than a batch of them (demo model, 48^3 crops:
0.51 s for 1 crop, 0.18 s per crop in batches of 4), so the first check of every lesion of a call is
run here before the explanations, crops of the same shape in one batch, and handed to the guard through
its memo. The gradient of the batch's summed targets sum_b S_b(x_b) with respect to crop b is exactly
dS_b/dx_b (eval mode: batch elements do not interact), so each lesion gets the figures its own pass
gives, up to float rounding; lesions whose first check fails are widened one by one as before.

Why not one union crop for lesions far apart: the gradient of S_a + S_b on a crop holding both
separates into the two lesions' gradients only where their reaches do not overlap, and a U-Net's
reach is not bounded by the calibrated margin (the margin keeps 98 % of it, not all), so the split
would not be exact; equal-shaped crops in one batch are. ``LESIONXAI_GROUPED_CHECKS=0`` in the
environment turns the batching off (benchmarks time both in one run).
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.explain.fidelity import _crop, batch_gradients, check_figures, checked_fidelity, memo_key, reference_box
from LesionXAILib.explain.region import auto_batch_size, explain_box
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.crop import CropBox

# voxels per batched check pass (as the explainers' own batches, explain/region.auto_batch_size)
BATCH_BUDGET_VOXELS = 1 << 21


def batched_passes(
    model: LesionModel, image: np.ndarray, masks: Sequence[np.ndarray], boxes: Sequence[CropBox], layer
) -> tuple[list[torch.Tensor], list[Optional[torch.Tensor]], list[float]]:
    """Return per lesion (dS/dx on its box, dS/dA at ``layer`` or None, seconds of its share of the passes).

    Boxes of equal shape share passes, up to ``BATCH_BUDGET_VOXELS`` voxels each.
    """
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, box in enumerate(boxes):
        by_shape.setdefault(tuple(box.shape), []).append(i)
    gx: list = [None] * len(boxes)
    ga: list = [None] * len(boxes)
    seconds = [0.0] * len(boxes)
    for members in by_shape.values():
        size = auto_batch_size(boxes[members[0]], BATCH_BUDGET_VOXELS, len(members))
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            t0 = time.perf_counter()
            crops = [_crop(model, image, masks[i], boxes[i]) for i in chunk]
            gxs, gas = batch_gradients(model, torch.stack([c[0] for c in crops]), torch.stack([c[1] for c in crops]), layer)
            share = (time.perf_counter() - t0) / len(chunk)
            for n, i in enumerate(chunk):
                gx[i], ga[i] = gxs[n], None if gas is None else gas[n]
                seconds[i] += share
    return gx, ga, seconds


def grouped_first_checks(
    model: LesionModel, image: np.ndarray, masks: Sequence[np.ndarray], spacing_kji, margin_mm: float, layer=None
) -> list[tuple[dict[str, Any], float]]:
    """Return per lesion (the figures :func:`fidelity.check_crop` gives for its sum target at ``margin_mm``, seconds)."""
    divisor = model.size_divisor
    work = [explain_box(m, spacing_kji, margin_mm, divisor) for m in masks]
    wide = [reference_box(m, spacing_kji, margin_mm, divisor) for m in masks]
    gw, _, t_work = batched_passes(model, image, masks, work, None)  # the check reads the layer on the reference only
    gr, ar, t_wide = batched_passes(model, image, masks, [w[0] for w in wide], layer)
    out = []
    for i in range(len(masks)):
        box, wide_mm, exact = wide[i]
        out.append((check_figures(work[i], box, wide_mm, exact, gw[i], gr[i], ar[i]), t_work[i] + t_wide[i]))
    return out


def prefill_checks(
    model: LesionModel,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    spacing_kji,
    settings: Any,
    source: str,
    layer: Optional[tuple[str, torch.nn.Module]],
    memo: Optional[dict],
) -> Optional[dict]:
    """Return the fidelity memo (a new dict if None) holding every lesion's guard result, first checks batched.

    Only where the guard runs on sum/mean targets at a fixed margin and at least two lesions still need
    a check; otherwise ``memo`` is returned as it is and the guard checks each lesion itself.
    """
    if settings.full_volume or not settings.fidelity_check or settings.roi_margin_mm is None or settings.aggregation == "max":
        return memo
    if os.environ.get("LESIONXAI_GROUPED_CHECKS", "1").strip() in ("0", "false", "no", "off"):
        return memo
    name, module = layer if layer is not None else (None, None)
    margin = float(settings.roi_margin_mm)
    todo: dict[tuple, np.ndarray] = {}
    for m in masks:
        key = memo_key(m, margin, settings.aggregation, name)
        if memo is None or key not in memo:
            todo.setdefault(key, m)
    if len(todo) < 2:
        return memo
    memo = {} if memo is None else memo
    keys, todo_masks = list(todo), list(todo.values())
    firsts = grouped_first_checks(model, image, todo_masks, spacing_kji, margin, module)
    for key, mask, (figures, seconds) in zip(keys, todo_masks, firsts):
        got, fid = checked_fidelity(model, image, mask, spacing_kji, margin, source, settings.aggregation, module,
                                    None, name, [figures], seconds)  # fmt: skip
        memo[key] = (got, {**fid, "prefilled": True})
    return memo
