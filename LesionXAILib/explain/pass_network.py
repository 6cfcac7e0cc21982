"""The network copy gradient explanations run on: batch norm folded into its convolution, channels-last layout.

Explanations run the network in eval mode, where a batch-norm layer is a fixed per-channel affine map
y = s x + t (s = gamma / sqrt(running_var + eps), t = beta - running_mean s). Directly after a
convolution it folds into that convolution's weights and bias (w' = s w per output channel, b' = s b + t),
which removes one elementwise pass forward and one backward per norm layer. The copy is also stored
channels-last (``torch.channels_last_3d``), the layout oneDNN's CPU 3D convolutions are fastest in.
Both are exact up to float rounding (other summation order); measured on 2 CPU threads, one forward +
backward of 8 copies of a 64^3 crop (benchmarks/bench_pass_network.py): demo model 2.0 -> 1.1 s CPU,
anchor-size U-Net 1.1 -> 1.0 s CPU (shared machine; see the README "Measured performance").

Only (convolution, batch norm) pairs that are neighbours in a plain ``nn.Sequential`` (whose forward
feeds each child's output to the next child only; MONAI's ``Convolution``/``ADN`` blocks are such) are
folded, never a convolution that is a hooked layer (``keep``: its output is what a CAM or the fidelity
guard reads). The copy is then checked against the original on a small random input; if they differ
beyond rounding, or the network is TorchScript, in training mode or not float32/float64, the original
is used unchanged. Copies are cached per model and invalidated when any parameter or buffer changes
(tensor version counters), so a reloaded or edited model never runs on stale weights.
``LESIONXAI_PASS_NETWORK=0`` in the environment turns the copy off (benchmarks time both in one run).
"""

from __future__ import annotations

import copy
import os
import threading
import weakref
from typing import Optional, Sequence

import torch
from torch import nn

from LesionXAILib.lesion_model import LesionModel

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
# relative to the output's largest magnitude; float32 rounding through a dozen layers stays below 1e-5
_CHECK_TOLERANCE = 1e-4

_cache: "weakref.WeakKeyDictionary[LesionModel, dict]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def weights_version(model: nn.Module) -> tuple:
    """Return a key that changes whenever a parameter or buffer of ``model`` is replaced or modified in place."""
    return tuple((t.data_ptr(), t._version, t.dtype, t.device.type) for t in (*model.parameters(), *model.buffers()))


def _first_norm(module: nn.Module) -> Optional[tuple[nn.Module, str]]:
    """Return (parent, child name) of the batch norm that receives ``module``'s input first, if any."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return None  # handled by the caller (the norm is the neighbour itself)
    if type(module).forward is nn.Sequential.forward and len(module) > 0:
        name, first = next(iter(module._modules.items()))
        if isinstance(first, nn.modules.batchnorm._BatchNorm):
            return module, name
        return _first_norm(first)
    return None


def _fold_pair(conv: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> bool:
    """Fold an eval-mode batch norm into the convolution before it (in place); False if it cannot be."""
    out_channels = conv.weight.shape[1] * conv.groups if isinstance(conv, _TRANSPOSED) else conv.weight.shape[0]
    if norm.running_mean is None or norm.running_var is None or out_channels != norm.num_features:
        return False
    with torch.no_grad():
        w = conv.weight.to(torch.float64)
        scale = norm.running_var.to(torch.float64).add(norm.eps).rsqrt()
        if norm.weight is not None:
            scale = scale * norm.weight.to(torch.float64)
        shift = -norm.running_mean.to(torch.float64) * scale
        if norm.bias is not None:
            shift = shift + norm.bias.to(torch.float64)
        if isinstance(conv, _TRANSPOSED):  # weight (C_in, C_out / groups, ...): output channels on axis 1 per group
            g = conv.groups
            shaped = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
            w = (shaped * scale.view(g, 1, -1, *([1] * (w.ndim - 2)))).view_as(w)
        else:
            w = w * scale.view(-1, *([1] * (w.ndim - 1)))
        bias = conv.bias.to(torch.float64) if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.copy_(w.to(conv.weight.dtype))
        conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)
    return True


def fold_batch_norm(network: nn.Module, keep: Sequence[str] = ()) -> int:
    """Fold every eval-mode batch norm that directly follows a convolution in a plain Sequential (in place); return how many.

    ``keep``: module names (relative to ``network``) whose own output must stay as it is.
    """
    names = {id(m): n for n, m in network.named_modules()}
    kept = set(keep)
    folded = 0
    for parent in list(network.modules()):
        if type(parent).forward is not nn.Sequential.forward:
            continue
        children = list(parent._modules.items())
        for (_, a), (b_name, b) in zip(children, children[1:]):
            if not isinstance(a, _CONV) or names.get(id(a)) in kept:
                continue
            if isinstance(b, nn.modules.batchnorm._BatchNorm):
                holder, key = parent, b_name
            else:
                found = _first_norm(b)
                if found is None:
                    continue
                holder, key = found
            norm = holder._modules[key]
            if names.get(id(norm)) in kept or not _fold_pair(a, norm):
                continue
            holder._modules[key] = nn.Identity()
            folded += 1
    return folded


def _agrees(original: LesionModel, fast: LesionModel) -> bool:
    """Return True if the two models give the same output on a small random input, up to float rounding."""
    side = 2 * max(1, int(original.size_divisor))
    gen = torch.Generator().manual_seed(0)
    dtype = next((p.dtype for p in original.parameters() if p.is_floating_point()), torch.float32)
    device = next((p.device for p in original.parameters()), torch.device("cpu"))
    x = torch.randn((1, original.config.in_channels, side, side, side), generator=gen, dtype=dtype).to(device)
    try:
        with torch.no_grad():
            a = original(x)
            b = fast(x.contiguous(memory_format=torch.channels_last_3d))
    except RuntimeError:
        return False
    if a.shape != b.shape or not torch.isfinite(b).all():
        return False
    scale = float(a.abs().max()) or 1.0
    return float((a - b).abs().max()) <= _CHECK_TOLERANCE * scale


def _build(model: LesionModel, keep: tuple[str, ...]) -> LesionModel:
    network = copy.deepcopy(model.network).eval()
    for p in network.parameters():
        p.requires_grad_(False)
    fold_batch_norm(network, keep)
    network = network.to(memory_format=torch.channels_last_3d)
    fast = LesionModel(network, model.config, source=model.source)
    fast.space, fast.bound_geometry = model.space, model.bound_geometry
    fast.eval()
    if _agrees(model, fast):
        return fast
    plain = LesionModel(copy.deepcopy(model.network).eval().to(memory_format=torch.channels_last_3d), model.config, source=model.source)
    plain.space, plain.bound_geometry = model.space, model.bound_geometry
    return plain.eval() if _agrees(model, plain) else model


def pass_model(model: LesionModel, keep: Sequence[str] = ()) -> LesionModel:
    """Return the model gradient passes run on: the folded channels-last copy of ``model`` (cached), or ``model`` itself."""
    if model.training or isinstance(model.network, torch.jit.ScriptModule) or not enabled() or _watched(model):
        return model
    if model.runs_in_model_space:
        # a format's own whole-volume preprocessing (nnU-Net crop, resampling) cannot be checked on a small
        # random input, and its per-subject state (bound grid, nonzero box) belongs to the original
        return model
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype not in (torch.float32, torch.float64):
        return model
    key = (weights_version(model), tuple(sorted(keep)), id(model.space), id(model.bound_geometry))
    with _lock:
        entries = _cache.setdefault(model, {})
        hit = entries.get(key)
    if hit is not None:
        return hit
    fast = _build(model, tuple(keep))
    with _lock:
        entries = _cache.setdefault(model, {})
        for old in [k for k in entries if k[0] != key[0]]:  # copies of older weights are stale
            del entries[old]
        entries[key] = fast
    return fast


def _watched(model: LesionModel) -> bool:
    """Return True if hooks observe the model's own calls (e.g. metrics/cost.count_passes): a copy would bypass them."""
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in (model, model.network))


def enabled() -> bool:
    """Return False if ``LESIONXAI_PASS_NETWORK=0`` turns the folded channels-last copy off."""
    return os.environ.get("LESIONXAI_PASS_NETWORK", "1").strip() not in ("0", "false", "no", "off")


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Return a 5-D tensor in channels-last layout (other ranks unchanged), the layout :func:`pass_model` copies use."""
    return x.contiguous(memory_format=torch.channels_last_3d) if x.ndim == 5 and enabled() else x
