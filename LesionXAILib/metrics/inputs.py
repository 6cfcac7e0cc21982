"""What every metric of one instance works on: the explainer's own lesion crop, target and attribution.

The crop is the one the explainers evaluate the instance on (``explain.region.explain_box`` with the
explanation's ROI margin, or the whole volume with ``full_volume``), so a metric perturbs and
re-evaluates the network exactly where the explanation was computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.api import check_image, sequence_names
from LesionXAILib.explain.crop_inputs import CropInputs
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.model_state import check_model
from LesionXAILib.explain.region import auto_batch_size, explain_box, explain_crop
from LesionXAILib.explain.registry import method_spec
from LesionXAILib.explain.settings import ExplainSettings
from LesionXAILib.explain.smoothgrad import noise_sigma
from LesionXAILib.explain.targets import InstanceTarget, as_target
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.crop import CropBox
from LesionXAILib.vocabulary import map_keys


@dataclass
class InstanceInputs:
    """One instance ready for the metrics: full image, target, explainer settings and the crop they use."""

    model: LesionModel
    image: np.ndarray  # (C, k, j, i) normalised, full grid
    target: InstanceTarget
    geometry: Geometry
    settings: ExplainSettings
    crop: CropInputs  # image crop on the model's device/dtype + the instance mask (K = 1)

    @property
    def box(self) -> CropBox:
        """Return the crop box on the input grid."""
        return self.crop.box

    @property
    def sequences(self) -> tuple[str, ...]:
        """Return the lower-case input sequence names (map key suffixes)."""
        return sequence_names(self.model)

    @property
    def score_aggregation(self) -> str:
        """Return the scalar target S re-evaluated by the metrics: sum or mean (max falls back to sum, as CAMs do)."""
        return "mean" if self.target.aggregation == "mean" else "sum"

    def flair_range_sigma(self, fraction: float) -> np.ndarray:
        """Return per-channel sizes ``fraction`` x (max - min) of the normalised FLAIR (as SmoothGrad's sigma)."""
        return noise_sigma(self.image, fraction, per_channel=False)

    def batch_size(self, requested: Optional[int]) -> int:
        """Return the number of crops per network call (``requested`` or from the crop size)."""
        return int(requested or self.settings.batch_size or auto_batch_size(self.box))

    def inner_mask(self) -> np.ndarray:
        """Return the crop-shaped boolean mask of voxels holding image data (not padding)."""
        m = np.zeros(self.box.shape, dtype=bool)
        m[self.box.inner] = True
        return m

    def lesion_crop(self) -> np.ndarray:
        """Return the crop-shaped boolean lesion mask."""
        return self.crop.masks[0].cpu().numpy().astype(bool)

    def with_image(self, crop_image: torch.Tensor) -> CropInputs:
        """Return CropInputs for another (C, *crop) image on the same crop and target."""
        return self.crop.with_image(crop_image)

    def full_image_with(self, crop_image: torch.Tensor) -> np.ndarray:
        """Return the full-grid image with the crop's image part replaced by ``crop_image``."""
        full = np.array(self.image, copy=True)
        c = crop_image.detach().cpu().numpy().astype(full.dtype, copy=False)
        full[(slice(None),) + self.box.slices] = c[(slice(None),) + self.box.inner]
        return full

    def attribution(self, explanation: Explanation, method: str) -> torch.Tensor:
        """Return Phi of ``method`` as a (C, *crop) tensor: one map per sequence, or a per-instance map repeated on every channel."""
        if not method_spec(method).per_sequence:
            if method not in explanation.maps:
                raise ParameterError(f"explanation has no '{method}' map (maps: {sorted(explanation.maps)})")
            cam = self.box.extract(np.asarray(explanation.maps[method]), 0.0)
            arr = np.repeat(cam[None], self.image.shape[0], axis=0)
        else:
            keys = map_keys(method, self.sequences)
            missing = [k for k in keys if k not in explanation.maps]
            if missing:
                raise ParameterError(f"explanation has no {missing} map(s) (maps: {sorted(explanation.maps)})")
            arr = np.stack([self.box.extract(np.asarray(explanation.maps[k]), 0.0) for k in keys])
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.crop.image.device, torch.float64)


def instance_inputs(
    model: LesionModel,
    normalized: np.ndarray,
    target: InstanceTarget | np.ndarray,
    geometry: Geometry,
    settings: ExplainSettings = ExplainSettings(),
) -> InstanceInputs:
    """Return the InstanceInputs of one target, cropped as the explainers crop it under ``settings``."""
    model = check_model(model)
    settings = settings.resolved(model)
    image = check_image(model, normalized, geometry)
    t = as_target(target, image.shape[1:], settings.aggregation)
    box = explain_box(t.mask, geometry.spacing_kji, settings.roi_margin_mm, model.size_divisor, settings.full_volume)
    crop = explain_crop(model, image, [t.mask], box, t.aggregation, settings.roi_margin_mm, geometry.spacing_kji, settings.full_volume)
    return InstanceInputs(model, image, t, geometry, settings, crop)


def explanation_methods(explanation: Explanation) -> tuple[str, ...]:
    """Return the methods an explanation holds maps for, in its settings' order."""
    return tuple(explanation.settings.methods)
