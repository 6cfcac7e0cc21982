"""Network configurations: which network, how to read lesion logits from it, the input contract it was trained with; presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.models.contract import InputContract

HEADS = ("sigmoid", "softmax")
# config keys that calibrating a model sets: measured for the weights, not part of what the network is
MARGIN_KEYS = ("explain_margin_mm", "explain_voxel_margin_mm")


@dataclass(frozen=True)
class ModelConfig:
    """A network (``network``: a MONAI ``UNet`` by default) plus how to read lesion logits from it and how it expects its inputs.

    The input contract is declared here once and honoured by every caller through
    :class:`LesionXAILib.lesion_model.LesionModel`: ``input_order`` (channel names, in network
    order), ``normalization`` (:mod:`LesionXAILib.normalization`), ``head`` / ``lesion_index`` (output
    activation and lesion channel), ``roi_size`` / ``overlap`` (sliding window, in the model's axis
    order), ``threshold`` and ``contract`` (axis order, orientation, target spacing, size divisor and
    crop rule: :class:`LesionXAILib.models.contract.InputContract`). A config without a contract
    (every checkpoint written before it existed) gets the default: SimpleITK order (k, j, i) as stored.
    ``network``: ``unet`` (the U-Net fields below), ``dynunet`` or ``swin-unetr`` (keyword arguments
    in ``architecture``), or the name of a format whose network comes with the model file.

    ``head='sigmoid'``: one output channel, probability = sigmoid(logit).
    ``head='softmax'``: >= 2 channels, probability = softmax(...)[lesion_index]; the instance
    target uses the lesion channel's logit before the softmax (docs/methods.md#instance-target).
    ``explain_margin_mm`` / ``explain_voxel_margin_mm``: the explainers' crop margin around a lesion
    (sum/mean targets) and around each lesion voxel (max), as measured for these weights by
    :mod:`LesionXAILib.explain.margin_calibration`; None uses the measured defaults of ExplainSettings.
    """

    name: str = "custom"
    spatial_dims: int = 3
    in_channels: int = 2
    out_channels: int = 1
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    norm: str = "batch"
    act: str = "PRELU"
    dropout: float = 0.0
    head: str = "sigmoid"
    lesion_index: int = 0
    input_order: tuple[str, ...] = ("FLAIR", "MPRAGE")
    normalization: str = "zscore-nonzero"
    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.25
    threshold: float = 0.5
    cam_layer: Optional[str] = None
    # explanation margins measured for these weights (`lesionxai calibrate`); None: LesionXAI's default
    explain_margin_mm: Optional[float] = None
    explain_voxel_margin_mm: Optional[float] = None
    network: str = "unet"
    architecture: dict = field(default_factory=dict, hash=False)
    contract: InputContract = field(default_factory=InputContract)
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ModelLoadError(f"model config '{self.name}': head must be one of {HEADS}, got '{self.head}'")
        if self.head == "sigmoid" and self.out_channels != 1:
            raise ModelLoadError(
                f"model config '{self.name}': a sigmoid head needs out_channels=1, got {self.out_channels}"
            )
        if self.head == "softmax" and self.out_channels < 2:
            raise ModelLoadError(f"model config '{self.name}': a softmax head needs out_channels >= 2")
        if not 0 <= self.lesion_index < self.out_channels:
            raise ModelLoadError(
                f"model config '{self.name}': lesion_index {self.lesion_index} outside 0..{self.out_channels - 1}"
            )
        if not isinstance(self.contract, InputContract):
            object.__setattr__(self, "contract", InputContract.from_dict(self.contract))
        if not isinstance(self.architecture, dict):
            raise ModelLoadError(f"model config '{self.name}': architecture must be a JSON object of network arguments")
        if self.network == "unet" and len(self.strides) != len(self.channels) - 1:
            raise ModelLoadError(
                f"model config '{self.name}': needs len(strides) == len(channels) - 1 "
                f"({len(self.strides)} vs {len(self.channels)})"
            )
        for key in MARGIN_KEYS:
            value = getattr(self, key)
            if value is not None and not (isinstance(value, (int, float)) and value >= 0):
                raise ModelLoadError(f"model config '{self.name}': {key} must be a margin >= 0 mm or null, got {value!r}")
        if self.in_channels != len(self.input_order):
            raise ModelLoadError(
                f"model config '{self.name}': in_channels={self.in_channels} but input_order lists "
                f"{len(self.input_order)} sequences"
            )

    @property
    def size_divisor(self) -> int:
        """Return the factor every model-space input size must be a multiple of (the contract's, else the network's)."""
        if self.contract.size_divisor is not None:
            return int(self.contract.size_divisor)
        from LesionXAILib.models.architectures import default_size_divisor

        return default_size_divisor(self)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Return a config from a dict (as written by :meth:`to_dict`); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"model config: unknown keys {unknown}")
        kwargs = dict(data)
        for key in ("channels", "strides", "input_order", "roi_size"):
            if key in kwargs and kwargs[key] is not None:
                kwargs[key] = tuple(kwargs[key])
        if "contract" in kwargs:
            kwargs["contract"] = InputContract.from_dict(kwargs["contract"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "ModelConfig":
        """Return a copy with some fields changed."""
        d = self.to_dict()
        if isinstance(changes.get("contract"), InputContract):
            changes = {**changes, "contract": changes["contract"].to_dict()}
        d.update(changes)
        return ModelConfig.from_dict(d)


# The anchor study's pipeline (federicospagnolo/IES): MONAI LoadImaged (nibabel, arrays i, j, k as stored,
# no reorientation, no resampling), NormalizeIntensityd(nonzero=True, channel_wise=True), FLAIR then MPRAGE.
ANCHOR_CONTRACT = InputContract(axes="ijk", orientation="as-stored")
# Shifted windows (Swin) reach far and instance norm (DynUNet, Swin's decoder) reads the whole input:
# their crop margin must be measured for the weights (`lesionxai calibrate`), never assumed.
ANCHOR_CALIBRATED_CONTRACT = InputContract(axes="ijk", orientation="as-stored", crop_rule="calibrate")

PRESETS: dict[str, ModelConfig] = {
    # The anchor study's network (Spagnolo et al. 2024, federicospagnolo/IES), saved inside DataParallel.
    # Threshold 0.3: the anchor's README runs the U-Net at 0.3 (0.4 for nnU-Net and Swin UNETR).
    "ies-unet": ModelConfig(
        name="ies-unet",
        out_channels=2,
        channels=(32, 64, 128, 256, 512),
        strides=(2, 2, 2, 2),
        num_res_units=0,
        norm="batch",
        head="softmax",
        lesion_index=1,
        threshold=0.3,
        contract=ANCHOR_CONTRACT,
    ),
    # The anchor's "nn-unet" (ies_maxpool_nets.py): an nnU-Net-style MONAI DynUNet, plain state dict.
    # Grad-CAM layer: the first decoder block (half resolution), as for the U-Net.
    "dynunet": ModelConfig(
        name="dynunet",
        out_channels=2,
        head="softmax",
        lesion_index=1,
        threshold=0.4,
        network="dynunet",
        architecture={
            "kernel_size": [3, 3, 3],
            "strides": [1, 2, 2],
            "upsample_kernel_size": [2, 2],
            "filters": [16, 32, 64],
            "dropout": 0.1,
            "res_block": True,
            "norm_name": "instance",
            "act_name": "leakyrelu",
        },
        cam_layer="upsamples.0",
        contract=ANCHOR_CALIBRATED_CONTRACT,
    ),
    # The anchor's Swin UNETR (MONAI SwinUNETR defaults, feature size 24), inputs multiples of 32.
    # Grad-CAM layer: decoder2, the half-resolution decoder block.
    "swin-unetr": ModelConfig(
        name="swin-unetr",
        out_channels=2,
        head="softmax",
        lesion_index=1,
        threshold=0.4,
        network="swin-unetr",
        architecture={"feature_size": 24},
        cam_layer="decoder2",
        contract=InputContract(axes="ijk", orientation="as-stored", size_divisor=32, crop_rule="calibrate"),
    ),
    # The shipped demo segmenter (Resources/models), trained on phantoms by `lesionxai train`.
    "lesionxai-demo": ModelConfig(
        name="lesionxai-demo",
        channels=(16, 32, 64, 128),
        strides=(2, 2, 2),
        num_res_units=1,
        norm="batch",
        head="sigmoid",
        threshold=0.5,
    ),
    # An interpretable-by-design segmenter (Lazendic et al. 2022): unfolded ISTA over learned convolutional
    # dictionaries, per-sequence first layer, merged joint layers (LesionXAILib/models/mlcsc.py).
    "mlcsc": ModelConfig(
        name="mlcsc",
        head="sigmoid",
        threshold=0.5,
        network="mlcsc",
        architecture={"atoms": [8, 16, 32], "kernel_size": 3, "iterations": 2, "hidden": 16},
        roi_size=(96, 96, 96),
    ),
    # A few-thousand-parameter network to check that training runs end to end (tests, smoke runs).
    "tiny": ModelConfig(name="tiny", channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm="batch"),
}


def get_config(name_or_path: str | Path) -> ModelConfig:
    """Return a preset config by name, or one read from a JSON file path."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    p = Path(key)
    if p.suffix.lower() == ".json":
        if not p.exists():
            raise ModelLoadError(f"model config file '{p}' not found")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"model config file '{p}': invalid JSON ({exc})") from None
        return ModelConfig.from_dict(data)
    raise ModelLoadError(f"unknown model config '{key}' (known presets: {', '.join(sorted(PRESETS))}; or a .json file)")
