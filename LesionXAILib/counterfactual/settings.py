"""Settings of the per-lesion counterfactual search (what may change, how far, how fast), checked on creation."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Optional

from LesionXAILib.errors import ParameterError

MODES = ("auto", "remove", "add")
CHANGES = ("both", "warp", "intensity")
CHECKS = ("crop", "whole")
# Crop margins (mm beyond the region that may change). The optimisation margin only has to keep the
# network's output on the lesion close to the whole-volume one while searching; every result is then
# re-segmented on a wider crop (the context probe's measured receptive margin for the demo model:
# float32 round-off from 24 mm on) or on the whole volume, which decides whether it counts.
DEFAULT_MARGIN_MM = 16.0
DEFAULT_CHECK_MARGIN_MM = 24.0


@dataclass(frozen=True)
class CounterfactualSettings:
    """How one lesion's counterfactual is searched; every length is in mm, intensities in normalised units.

    ``mode``: 'remove' (the lesion is detected; find a change that makes the model miss it), 'add'
    (a missed ground-truth lesion; find a change that makes the model find it) or 'auto' (remove for
    predicted/TP/FP instances, add for FN). ``change``: a smooth invertible warp ('warp'), a smooth
    additive intensity change ('intensity') or both. Both are zero beyond ``reach_mm`` of the lesion's
    bounding box. ``control_spacing_mm``: spacing of the coarse control grid that carries them.
    ``step_mm``: the largest control-point change per iteration (intensity control points move at
    most ``step_mm * intensity_per_mm``). ``displacement_weight`` / ``intensity_weight`` /
    ``roughness_weight``: penalties on the squared size of the change and of its control-grid
    differences; ``target_growth``: the factor the target term grows by per iteration (so that the
    penalties cannot hold the search in an equilibrium short of the flip). ``margin_mm=None`` takes
    the model's calibrated explanation margin, else DEFAULT_MARGIN_MM. ``check``: re-segment the
    result on a crop reaching ``check_margin_mm`` beyond the changed region, or on the whole volume.
    """

    mode: str = "auto"
    change: str = "both"
    max_iter: int = 60
    step_mm: float = 0.5
    intensity_per_mm: float = 0.5
    reach_mm: float = 6.0
    control_spacing_mm: float = 3.0
    displacement_weight: float = 0.02
    intensity_weight: float = 0.02
    roughness_weight: float = 0.05
    target_growth: float = 1.1
    logit_margin: float = 0.5
    squaring_steps: int = 6
    refine_steps: int = 4
    confirm_retries: int = 3
    margin_mm: Optional[float] = None
    check: str = "crop"
    check_margin_mm: float = DEFAULT_CHECK_MARGIN_MM
    near_mm: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(f"counterfactual mode must be one of {MODES}, got '{self.mode}'")
        if self.change not in CHANGES:
            raise ParameterError(f"counterfactual change must be one of {CHANGES}, got '{self.change}'")
        if self.check not in CHECKS:
            raise ParameterError(f"re-segmentation check must be one of {CHECKS}, got '{self.check}'")
        _positive_int("maximum iterations", self.max_iter, 1, 100_000)
        _positive_int("squaring steps", self.squaring_steps, 1, 16)
        _positive_int("refinement steps", self.refine_steps, 0, 50)
        _positive_int("confirmation retries", self.confirm_retries, 0, 50)
        for name, value, lo_open in (
            ("step", self.step_mm, True), ("intensity per mm", self.intensity_per_mm, False),
            ("reach", self.reach_mm, False), ("control spacing", self.control_spacing_mm, True),
            ("displacement weight", self.displacement_weight, False), ("intensity weight", self.intensity_weight, False),
            ("roughness weight", self.roughness_weight, False), ("logit margin", self.logit_margin, False),
            ("check margin", self.check_margin_mm, False), ("near distance", self.near_mm, False),
        ):  # fmt: skip
            _finite_at_least(name, value, open_lo=lo_open)
        if self.margin_mm is not None:
            _finite_at_least("crop margin", self.margin_mm)
        if not (math.isfinite(self.target_growth) and 1.0 <= self.target_growth <= 10.0):
            raise ParameterError(f"target growth per iteration must be in [1, 10], got {self.target_growth}")
        if self.change == "intensity" and self.intensity_per_mm == 0:
            raise ParameterError("an intensity-only counterfactual needs intensity per mm > 0")
        if not 0 <= int(self.seed) < 2**32:
            raise ParameterError(f"seed must be in [0, 2^32), got {self.seed}")

    @property
    def warps(self) -> bool:
        """Return True if the displacement field may change."""
        return self.change in ("both", "warp")

    @property
    def changes_intensity(self) -> bool:
        """Return True if the additive intensity field may change."""
        return self.change in ("both", "intensity") and self.intensity_per_mm > 0

    def replace(self, **changes: Any) -> "CounterfactualSettings":
        """Return a copy with ``changes`` applied (checked again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def _positive_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or int(value) != value or not lo <= int(value) <= hi:
        raise ParameterError(f"{name} must be a whole number in [{lo}, {hi}], got {value}")


def _finite_at_least(name: str, value: float, open_lo: bool = False) -> None:
    v = float(value)
    if not math.isfinite(v) or v < 0 or (open_lo and v == 0):
        raise ParameterError(f"{name} must be a finite number {'>' if open_lo else '>='} 0, got {value}")
