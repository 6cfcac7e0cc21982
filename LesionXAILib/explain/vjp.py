"""Batched vector-Jacobian products of instance targets: the engine every gradient explainer runs on.

All functions take inputs already on the model's device and dtype and return gradients with
respect to the inputs only (parameters get no ``.grad``), so nothing leaks between calls.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.pass_network import channels_last, pass_model
from LesionXAILib.explain.targets import target_weights
from LesionXAILib.explain.windows import VoxelWindow, voxel_windows
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
    windows: Optional[Sequence[VoxelWindow]] = None,
) -> torch.Tensor:
    """Return (K, B, C, ...) gradients of K instance targets at each of B inputs (B, C, ...).

    sum/mean: one forward pass per batch of inputs, shared by the K targets (one backward each).
    max: one vector-Jacobian product per lesion voxel, each on its ``windows`` entry (see
    :mod:`LesionXAILib.explain.windows`; None: the whole input), forward passes shared by the voxels
    of a window, reduced on the fly to the largest-magnitude value with its sign (docs/methods.md#instance-target);
    ``batch_size`` does not apply to max (copies per pass follow the window size).
    """
    if masks.ndim != inputs.ndim - 1 or masks.shape[1:] != inputs.shape[2:]:
        raise ParameterError(f"target masks {tuple(masks.shape)} do not match inputs {tuple(inputs.shape)}")
    model = pass_model(model)  # batch norm folded, channels-last: same gradients, faster (explain/pass_network.py)
    if aggregation == "max":
        return _max_gradients(model, inputs, masks, reporter, windows)
    weights = target_weights(masks, aggregation).to(inputs.dtype)
    out = torch.empty((masks.shape[0],) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    n = inputs.shape[0]
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        x = channels_last(inputs[start:stop].detach()).clone().requires_grad_(True)
        z = lesion_logits(model, x)
        for k in range(masks.shape[0]):
            cot = weights[k].expand_as(z[:, 0]).unsqueeze(1)
            (g,) = torch.autograd.grad(z, x, cot, retain_graph=k < masks.shape[0] - 1)
            out[k, start:stop] = g
        del z, x
        if reporter is not None:
            reporter(stop / n, f"{stop}/{n}")
    return out


# Replicated-forward batching of per-voxel backward passes, measured on 2 CPU threads with the anchor
# U-Net (benchmarks/bench_explain.py, PR notes): per voxel 16^3 windows 2.5 -> 1.0 ms, 32^3 8.3 -> 5.7 ms
# with 16-24 copies per pass, while 48^3 gained nothing (19 ms either way); so copies are used only where
# at least 8 fit in ~2^19 voxels (and the window has 8 voxels to differentiate); otherwise one shared
# forward pass feeds sequential backward passes.
_COPY_BUDGET_VOXELS = 1 << 19
_MAX_COPIES = 16
_MIN_COPIES = 8


def voxel_copies(window_voxels: int, n_voxels: int) -> int:
    """Return how many network copies one pass of a window of ``window_voxels`` runs (1: shared forward)."""
    copies = min(_MAX_COPIES, _COPY_BUDGET_VOXELS // max(1, int(window_voxels)), int(n_voxels))
    return copies if copies >= _MIN_COPIES else 1


def _max_gradients(
    model: LesionModel,
    inputs: torch.Tensor,
    masks: torch.Tensor,
    reporter: Optional[ProgressReporter],
    windows: Optional[Sequence[VoxelWindow]] = None,
) -> torch.Tensor:
    # Each lesion voxel's logit gets its own backward pass, on its window (windows.py) or, without
    # windows, on the whole input; values are reduced on the fly to the largest magnitude with its sign,
    # voxels in window order then raster order, so ties keep the first (as a plain loop does).
    k_targets = masks.shape[0]
    if windows is None:  # a margin as large as the input: one window, the whole input
        windows = voxel_windows(masks, tuple(masks.shape[1:]), 1)
    best = torch.zeros((k_targets,) + tuple(inputs.shape), dtype=inputs.dtype, device=inputs.device)
    total, done = inputs.shape[0] * sum(len(w.voxels) for w in windows), 0
    for w in windows:
        region = (slice(None),) + w.slices
        copies = voxel_copies(w.size, len(w.voxels))
        chunk = copies if copies > 1 else len(w.voxels)  # without copies one forward pass serves them all
        for b in range(inputs.shape[0]):
            x_w = inputs[b][region]
            for start in range(0, len(w.voxels), chunk):
                stop = min(len(w.voxels), start + chunk)
                grads = _voxel_gradients(model, x_w, w.voxels[start:stop], copies > 1)
                for n, g in zip(range(start, stop), grads):
                    current = best[w.targets[n], b][region]
                    larger = g.abs() > current.abs()
                    current[larger] = g[larger]
                done += stop - start
                if reporter is not None:
                    reporter(done / total, f"voxel gradients {done}/{total}")
    return best


def _voxel_gradients(model: LesionModel, x: torch.Tensor, voxels: Sequence[tuple[int, int, int]], copies: bool):
    """Yield dz_v/dx (C, ...) of each voxel v of the (C, ...) input ``x``."""
    if copies:  # one pass of len(voxels) copies, one-hot cotangent per copy
        xb = channels_last(x.detach()[None].expand((len(voxels),) + tuple(x.shape))).clone().requires_grad_(True)
        z = lesion_logits(model, xb)
        cot = torch.zeros_like(z)
        for n, v in enumerate(voxels):
            cot[(n, 0) + tuple(v)] = 1
        (g,) = torch.autograd.grad(z, xb, cot)
        yield from g
        return
    xs = channels_last(x.detach()[None]).clone().requires_grad_(True)
    z = lesion_logits(model, xs)[0, 0]
    for n, v in enumerate(voxels):
        (g,) = torch.autograd.grad(z[tuple(v)], xs, retain_graph=n < len(voxels) - 1)
        yield g[0]
