"""Loading models: one entry point (``load_model``) for every format and caller, and the loading policy.

Policy: state dicts and LesionXAI checkpoints are data and load with ``weights_only=True``; TorchScript
is code and loads only through ``load_model(..., trust=True)`` (``--model`` with ``--trust-model``),
with a one-line warning; ``load_weights`` (``--weights``) takes data only and refuses TorchScript
without loading it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.lesion_model import LesionModel, build_network
from LesionXAILib.model_config import ModelConfig, get_config

log = logging.getLogger(__name__)

# keys under which training scripts commonly nest the weights
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "network", "net", "weights")
LESIONXAI_FORMAT = "lesionxai-checkpoint-v1"


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """Return the torch device to use: 'cpu' by default, 'cuda' only when asked and present, 'auto' picks."""
    if device is None or str(device) == "cpu":
        return torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{device}' requested but CUDA is not available on this machine")
    return dev


def _strip_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove DataParallel/DistributedDataParallel 'module.' prefixes (applied to every key, or none)."""
    keys = list(state)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module.") :]: v for k, v in state.items()}
    return dict(state)


def _unwrap_state_dict(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], Optional[dict]]:
    """Return (state_dict, embedded config dict or None) from a loaded checkpoint object."""
    config = None
    if isinstance(obj, Mapping):
        if obj.get("format") == LESIONXAI_FORMAT:
            return _strip_prefix(obj["state_dict"]), obj.get("config")
        if all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
            return _strip_prefix(obj), None
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                cfg = obj.get("config")
                return _strip_prefix(inner), cfg if isinstance(cfg, Mapping) else None
            if isinstance(inner, torch.nn.Module):
                return _strip_prefix(inner.state_dict()), None
    if isinstance(obj, torch.nn.Module):
        return _strip_prefix(obj.state_dict()), config
    raise ModelLoadError(
        f"model '{source}': not a recognised checkpoint (expected a state dict, a dict with one of "
        f"{list(WRAPPER_KEYS)}, a LesionXAI checkpoint or a TorchScript file)"
    )


def check_state_dict_fits(network: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str, config_name: str) -> None:
    """Raise ModelLoadError listing missing, unexpected and mis-shaped keys if ``state`` does not fit."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs network {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:

        def show(items: list[str]) -> str:
            head = ", ".join(items[:8])
            return head + (f", ... ({len(items)} in all)" if len(items) > 8 else "")

        parts = [f"model '{source}' does not fit the network config '{config_name}':"]
        if missing:
            parts.append(f"missing keys [{show(missing)}]")
        if unexpected:
            parts.append(f"unexpected keys [{show(unexpected)}]")
        if mismatched:
            parts.append(f"shape mismatches [{show(mismatched)}]")
        raise ModelLoadError(" ".join(parts))


def model_from_state_dict(
    state: Mapping[str, torch.Tensor], config: ModelConfig, source: str = "<state dict>"
) -> LesionModel:
    """Return an eval-mode LesionModel with ``state`` loaded strictly into ``config``'s network."""
    network = build_network(config)
    state = _strip_prefix(state)
    check_state_dict_fits(network, state, source, config.name)
    network.load_state_dict(state, strict=True)
    model = LesionModel(network, config, source=source)
    model.eval()
    return model


TRUST_HINT = "--trust-model (Python: load_model(..., trust=True); Slicer: 'Trust model code')"


def load_model(
    path: Optional[str | os.PathLike] = None,
    config: Optional[ModelConfig | str] = None,
    device: str | torch.device | None = "cpu",
    trust: bool = False,
    options: Optional[Mapping[str, Any]] = None,
) -> LesionModel:
    """Return an eval-mode LesionModel loaded from ``path`` (default: the shipped demo model), whatever format it is in.

    ``path`` may be a LesionXAI checkpoint, a state dict (with ``config``), a TorchScript file (only with
    ``trust=True``: loading it runs code from the file), an nnU-Net v2 trained-model folder or a MONAI
    bundle folder (:mod:`LesionXAILib.models.formats`). ``config`` (a ModelConfig, preset name such as
    ``'ies-unet'``, or JSON path) is required for bare state dicts and overrides a checkpoint's
    embedded config; TorchScript files use it for the head, contract and defaults. ``options`` go to
    the format's loader (e.g. ``folds`` / ``checkpoint`` for nnU-Net). Every caller (CLI, cohort,
    viewer, Slicer) loads through this one function, so the loading policy is the same everywhere.
    """
    from LesionXAILib.models.formats import FORMAT_SUMMARY, LoadRequest, detect_format

    if isinstance(config, (str, Path)):
        config = get_config(config)
    if path is None:
        from LesionXAILib.resources import default_model_path

        path = default_model_path()
    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"model '{p}': file not found")
    fmt = detect_format(p)
    if fmt is None:
        kind = "folder" if p.is_dir() else "file"
        raise ModelLoadError(f"model '{p}': this {kind} cannot be read as a model; --model takes {FORMAT_SUMMARY}")
    request = LoadRequest(p, config, resolve_device(device), bool(trust), dict(options or {}))
    model = fmt.load(request)
    model.eval()
    return model


def load_weights(
    path: str | os.PathLike, config: ModelConfig | str, device: str | torch.device | None = "cpu"
) -> LesionModel:
    """Return an eval-mode LesionModel with the state dict at ``path`` loaded into ``config``'s network (``--weights``).

    Weights are data: only files ``torch.load(weights_only=True)`` reads are accepted. A TorchScript file
    (code) is refused without loading it, whatever it is named.
    """
    from LesionXAILib.models.formats import LoadRequest, is_torchscript

    p = Path(path)
    if not p.exists():
        raise ModelLoadError(f"weights '{p}': file not found")
    if p.is_dir():
        raise ModelLoadError(f"weights '{p}' is a folder; --weights takes a state-dict file (pass model folders with --model)")
    if is_torchscript(p):
        raise ModelLoadError(
            f"weights '{p}' is a TorchScript file (code, not weights); it was not loaded. Pass it as --model with --trust-model if you trust it"
        )
    if isinstance(config, (str, Path)):
        config = get_config(config)
    model = load_checkpoint(LoadRequest(p, config, resolve_device(device)))
    model.eval()
    return model


def load_torchscript(request: Any) -> LesionModel:
    """Return a LesionModel around a TorchScript file, only if the request trusts it (ModelLoadError otherwise).

    TorchScript archives carry code that runs while they load (e.g. a module's ``__setstate__``), so
    they are never opened without the user's explicit opt-in.
    """
    p = request.path
    if not request.trust:
        raise ModelLoadError(
            f"model '{p}' is TorchScript, which runs code from the file when loaded; it was not loaded. "
            f"If you trust its source, pass {TRUST_HINT}"
        )
    log.warning("loading TorchScript model '%s': code from this file runs (trusted by the user)", p)
    try:
        network = torch.jit.load(str(p), map_location=request.device)
    except RuntimeError as exc:
        raise ModelLoadError(f"model '{p}': TorchScript file cannot be loaded ({str(exc).splitlines()[0]})") from None
    cfg = request.config or ModelConfig(name=p.stem)
    model = LesionModel(network, cfg, source=str(p))
    model.eval()
    return model


def load_checkpoint(request: Any) -> LesionModel:
    """Return a LesionModel from a state-dict file or LesionXAI checkpoint, read with ``weights_only=True``."""
    p, config = request.path, request.config
    source = str(p)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        raise ModelLoadError(
            f"model '{p}': cannot be read as a PyTorch checkpoint ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})"
        ) from None
    state, embedded = _unwrap_state_dict(obj, source)
    if config is None:
        if embedded is None:
            raise ModelLoadError(
                f"model '{p}' is a bare state dict with no embedded configuration; pass a config "
                "(e.g. --config ies-unet, or a JSON file)"
            )
        config = ModelConfig.from_dict(dict(embedded))
    model = model_from_state_dict(state, config, source)
    return model.to(request.device)


def save_checkpoint(
    model: LesionModel, path: str | os.PathLike, metadata: Optional[dict] = None, float16: bool = False
) -> Path:
    """Write a self-describing LesionXAI checkpoint (config + weights + metadata) and return its path.

    ``float16`` stores floating-point weights at half precision and integer buffers (e.g. a Swin transformer's
    relative-position tables) in the narrowest integer type that holds them exactly; loading casts both back
    into the network's own types, so the model that is evaluated and explained is the stored, rounded one.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)

    def stored(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        if not float16 or v.dtype == torch.bool:
            return v
        if v.is_floating_point():
            return v.half()
        if v.numel():
            lo, hi = int(v.min()), int(v.max())
            for narrow in (torch.int8, torch.int16, torch.int32):
                info = torch.iinfo(narrow)
                if info.min <= lo and hi <= info.max:
                    return v.to(narrow)
        return v

    payload = {
        "format": LESIONXAI_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: stored(v) for k, v in model.network.state_dict().items()},
        "metadata": {**(metadata or {}), **({"weights_stored_as": "float16"} if float16 else {})},
    }
    from LesionXAILib.atomic_write import atomic_path

    with atomic_path(p) as tmp:
        torch.save(payload, str(tmp))
    return p
