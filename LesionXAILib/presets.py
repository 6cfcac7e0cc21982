"""Run presets: named sets of command-line settings, applied by ``--preset`` (explicit options override them).

``anchor`` holds every convention of the anchor study (Spagnolo et al. 2024, federicospagnolo/IES
scripts; docs/methods.md#anchor-settings) that LesionXAI can reproduce:
  instances    18-connected components (scipy.ndimage.generate_binary_structure(3, 2)) larger than
               5 voxels (minimum size 6); threshold 0.3 for a MONAI U-Net, 0.4 for other networks
  probe        the lesion dilated n times by the 18-connected element, n = 1 ... 34 voxel steps, image
               multiplied by the dilated mask (fill 0); detected = any lesion voxel above threshold
  SmoothGrad   n = 50, sigma = 0.05 x (max - min) of the normalised FLAIR, the same sigma on both channels,
               sum target
  Grad-CAM++   MONAI's formula (``gradcampp_anchor``) at ``module.model.1.submodule.2.conv``
Not reproduced (deliberately): the anchor's divisor bugs and its max-aggregation loop skipping the last
lesion voxel; its sliding-window inference settings are the model's own (96^3, overlap 0.25, Gaussian).

A preset is a run setting, not a model description: the network's own conventions (channels, array
order, normalisation) live in its model config (``model_config.py``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Optional

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.registry import method_default

# What an option left unset means without a preset (the command-line defaults of these options are None,
# so that a preset can tell an explicit value from an unset one).
BUILTIN_DEFAULTS: dict[str, Any] = {
    "min_size": 3,
    "connectivity": 26,
    "methods": "smoothgrad,gradcampp",
    "aggregation": "sum",
    "samples": method_default("smoothgrad", "samples"),  # the explainer registry's defaults
    "noise_level": method_default("smoothgrad", "noise_level"),
    "probe_element": "ball",
    "fill": "background",
}

ANCHOR_CAM_LAYER = "module.model.1.submodule.2.conv"
# The same transposed convolution in a MONAI UNet with residual units (e.g. the demo model).
ANCHOR_CAM_LAYER_RESIDUAL = "model.1.submodule.2.0.conv"


@dataclass(frozen=True)
class RunPreset:
    """A named set of option values (argparse destinations) and the threshold rule of its study."""

    name: str
    description: str
    values: dict[str, Any] = field(default_factory=dict)
    unet_threshold: Optional[float] = None  # for a MONAI UNet
    other_threshold: Optional[float] = None  # for any other network

    def threshold_for(self, model: Any) -> Optional[float]:
        """Return this preset's threshold for ``model`` (None: the model's own)."""
        return self.unet_threshold if is_monai_unet(model) else self.other_threshold


PRESETS: dict[str, RunPreset] = {
    "anchor": RunPreset(
        name="anchor",
        description="the anchor study's conventions (Spagnolo et al. 2024): 18-connectivity, > 5 voxels, "
        "threshold 0.3 (U-Net) / 0.4, 18-connected 1..34-step probe with any-voxel detection, "
        "SmoothGrad n=50 sigma 0.05, sum target, gradcampp_anchor at module.model.1.submodule.2.conv",
        values={
            "connectivity": 18,
            "min_size": 6,
            "min_size_unit": "voxels",
            "probe_element": "anchor",
            "fill": "zero",
            "methods": "smoothgrad,gradcampp_anchor",
            "aggregation": "sum",
            "samples": 50,
            "noise_level": 0.05,
            "cam_layer": ANCHOR_CAM_LAYER,
        },
        unet_threshold=0.3,
        other_threshold=0.4,
    ),
}


def get_preset(name: str) -> RunPreset:
    """Return the run preset ``name`` or raise ParameterError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ParameterError(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}") from None


def is_monai_unet(model: Any) -> bool:
    """Return True if ``model`` (a LesionModel or a network) is a MONAI UNet."""
    try:
        from monai.networks.nets import UNet
    except ImportError:
        return False
    return isinstance(getattr(model, "network", model), UNet)


def apply_preset(args: argparse.Namespace) -> Optional[RunPreset]:
    """Fill the unset options of ``args`` from ``--preset`` (if given), then from the built-in defaults; return the preset.

    Only options the command has are touched; an explicitly given option is never changed.
    """
    name = getattr(args, "preset", None)
    preset = get_preset(name) if name else None
    values = preset.values if preset else {}
    for dest in set(values) | set(BUILTIN_DEFAULTS):
        if hasattr(args, dest) and getattr(args, dest) is None:
            setattr(args, dest, values.get(dest, BUILTIN_DEFAULTS.get(dest)))
    return preset


def resolve_model_settings(args: argparse.Namespace, model: Any) -> None:
    """Set what the preset decides per network once ``model`` is loaded: the threshold and the anchor's CAM layer."""
    name = getattr(args, "preset", None)
    if not name:
        return
    preset = get_preset(name)
    if hasattr(args, "threshold") and args.threshold is None:
        args.threshold = preset.threshold_for(model)
    if getattr(args, "cam_layer", None) == ANCHOR_CAM_LAYER and preset.values.get("cam_layer") == ANCHOR_CAM_LAYER:
        args.cam_layer = anchor_cam_layer(model)


def anchor_cam_layer(model: Any) -> str:
    """Return the anchor's CAM layer in ``model``: its `.conv`, or the same transposed convolution with residual units."""
    from LesionXAILib.explain.cam import resolve_layer

    try:
        return resolve_layer(model, ANCHOR_CAM_LAYER)[0]
    except ParameterError:
        try:
            return resolve_layer(model, ANCHOR_CAM_LAYER_RESIDUAL)[0]
        except ParameterError:
            raise ParameterError(
                f"the anchor's CAM layer '{ANCHOR_CAM_LAYER}' does not exist in this network; give one with --cam-layer"
            ) from None
