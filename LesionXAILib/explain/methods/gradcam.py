"""Grad-CAM and its Grad-CAM++ variants at a named layer: thin registry entries calling explain/cam.py.

The variants' formulas, names and titles live in :mod:`LesionXAILib.explain.cam_variants` and
:mod:`LesionXAILib.cam_methods` (measured and tuned there); this file only registers each of them. They are
one family: one backward pass to the layer serves every variant, and the layer's whole-volume activations
are shared by every instance of a subject.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from LesionXAILib.cam_methods import CAM_LABELS
from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.methods.base import BatchContext, Explainer, Region
from LesionXAILib.explain.registry import MethodSpec, register
from LesionXAILib.vocabulary import CAM_UNIT

if TYPE_CHECKING:
    import numpy as np
    import torch

    from LesionXAILib.explain.targets import InstanceTarget
    from LesionXAILib.lesion_model import LesionModel


class LayerCAM(Explainer):
    """A CAM variant at a named layer (default: the documented one of a MONAI UNet, see explain/cam.py)."""

    method = ""

    def __init__(self, model: LesionModel, layer: Optional[str] = None, method: Optional[str] = None) -> None:
        from LesionXAILib.explain.cam import resolve_layer

        super().__init__(model)
        self.layer = resolve_layer(self.model, layer)[0]
        if method is not None:
            if method not in CAM_LABELS:
                raise ParameterError(f"unknown CAM method '{method}'; choose from {', '.join(CAM_LABELS)}")
            self.method = method

    def attribute(self, inputs: np.ndarray | torch.Tensor, target: InstanceTarget | np.ndarray | torch.Tensor,
                  settings: None = None, region: Optional[Region] = None, **overrides: object) -> torch.Tensor:  # fmt: skip
        """Return the (k, j, i) map on the input grid (ROI mode adds one gradient-free whole-volume pass)."""
        return self._attribute_one(self.method, inputs, target, settings, region, overrides, layer=self.layer)

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Return {variant: (K, k, j, i)} full-grid CAMs of the K targets, one backward pass for all variants."""
        from LesionXAILib.explain.cam import cam_maps

        return cam_maps(ctx.model, ctx.crop, tuple(names), ctx.layer, ctx.aggregation, ctx.layer_activations, ctx.image)


class GradCAM(LayerCAM):
    """Grad-CAM at a named layer (default: the documented layer of a MONAI UNet)."""

    method = "gradcam"


class GradCAMpp(LayerCAM):
    """Grad-CAM++ at a named layer: the measured default variant, or ``method`` ('gradcampp_paper', 'gradcampp_anchor', ...)."""

    method = "gradcampp"


for _order, (_name, _title) in enumerate(CAM_LABELS.items()):
    register(MethodSpec(
        name=_name, title=_title, unit=CAM_UNIT, per_sequence=False, cls=LayerCAM, family="cam", non_negative=True,
        uses_layer=True, options=("cam_layer",), order=40 + _order,
        description="ReLU of the layer's activations weighted by the instance's gradients (explain/cam_variants.py)",
    ))  # fmt: skip
