"""Networks LesionXAI can build from a config alone: ``ModelConfig.network`` names one of ARCHITECTURES.

``unet`` (MONAI ``UNet``, the anchor study's and LesionXAI's own) reads the config's U-Net fields
(channels, strides, ...); the others read ``ModelConfig.architecture`` (keyword arguments of the
MONAI class). Formats whose network comes with the model (TorchScript, nnU-Net plans, MONAI
bundles) are not listed: their loaders build the network and wrap it in a LesionModel themselves.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from torch import nn

from LesionXAILib.errors import ModelLoadError


def _unet(config: Any) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        channels=tuple(config.channels),
        strides=tuple(config.strides),
        num_res_units=config.num_res_units,
        norm=config.norm,
        act=config.act,
        dropout=config.dropout,
        **dict(config.architecture),
    )


def _dynunet(config: Any) -> nn.Module:
    from monai.networks.nets import DynUNet

    kwargs = dict(config.architecture)
    return DynUNet(spatial_dims=config.spatial_dims, in_channels=config.in_channels, out_channels=config.out_channels, **kwargs)


def _swin_unetr(config: Any) -> nn.Module:
    from monai.networks.nets import SwinUNETR

    kwargs = dict(config.architecture)
    return SwinUNETR(spatial_dims=config.spatial_dims, in_channels=config.in_channels, out_channels=config.out_channels, **kwargs)


def _mlcsc(config: Any) -> nn.Module:
    from LesionXAILib.models.mlcsc import build_mlcsc

    return build_mlcsc(config)


def _stride_product(strides: Any) -> int:
    total = [1, 1, 1]
    for s in strides:
        s = list(s) if isinstance(s, (list, tuple)) else [s] * 3
        total = [t * int(v) for t, v in zip(total, s)]
    return int(math.lcm(*total))


def _unet_divisor(config: Any) -> int:
    return _stride_product(config.strides)


def _dynunet_divisor(config: Any) -> int:
    return _stride_product(config.architecture.get("strides", (1,)))


def _mlcsc_divisor(config: Any) -> int:
    from LesionXAILib.models.mlcsc import mlcsc_divisor

    return mlcsc_divisor(config)


def _swin_divisor(config: Any) -> int:
    # four patch-merging stages after a 2x patch embedding: inputs must be multiples of 2**5
    return 32


ARCHITECTURES: dict[str, Callable[[Any], nn.Module]] = {
    "unet": _unet,
    "dynunet": _dynunet,
    "swin-unetr": _swin_unetr,
    "mlcsc": _mlcsc,
}
DIVISORS: dict[str, Callable[[Any], int]] = {
    "unet": _unet_divisor,
    "dynunet": _dynunet_divisor,
    "swin-unetr": _swin_divisor,
    "mlcsc": _mlcsc_divisor,
}


def build_architecture(config: Any) -> nn.Module:
    """Return a freshly initialised network of ``config.network`` (ModelLoadError if LesionXAI cannot build it)."""
    builder = ARCHITECTURES.get(config.network)
    if builder is None:
        raise ModelLoadError(
            f"model config '{config.name}': network '{config.network}' cannot be built from a config "
            f"(buildable: {', '.join(sorted(ARCHITECTURES))}); its network comes with the model file or folder"
        )
    try:
        return builder(config)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"model config '{config.name}': cannot build '{config.network}' ({exc})") from None


def default_size_divisor(config: Any) -> int:
    """Return the input size multiple ``config.network`` needs (1 for networks LesionXAI does not know)."""
    rule = DIVISORS.get(config.network)
    return int(rule(config)) if rule is not None else 1
