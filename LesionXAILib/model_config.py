"""Network configurations: a small dataclass describing a MONAI 3D U-Net and its output head, plus presets."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.errors import ModelLoadError

HEADS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class ModelConfig:
    """A MONAI ``UNet`` plus how to read lesion logits from it and how it expects its inputs.

    ``head='sigmoid'``: one output channel, probability = sigmoid(logit).
    ``head='softmax'``: >= 2 channels, probability = softmax(...)[lesion_index]; the instance
    target uses the lesion channel's logit before the softmax (science.md section 2).
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
        if len(self.strides) != len(self.channels) - 1:
            raise ModelLoadError(
                f"model config '{self.name}': needs len(strides) == len(channels) - 1 "
                f"({len(self.strides)} vs {len(self.channels)})"
            )
        for key in ("explain_margin_mm", "explain_voxel_margin_mm"):
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
        """Return the factor every spatial input size must be a multiple of (product of strides)."""
        d = 1
        for s in self.strides:
            d *= int(s)
        return d

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
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "ModelConfig":
        """Return a copy with some fields changed."""
        d = asdict(self)
        d.update(changes)
        return ModelConfig.from_dict(d)


PRESETS: dict[str, ModelConfig] = {
    # The anchor study's network (Spagnolo et al. 2024, federicospagnolo/IES), saved inside DataParallel.
    "ies-unet": ModelConfig(
        name="ies-unet",
        out_channels=2,
        channels=(32, 64, 128, 256, 512),
        strides=(2, 2, 2, 2),
        num_res_units=0,
        norm="batch",
        head="softmax",
        lesion_index=1,
        threshold=0.4,
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
