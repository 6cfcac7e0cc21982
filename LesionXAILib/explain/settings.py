"""ExplainSettings: which explainers to run on which target, and how (noise, ROI margin, batching)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.registry import available_methods, find_spec, method_default

AGGREGATIONS = ("sum", "mean", "max")


def __getattr__(name: str) -> tuple[str, ...]:
    """Return METHODS / GRADIENT_METHODS, read from the explainer registry when asked (it may have grown)."""
    if name == "METHODS":
        return available_methods()
    if name == "GRADIENT_METHODS":
        return tuple(m for m in available_methods() if find_spec(m).per_sequence)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _registered(method: str, option: str) -> Any:
    """Return a dataclass field whose default is the explainer registry's (the one source of truth of method defaults)."""
    return field(default_factory=lambda: method_default(method, option))

# The demo model's measured crop margins (docs/methods.md#crop-fidelity; the measurements: benchmarks/explain_margin_fidelity.py).
DEFAULT_ROI_MARGIN_MM = 12.0
# The same, around each lesion voxel for max aggregation (explain/windows.py).
DEFAULT_MAX_ROI_MARGIN_MM = 10.0
# Perilesional ring of the statistics (docs/methods.md#statistics), in mm from the lesion.
DEFAULT_RING_MM = (1.0, 3.0)


@dataclass(frozen=True)
class ExplainSettings:
    """Settings of one explanation run; every field has the anchor study's value or a measured default.

    The methods' own defaults (samples, noise, seed, integrated-gradient steps) are the explainer
    registry's (:func:`LesionXAILib.explain.registry.method_default`), written once in each method's file.

    ``noise_level``: SmoothGrad sigma as a fraction of the (max - min) range of the normalised FLAIR
    (``noise_per_channel=True``: of each channel's own range). ``roi_margin_mm``: margin around each
    lesion (sum/mean) or each lesion voxel (max) of the crop the network is evaluated on; None (the
    default) takes the model's calibrated margin, else its auto-calibrated one, else the whole volume;
    :meth:`resolved` fixes it for a model. ``full_volume=True`` evaluates the whole volume (the
    reference). ``fidelity_check`` checks each lesion's crop against a wider one before explaining it and
    widens the margin (or takes the whole volume) below the rule (:mod:`LesionXAILib.explain.fidelity`);
    off, the figures come from the model's calibration only. ``batch_size=None`` picks the number of network copies per pass from the crop size.
    """

    methods: tuple[str, ...] = ("smoothgrad", "gradcampp")
    aggregation: str = "sum"
    samples: int = _registered("smoothgrad", "samples")
    noise_level: float = _registered("smoothgrad", "noise_level")
    noise_per_channel: bool = _registered("smoothgrad", "noise_per_channel")
    seed: int = _registered("smoothgrad", "seed")
    ig_steps: int = _registered("integrated_gradients", "ig_steps")
    roi_margin_mm: Optional[float] = None
    full_volume: bool = False
    cam_layer: Optional[str] = None
    batch_size: Optional[int] = None
    ring_mm: tuple[float, float] = DEFAULT_RING_MM
    fidelity_check: bool = True

    def __post_init__(self) -> None:
        methods = (self.methods,) if isinstance(self.methods, str) else tuple(self.methods)
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "ring_mm", tuple(float(v) for v in self.ring_mm))
        self.validate()

    def validate(self) -> None:
        """Raise ParameterError naming the first invalid field."""
        if not self.methods:
            raise ParameterError("no explanation method selected")
        unknown = [m for m in self.methods if find_spec(m) is None]
        if unknown:
            raise ParameterError(f"unknown explanation method(s) {unknown}; choose from {', '.join(available_methods())}")
        if len(set(self.methods)) != len(self.methods):
            raise ParameterError(f"explanation methods listed twice: {list(self.methods)}")
        if self.aggregation not in AGGREGATIONS:
            raise ParameterError(f"aggregation must be one of {AGGREGATIONS}, got '{self.aggregation}'")
        if int(self.samples) < 1:
            raise ParameterError(f"samples must be >= 1, got {self.samples}")
        if not self.noise_level >= 0:
            raise ParameterError(f"noise level must be >= 0, got {self.noise_level}")
        if int(self.seed) < 0:
            raise ParameterError(f"seed must be >= 0, got {self.seed}")
        if int(self.ig_steps) < 1:
            raise ParameterError(f"integrated-gradients steps must be >= 1, got {self.ig_steps}")
        if self.roi_margin_mm is not None and not self.roi_margin_mm >= 0:
            raise ParameterError(f"ROI margin must be >= 0 mm, got {self.roi_margin_mm}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}")
        lo, hi = self.ring_mm if len(self.ring_mm) == 2 else (None, None)
        if lo is None or not 0 <= lo <= hi:
            raise ParameterError(f"ring must be (inner, outer) mm with 0 <= inner <= outer, got {self.ring_mm}")

    @property
    def gradient_methods(self) -> tuple[str, ...]:
        """Return the selected methods that produce one map per input sequence."""
        return tuple(m for m in self.methods if find_spec(m).per_sequence)

    @property
    def cam_methods(self) -> tuple[str, ...]:
        """Return the selected methods explained at a network layer (class activation maps, one map per instance)."""
        return tuple(m for m in self.methods if find_spec(m).uses_layer)

    def replace(self, **changes: Any) -> "ExplainSettings":
        """Return a copy with some fields changed (validated)."""
        return replace(self, **changes)

    def resolved(self, model: Any) -> "ExplainSettings":
        """Return these settings with the margin ``model`` gets fixed: its calibrated or auto-calibrated one.

        Whole volume where the model's contract says so (resampling, uncalibrated long-reach models), and for a
        model with no calibration (and no auto-calibration yet, see :mod:`LesionXAILib.explain.fidelity`) or
        whose calibration found no passing margin: no margin is assumed.
        """
        from LesionXAILib.models.contract import apply_crop_rule

        settings = apply_crop_rule(self, model.config)
        if settings.roi_margin_mm is not None or settings.full_volume:
            return settings
        from LesionXAILib.explain.fidelity import model_margin

        margin = model_margin(model, settings.aggregation)[0]
        if margin is None:
            return replace(settings, full_volume=True)
        return replace(settings, roi_margin_mm=margin)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return json.loads(json.dumps(asdict(self)))


def resolve_margin(margin_mm: Optional[float], config: Any, aggregation: str) -> tuple[Optional[float], str]:
    """Return (margin in mm, where it comes from): the given one or the model config's calibrated one.

    None (with "uncalibrated") when neither: the caller auto-calibrates (:mod:`LesionXAILib.explain.fidelity`)
    or explains on the whole volume, never on an assumed margin.
    """
    if margin_mm is not None:
        return float(margin_mm), "chosen"
    calibrated = getattr(config, "explain_voxel_margin_mm" if aggregation == "max" else "explain_margin_mm", None)
    if calibrated is not None:
        return float(calibrated), f"calibrated for model '{config.name}'"
    return None, "uncalibrated (whole volume)"


def default_margin_mm(aggregation: str) -> float:
    """Return the margin in mm measured on the demo model (the starting point of `lesionxai calibrate` curves)."""
    if aggregation not in AGGREGATIONS:
        raise ParameterError(f"aggregation must be one of {AGGREGATIONS}, got '{aggregation}'")
    return DEFAULT_MAX_ROI_MARGIN_MM if aggregation == "max" else DEFAULT_ROI_MARGIN_MM
