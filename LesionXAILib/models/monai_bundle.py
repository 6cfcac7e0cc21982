"""MONAI bundles as LesionXAI models: the bundle's own config (read with ``monai.bundle``) defines the contract.

A bundle folder holds ``configs/inference.json`` (or ``.yaml``), optionally ``configs/metadata.json``
and ``models/model.pt`` (a state dict) or ``models/model.ts`` (TorchScript: code, loaded only with
``--trust-model``). LesionXAI reads the config with :class:`monai.bundle.ConfigParser` and
instantiates only ``network_def``, ``preprocessing``, ``inferer`` and ``postprocessing`` (on LesionXAI's
device, whatever the bundle's ``device`` says). The preprocessing transforms become the input
contract:

- ``LoadImage(d)``: arrays in nibabel's (i, j, k) order as stored (``axes="ijk"``; an ``ITKReader``
  with ``reverse_indexing=True`` gives SimpleITK's (k, j, i));
- ``Orientation(d)(axcodes=X)``: ``orientation=X`` (flips and a permutation, never a resampling);
- ``Spacing(d)(pixdim=...)``: ``target_spacing`` with ``resampling="monai"``: LesionXAI applies MONAI's own
  Spacing (and, back onto the FLAIR grid, its inverse as ``Invertd`` does) as exact differentiable operators
  on the whole volume, tiled by the bundle's inferer (:mod:`LesionXAILib.models.resampling`); a
  ``NormalizeIntensity(d)`` after it normalises with the resampled image's statistics and non-zero
  mask (``zscore-model-space``): on the FLAIR grid every voxel is z-scored with those statistics
  (resampling keeps constants, so this commutes with it) and the mask is applied in model space;
- ``NormalizeIntensity(d)(nonzero, channel_wise=True)``: ``zscore-nonzero`` or ``zscore``;
- ``EnsureChannelFirst(d)``, ``EnsureType(d)``, ``ToTensor(d)``, ``CastToType(d)`` to float32, ``Identity(d)``:
  no effect on values.

Any other transform is refused, naming it: LesionXAI explains the network on the values the
bundle feeds it, so a transform it cannot reproduce would make every explanation wrong. The
inferer's ``roi_size`` / ``overlap`` / blending mode are used (a ``SimpleInferer`` runs the whole
volume); the postprocessing's ``Activations(d)`` gives the head (softmax or sigmoid) and
``AsDiscrete(d)(threshold=t)`` the threshold; ``metadata.json``'s ``channel_def`` names the input
channels and the lesion output channel.

Without ``--trust-model`` the sections LesionXAI instantiates may hold no ``$`` Python expressions
and name only MONAI / torch classes: a bundle's config is otherwise code.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.models.contract import InputContract
from LesionXAILib.models.formats import LoadRequest

SECTIONS = ("network_def", "preprocessing", "inferer", "postprocessing")
# transforms that do not change voxel values or their arrangement
NEUTRAL_TRANSFORMS = {
    "EnsureChannelFirst", "EnsureType", "ToTensor", "CastToType", "Identity", "ToDevice", "DeleteItems", "SelectItems",
}  # fmt: skip
WHOLE_VOLUME_ROI = (4096, 4096, 4096)
# NormalizeIntensityd after Spacingd: z-score with the resampled image's statistics (models/resampling.py)
MODEL_SPACE_ZSCORE = "zscore-model-space"
FLAIR_KEYS = ("flair",)
T1_KEYS = ("t1", "mprage", "mp2rage")
LESION_NAMES = ("lesion", "lesions", "ms", "wml", "wmh", "foreground")


def _config_file(path: Path) -> Path:
    for ext in ("json", "yaml", "yml"):
        f = path / "configs" / f"inference.{ext}"
        if f.is_file():
            return f
    raise ModelLoadError(f"MONAI bundle '{path}': no configs/inference.json or .yaml")


def _refs(value: str) -> list[str]:
    return re.findall(r"@([A-Za-z0-9_#:]+)", value)


def _check_untrusted(parser: Any, path: Path) -> None:
    """Refuse ``$`` expressions and classes outside monai/torch in the sections LesionXAI instantiates (and what they reference)."""
    seen: set[str] = set()
    problems: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str) and "." in target and not target.startswith(("monai.", "torch.")):
                problems.append(f"{where}: class '{target}'")
            for k, v in node.items():
                walk(v, f"{where}#{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}#{i}")
        elif isinstance(node, str):
            if node.startswith("$"):
                problems.append(f"{where}: expression '{node[:60]}'")
            for ref in _refs(node):
                ref = ref.replace(":", "#")
                if ref not in seen:
                    seen.add(ref)
                    try:
                        walk(parser.get(ref), ref)
                    except (KeyError, IndexError, ValueError):
                        pass

    for section in SECTIONS:
        if section in parser.config:
            seen.add(section)
            walk(parser.get(section), section)
    if problems:
        raise ModelLoadError(
            f"MONAI bundle '{path}': its config runs code LesionXAI will not run untrusted ({'; '.join(problems[:3])}); "
            "pass --trust-model only if you trust where it comes from"
        )


def _name(transform: Any) -> str:
    """Return a transform's class name without MONAI's dictionary suffix ``d``/``D``/``Dict``."""
    name = type(transform).__name__
    for suffix in ("Dict", "D", "d"):
        if name.endswith(suffix) and name[: -len(suffix)]:
            return name[: -len(suffix)]
    return name


def _flatten(transform: Any) -> list[Any]:
    from monai.transforms import Compose

    if isinstance(transform, Compose):
        out = []
        for t in transform.transforms:
            out += _flatten(t)
        return out
    if isinstance(transform, (list, tuple)):
        out = []
        for t in transform:
            out += _flatten(t)
        return out
    return [transform]


def contract_from_preprocessing(preprocessing: Any, path: Path) -> tuple[InputContract, str, Optional[dict]]:
    """Return (input contract without divisor/crop rule, normalisation name, Spacingd's resampling options) from the preprocessing."""
    axes, orientation, spacing, normalization, resampling = "ijk", "as-stored", None, "none", None
    for t in _flatten(preprocessing):
        name = _name(t)
        if name == "LoadImage":
            loader = getattr(t, "_loader", t)
            reader = getattr(loader, "reader", None)
            if reader is not None and getattr(reader, "reverse_indexing", False):
                axes = "kji"
        elif name == "Orientation":
            codes = getattr(getattr(t, "ornt_transform", t), "axcodes", None)
            if codes is None:
                raise ModelLoadError(f"MONAI bundle '{path}': Orientationd without axcodes (as_closest_canonical) is not supported")
            orientation = str(codes)
        elif name == "Spacing":
            sp = getattr(t, "spacing_transform", t)
            pixdim = [float(v) for v in sp.pixdim]
            if len(pixdim) != 3 or any(v <= 0 for v in pixdim):
                raise ModelLoadError(f"MONAI bundle '{path}': Spacingd pixdim {pixdim} is not three positive spacings")
            if sp.diagonal or (hasattr(sp, "min_pixdim") and np.isfinite(sp.min_pixdim).any()) or (
                hasattr(sp, "max_pixdim") and np.isfinite(sp.max_pixdim).any()
            ):
                raise ModelLoadError(f"MONAI bundle '{path}': Spacingd with diagonal=True or min/max_pixdim cannot be mapped to LesionXAI's contract")
            spacing = tuple(pixdim)
            first = (lambda v: v[0] if isinstance(v, (list, tuple)) else v)  # noqa: E731
            modes = {
                "mode": first(getattr(t, "mode", "bilinear")),
                "padding_mode": first(getattr(t, "padding_mode", "border")),
                "align_corners": first(getattr(t, "align_corners", False)),
                "scale_extent": first(getattr(t, "scale_extent", False)),
            }
            resampling = {k: (str(getattr(v, "value", v)) if not isinstance(v, bool) else v) for k, v in modes.items()}
        elif name == "NormalizeIntensity":
            n = getattr(t, "normalizer", t)
            if n.subtrahend is not None or n.divisor is not None or not n.channel_wise:
                raise ModelLoadError(
                    f"MONAI bundle '{path}': NormalizeIntensityd with subtrahend/divisor or channel_wise=False cannot be mapped "
                    "to LesionXAI's contract (per-channel z-score)"
                )
            normalization = "zscore-nonzero" if n.nonzero else "zscore"
            if spacing is not None:  # statistics (and the non-zero mask) are those of the resampled image
                normalization = MODEL_SPACE_ZSCORE
                resampling = {**(resampling or {}), "normalize_nonzero": bool(n.nonzero)}
        elif name == "CastToType":
            dtypes = getattr(getattr(t, "converter", t), "dtype", None)
            if dtypes is not None and "float" not in str(dtypes):
                raise ModelLoadError(f"MONAI bundle '{path}': CastToTyped to {dtypes} cannot be mapped to LesionXAI's contract")
        elif name not in NEUTRAL_TRANSFORMS:
            raise ModelLoadError(
                f"MONAI bundle '{path}': preprocessing transform {type(t).__name__} cannot be mapped to LesionXAI's input "
                "contract (supported: LoadImaged, EnsureChannelFirstd, Orientationd, Spacingd, NormalizeIntensityd, EnsureTyped)"
            )
    contract = InputContract(axes=axes, orientation=orientation, target_spacing=spacing, resampling="monai" if spacing else "trilinear")
    return contract, normalization, resampling


class BundleNetwork(nn.Module):
    """A bundle's network plus its inferer's window blending (``window_weights``, MONAI's importance map)."""

    def __init__(self, network: nn.Module, mode: str = "constant", sigma_scale: Any = 0.125) -> None:
        super().__init__()
        self.network = network
        self.mode = str(mode)
        self.sigma_scale = sigma_scale

    def window_weights(self, shape: Any) -> torch.Tensor:
        """Return the bundle inferer's blending weights for a window of ``shape`` (MONAI compute_importance_map)."""
        from monai.data.utils import compute_importance_map

        return compute_importance_map(tuple(int(s) for s in shape), mode=self.mode, sigma_scale=self.sigma_scale, device="cpu").float()

    def infer(self, y: torch.Tensor) -> torch.Tensor:
        """Return the bundle inferer's output on a whole model-space volume (its sliding window, or one pass)."""
        inferer = getattr(self, "inferer", None)
        return inferer(y, self.network) if inferer is not None else self.network(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the bundle network's raw output."""
        return self.network(x)


def _load_weights(path: Path, network: Optional[nn.Module], trust: bool, device: torch.device) -> nn.Module:
    """Return the network with models/model.pt loaded (weights_only), or the TorchScript models/model.ts (trust only)."""
    from LesionXAILib.model_loading import _unwrap_state_dict, check_state_dict_fits

    pt, ts = path / "models" / "model.pt", path / "models" / "model.ts"
    if pt.is_file() and network is not None:
        try:
            obj = torch.load(str(pt), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise ModelLoadError(f"MONAI bundle '{path}': models/model.pt is not a plain state dict ({type(exc).__name__})") from None
        state, _ = _unwrap_state_dict(obj, str(pt))
        check_state_dict_fits(network, state, str(pt), "network_def")
        network.load_state_dict(state, strict=True)
        return network
    if ts.is_file():
        if not trust:
            raise ModelLoadError(
                f"MONAI bundle '{path}': models/model.ts is TorchScript, which runs code from the file; "
                "pass --trust-model only if you trust where it comes from"
            )
        return torch.jit.load(str(ts), map_location=device)
    raise ModelLoadError(f"MONAI bundle '{path}': no models/model.pt (with network_def) or models/model.ts")


def _channel_defs(parser: Any, path: Path) -> tuple[Optional[dict], Optional[dict]]:
    meta = path / "configs" / "metadata.json"
    if not meta.is_file():
        return None, None
    parser.read_meta(str(meta))
    fmt = parser.get("_meta_#network_data_format", {}) or {}
    inputs = next(iter((fmt.get("inputs") or {}).values()), {}) or {}
    outputs = next(iter((fmt.get("outputs") or {}).values()), {}) or {}
    return inputs.get("channel_def"), outputs.get("channel_def")


def _input_order(channel_def: Optional[dict], n: int, path: Path) -> tuple[str, ...]:
    if channel_def is None:
        if n != 2:
            raise ModelLoadError(f"MONAI bundle '{path}': {n} input channels and no metadata channel_def naming them")
        return ("FLAIR", "MPRAGE")
    order = []
    for i in range(n):
        key = re.sub(r"[^a-z0-9]", "", str(channel_def.get(str(i), "")).lower())
        if any(k in key for k in FLAIR_KEYS):
            order.append("FLAIR")
        elif key.startswith(T1_KEYS):
            order.append("MPRAGE")
        else:
            raise ModelLoadError(f"MONAI bundle '{path}': input channel {i} ('{channel_def.get(str(i))}') is neither a FLAIR nor a T1")
    return tuple(order)


def _divisor(network: nn.Module) -> int:
    """Return the network's input size multiple (U-Net: product of strides; otherwise 32, enough for 5 downsamplings)."""
    from monai.networks.nets import UNet

    if isinstance(network, UNet):
        per_axis = [1, 1, 1]
        for s in network.strides:
            s = list(s) if isinstance(s, (list, tuple)) else [s] * 3
            per_axis = [a * int(b) for a, b in zip(per_axis, s)]
        return int(math.lcm(*per_axis))
    return 32


def _crop_rule(network: nn.Module) -> str:
    """Return 'exact' for convolution/batch-norm networks, 'calibrate' when a module reads the whole input or reaches far."""
    for m in network.modules():
        name = type(m).__name__
        if isinstance(m, (nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)) or any(k in name for k in ("Swin", "Transformer", "Attention", "ViT")):
            return "calibrate"
    return "exact"


def load_bundle(request: LoadRequest) -> LesionModel:
    """Return a LesionModel of a MONAI bundle folder: its network, weights and the contract its preprocessing defines."""
    from monai.bundle import ConfigParser
    from monai.inferers import SimpleInferer, SlidingWindowInferer

    path = Path(request.path)
    if request.options:
        raise ModelLoadError(f"MONAI bundle '{path}': takes no format options (got {sorted(request.options)})")
    parser = ConfigParser()
    parser.read_config(str(_config_file(path)))
    parser["bundle_root"] = str(path)
    parser["device"] = str(request.device)  # LesionXAI's device, whatever the bundle says
    if not request.trust:
        _check_untrusted(parser, path)
    for section in ("preprocessing", "inferer"):
        if section not in parser.config:
            raise ModelLoadError(f"MONAI bundle '{path}': configs/inference has no '{section}'")
    try:
        preprocessing = parser.get_parsed_content("preprocessing", instantiate=True)
        inferer = parser.get_parsed_content("inferer", instantiate=True)
        postprocessing = parser.get_parsed_content("postprocessing", instantiate=True) if "postprocessing" in parser.config else None
        network = parser.get_parsed_content("network_def", instantiate=True) if "network_def" in parser.config else None
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"MONAI bundle '{path}': its config cannot be instantiated ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    contract, normalization, resampling = contract_from_preprocessing(preprocessing, path)
    network = _load_weights(path, network, request.trust, request.device)
    if isinstance(inferer, SlidingWindowInferer):
        roi = tuple(int(v) for v in inferer.roi_size)
        overlap, mode, sigma = float(inferer.overlap), str(getattr(inferer.mode, "value", inferer.mode)), inferer.sigma_scale
    elif isinstance(inferer, SimpleInferer):
        roi, overlap, mode, sigma = WHOLE_VOLUME_ROI, 0.0, "constant", 0.125
    else:
        raise ModelLoadError(f"MONAI bundle '{path}': inferer {type(inferer).__name__} is not a SlidingWindowInferer or SimpleInferer")
    head, threshold = None, 0.5
    for t in _flatten(postprocessing) if postprocessing is not None else []:
        name = _name(t)
        if name == "Activations":
            act = getattr(t, "converter", t)
            sm, sg = act.softmax, act.sigmoid
            head = "softmax" if (any(sm) if isinstance(sm, (list, tuple)) else sm) else "sigmoid" if (any(sg) if isinstance(sg, (list, tuple)) else sg) else head
        elif name == "AsDiscrete":
            value = getattr(getattr(t, "converter", t), "threshold", None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                threshold = float(value)
    in_def, out_def = _channel_defs(parser, path)
    n_in = int(parser.get("network_def#in_channels", 0) or (len(in_def) if in_def else 2))
    n_out = int(parser.get("network_def#out_channels", 0) or (len(out_def) if out_def else 2))
    order = _input_order(in_def, n_in, path)
    head = head or ("softmax" if n_out >= 2 else "sigmoid")
    lesion = n_out - 1 if head == "softmax" else 0
    if out_def:
        hits = [int(k) for k, v in out_def.items() if re.sub(r"[^a-z]", "", str(v).lower()) in LESION_NAMES]
        if len(hits) == 1:
            lesion = hits[0]
    if head == "sigmoid" and n_out != 1:
        raise ModelLoadError(f"MONAI bundle '{path}': a sigmoid head with {n_out} outputs (LesionXAI needs one lesion channel)")
    from LesionXAILib.explain.cam import CAM_DEFAULT_LAYERS

    names = {n for n, _ in network.named_modules()}
    cam_layer = next((f"network.{c}" for c in CAM_DEFAULT_LAYERS if c in names), None)
    contract = InputContract(
        axes=contract.axes, orientation=contract.orientation, target_spacing=contract.target_spacing,
        size_divisor=_divisor(network), crop_rule=_crop_rule(network), resampling=contract.resampling,
    )  # fmt: skip
    config = ModelConfig(
        name=f"bundle-{path.name}",
        network="monai-bundle",
        in_channels=n_in,
        input_order=order,
        out_channels=n_out,
        head=head,
        lesion_index=lesion,
        normalization=normalization,
        roi_size=roi,
        overlap=overlap,
        threshold=threshold,
        cam_layer=cam_layer,
        contract=contract,
        extra={
            "monai_bundle": {"folder": str(path), "inferer_mode": mode, "weights": "model.pt" if (path / "models" / "model.pt").is_file() else "model.ts"},
            **({"monai_spacing": resampling} if resampling else {}),
        },
    )
    wrapped = BundleNetwork(network, mode, sigma)
    wrapped.inferer = inferer  # a resampling bundle runs in model space: tiled by its own inferer, as its evaluator does
    model = LesionModel(wrapped, config, source=str(path))
    return model.to(request.device).eval()
