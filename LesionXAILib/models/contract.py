"""A model's input contract: the array space its network was trained in, declared once in its config.

LesionXAI works everywhere in one canonical space: the FLAIR grid as SimpleITK gives it, arrays
indexed (k, j, i), channels in the model's ``input_order``, normalised by the model's
``normalization``. The contract says how that canonical array becomes the array the network was
trained on, and :class:`LesionXAILib.lesion_model.LesionModel` applies it inside ``forward`` (and
maps the output back), so every caller of the model honours it and gradients land on the FLAIR grid.

- ``axes``: which canonical axis each model array axis holds. ``"kji"`` is SimpleITK's order (LesionXAI's
  own models, nnU-Net without a transpose); ``"ijk"`` is nibabel's / MONAI ``LoadImage``'s order (the
  anchor study's models, MONAI pipelines). Any permutation of the three letters is allowed
  (nnU-Net's ``transpose_forward``).
- ``orientation``: ``"as-stored"`` keeps the file's voxel order; a three-letter code (``"RAS"``,
  ``"LPS"``, ...) reorients the voxel axes first as MONAI ``Orientationd(axcodes=...)`` does (flips and
  a permutation, chosen from the FLAIR's direction; never a resampling); ``axes`` then orders the
  reoriented i, j, k axes.
- ``target_spacing``: ``None`` runs on the FLAIR grid as is; three numbers (mm, per *model* axis)
  resample to that spacing with differentiable trilinear interpolation inside ``forward`` and the
  output back to the FLAIR grid, so gradients are taken through the resampling onto the FLAIR grid.
- ``size_divisor``: every model-space input size must be a multiple of it (``None``: the
  architecture's own, e.g. the product of a U-Net's strides; 32 for Swin UNETR).
- ``crop_rule``: whether lesion-centred crops may stand in for the whole volume in explanations.
  ``"exact"``: the network is a shift-equivariant convolution stack with batch norm (eval mode), so a
  crop computes exactly what the whole volume computes up to the receptive field the margin cuts
  off. ``"calibrate"``: the network's reach is long (shifted windows) or its normalisation looks at
  the whole input (instance norm), so a crop is only trusted with a margin measured for these
  weights (``lesionxai calibrate`` writes it into the config); without one, explanations run on the
  whole volume and say so. ``"whole-volume"``: never crop. A contract that resamples always explains
  on the whole volume (a crop is resampled on its own grid, which is not the whole volume's).
- ``resampling``: how the resampling is done. ``"trilinear"`` (torch, per window); ``"nnunet"`` and
  ``"monai"`` reproduce nnU-Net's and MONAI ``Spacing``'s/``Invertd``'s own resampling as exact
  differentiable operators (:mod:`LesionXAILib.models.resampling`) on the whole volume.
- ``crop_nonzero``: crop to the bounding box of the voxels non-zero in any channel before
  everything else, as nnU-Net's preprocessing does; outside it the output is background.

With ``resampling`` other than trilinear, or ``crop_nonzero``, the network runs in model space on
the whole volume: segmentation tiles the model-space volume with the format's own sliding window
and explanations differentiate the whole pipeline (crop, permutation, resampling, network,
resampling back) onto the FLAIR grid: the gradient is of the model as the format runs it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from LesionXAILib.errors import ModelLoadError

AXIS_ORDERS = ("kji", "ijk", "kij", "jki", "jik", "ikj")
CROP_RULES = ("exact", "calibrate", "whole-volume")
RESAMPLING_METHODS = ("trilinear", "nnunet", "monai")
_AXCODE_PAIRS = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}


def _valid_axcodes(code: str) -> bool:
    if len(code) != 3 or any(c not in _AXCODE_PAIRS for c in code):
        return False
    families = {frozenset((c, _AXCODE_PAIRS[c])) for c in code}
    return len(families) == 3


@dataclass(frozen=True)
class InputContract:
    """The array space a network was trained in (axis order, orientation, spacing, size rule, crop rule)."""

    axes: str = "kji"
    orientation: str = "as-stored"
    target_spacing: Optional[tuple[float, float, float]] = None
    size_divisor: Optional[int] = None
    crop_rule: str = "exact"
    resampling: str = "trilinear"
    crop_nonzero: bool = False

    def __post_init__(self) -> None:
        if self.axes not in AXIS_ORDERS:
            raise ModelLoadError(f"input contract: axes must be a permutation of 'kji' ({', '.join(AXIS_ORDERS)}), got '{self.axes}'")
        if self.orientation != "as-stored" and not _valid_axcodes(str(self.orientation).upper()):
            raise ModelLoadError(
                f"input contract: orientation must be 'as-stored' or an axis code such as 'RAS' or 'LPS', got '{self.orientation}'"
            )
        if self.orientation != "as-stored":
            object.__setattr__(self, "orientation", str(self.orientation).upper())
        if self.target_spacing is not None:
            spacing = tuple(float(v) for v in self.target_spacing)
            if len(spacing) != 3 or not all(v > 0 and v < float("inf") for v in spacing):
                raise ModelLoadError(f"input contract: target_spacing must be three positive mm values or null, got {self.target_spacing!r}")
            object.__setattr__(self, "target_spacing", spacing)
        if self.size_divisor is not None and not (isinstance(self.size_divisor, int) and self.size_divisor >= 1):
            raise ModelLoadError(f"input contract: size_divisor must be an integer >= 1 or null, got {self.size_divisor!r}")
        if self.resampling not in RESAMPLING_METHODS:
            raise ModelLoadError(f"input contract: resampling must be one of {RESAMPLING_METHODS}, got '{self.resampling}'")
        if not isinstance(self.crop_nonzero, bool):
            raise ModelLoadError(f"input contract: crop_nonzero must be true or false, got {self.crop_nonzero!r}")
        if self.crop_rule not in CROP_RULES:
            raise ModelLoadError(f"input contract: crop_rule must be one of {CROP_RULES}, got '{self.crop_rule}'")

    @property
    def needs_geometry(self) -> bool:
        """Return True if the mapping depends on the image's direction or spacing (reorientation, resampling)."""
        return self.orientation != "as-stored" or self.target_spacing is not None

    @property
    def whole_volume_model(self) -> bool:
        """Return True if the network runs on the whole (cropped, resampled) volume in model space, never on canonical windows."""
        return self.crop_nonzero or (self.resamples and self.resampling != "trilinear")

    @property
    def resamples(self) -> bool:
        """Return True if the network runs on a resampled grid."""
        return self.target_spacing is not None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        if d["target_spacing"] is not None:
            d["target_spacing"] = list(d["target_spacing"])
        return d

    @classmethod
    def from_dict(cls, data: Optional[dict[str, Any]]) -> "InputContract":
        """Return a contract from a dict (as written by :meth:`to_dict`); None gives the default (SimpleITK order, as stored)."""
        if data is None:
            return cls()
        if isinstance(data, InputContract):
            return data
        if not isinstance(data, dict):
            raise ModelLoadError(f"input contract must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelLoadError(f"input contract: unknown keys {unknown} (known: {sorted(known)})")
        kwargs = dict(data)
        if kwargs.get("target_spacing") is not None:
            kwargs["target_spacing"] = tuple(kwargs["target_spacing"])
        return cls(**kwargs)


def whole_volume_reason(config: Any, aggregation: str, margin_chosen: bool) -> Optional[str]:
    """Return why explanations of ``config``'s model must run on the whole volume, or None if crops may be used.

    A resampling contract never crops (a crop resampled on its own grid is not the whole volume's);
    ``crop_rule='whole-volume'`` never crops; ``crop_rule='calibrate'`` crops only with a margin the user
    chose or one calibrated for these weights (``explain_margin_mm`` / ``explain_voxel_margin_mm``).
    """
    contract = config.contract
    name = getattr(config, "name", "model")
    if contract.crop_nonzero and not contract.resamples:
        return f"model '{name}' crops its input to the non-zero box: explaining on the whole volume (crops are not exact)"
    if contract.resamples:
        return f"model '{name}' resamples its input to {list(contract.target_spacing)} mm: explaining on the whole volume (crops are not exact)"
    if contract.crop_rule == "whole-volume":
        return f"model '{name}' declares crop_rule 'whole-volume': explaining on the whole volume"
    if contract.crop_rule == "calibrate" and not margin_chosen:
        key = "explain_voxel_margin_mm" if aggregation == "max" else "explain_margin_mm"
        if getattr(config, key, None) is None:
            return (
                f"model '{name}' needs a crop margin measured for its weights (its reach is long or its normalisation reads the "
                f"whole input) and has none: explaining on the whole volume (run `lesionxai calibrate`, or give --margin-mm)"
            )
    return None


_warned: set = set()


def crop_forbidden(config: Any, aggregation: str, margin_chosen: bool) -> bool:
    """Return True (after a one-time warning naming the reason) if explanations of ``config``'s model must use the whole volume."""
    reason = whole_volume_reason(config, aggregation, margin_chosen)
    if reason is not None and reason not in _warned:
        _warned.add(reason)
        logging.getLogger("LesionXAILib.explain").warning(reason)
    return reason is not None


def apply_crop_rule(settings: Any, config: Any) -> Any:
    """Return ExplainSettings with ``full_volume=True`` (and a one-time warning) when the model's contract forbids crops."""
    if settings.full_volume or not crop_forbidden(config, settings.aggregation, settings.roi_margin_mm is not None):
        return settings
    return settings.replace(full_volume=True)
