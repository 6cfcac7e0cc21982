"""Batched vector-Jacobian products of instance targets: the engine every gradient explainer runs on.

All functions take inputs already on the model's device and dtype and return gradients with
respect to the inputs only (parameters get no ``.grad``), so nothing leaks between calls.
"""

from __future__ import annotations

from typing import Optional

import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.targets import target_weights
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import ProgressReporter


def lesion_logits(model: LesionModel, x: torch.Tensor) -> torch.Tensor:
    """Return the (B, 1, ...) lesion logits (before any sigmoid/softmax) for a (B, C, ...) input."""
    return model.lesion_logit(model(x))


def target_gradients(
    model: LesionModel,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    aggregation: str = "sum",
    batch_size: int = 8,
    reporter: Optional[ProgressReporter] = None,
) -> torch.Tensor:
    """Return (K, B, C, ...) gradients of K instance targets at each of B inputs (B, C, ...).

    sum/mean: one forward pass per batch of inputs, shared by the K targets (one backward each).
    max: one forward pass per input, then one vector-Jacobian product per lesion voxel through it,
    reduced on the fly to the largest-magnitude value with its sign (science.md section 2);
    ``batch_size`` only sets how often progress is reported.
    """
    if masks.ndim != inputs.ndim - 1 or masks.shape[1:] != inputs.shape[2:]:
        raise ParameterError(f"target masks {tuple(masks.shape)} do not match inputs {tuple(inputs.shape)}")
    if aggregation == "max":
        return _max_gradients(model, inputs, masks, batch_size, reporter)
    weights = target_weights(masks, aggregation).to(inputs.dtype)
    out = torch.empty((masks.shape[0],) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    n = inputs.shape[0]
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        x = inputs[start:stop].detach().clone().requires_grad_(True)
        z = lesion_logits(model, x)
        for k in range(masks.shape[0]):
            cot = weights[k].expand_as(z[:, 0]).unsqueeze(1)
            (g,) = torch.autograd.grad(z, x, cot, retain_graph=k < masks.shape[0] - 1)
            out[k, start:stop] = g
        del z, x
        if reporter is not None:
            reporter(stop / n, f"{stop}/{n}")
    return out


def _max_gradients(
    model: LesionModel,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    batch_size: int,
    reporter: Optional[ProgressReporter],
) -> torch.Tensor:
    # One forward pass per input, then one backward pass per lesion voxel through that graph: with the
    # parameters frozen a backward costs less than a forward, so sharing the forward (instead of running
    # a network copy per voxel) measured ~2.3x less CPU on an anchor-size U-Net crop.
    n_inputs, k_targets = inputs.shape[0], masks.shape[0]
    flat = masks.reshape(k_targets, -1)
    # (target k, voxel v) in raster order per input, so ties resolve like a plain loop (first wins)
    voxels = [(k, int(v)) for k in range(k_targets) for v in torch.nonzero(flat[k]).squeeze(1).tolist()]
    best = torch.zeros((k_targets,) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    total, done = n_inputs * len(voxels), 0
    for b in range(n_inputs):
        x = inputs[b : b + 1].detach().clone().requires_grad_(True)
        z = lesion_logits(model, x)
        flat_z = z.reshape(-1)
        for n, (k, v) in enumerate(voxels):
            (g,) = torch.autograd.grad(flat_z[v], x, retain_graph=n < len(voxels) - 1)
            current = best[k, b]
            larger = g[0].abs() > current.abs()
            current[larger] = g[0][larger]
            done += 1
            if reporter is not None and (done % batch_size == 0 or done == total):
                reporter(done / total, f"voxel gradients {done}/{total}")
        del z, x, flat_z
    return best
