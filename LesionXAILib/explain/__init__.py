"""Instance-level explainers of a lesion segmenter (science.md sections 2-3).

``explain_instance`` / ``explain_instances`` run the selected methods for lesion instances and
return :class:`Explanation` objects; ``Gradient``, ``SmoothGrad``, ``IntegratedGradients``,
``GradCAM`` and ``GradCAMpp`` are Captum-style classes (``Method(model).attribute(inputs, target)``),
each registered in :mod:`LesionXAILib.explain.registry` (``available_methods``, ``method_spec``);
``calibrate_margin`` measures the crop margin a model's explanations need (``calibrated_config`` keeps it).
"""

from LesionXAILib.explain.api import explain_instance, explain_instances, instance_targets, iter_explanations
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.methods.base import Region
from LesionXAILib.explain.methods.gradcam import GradCAM, GradCAMpp
from LesionXAILib.explain.methods.gradient import Gradient
from LesionXAILib.explain.methods.integrated_gradients import IntegratedGradients, IntegratedGradientsSettings
from LesionXAILib.explain.methods.smoothgrad import SmoothGrad, SmoothGradSettings
from LesionXAILib.explain.margin_calibration import MarginCalibration, calibrate_margin, calibrated_config
from LesionXAILib.explain.registry import MethodSpec, available_methods, method_spec, method_title, register
from LesionXAILib.explain.settings import (
    AGGREGATIONS,
    DEFAULT_MAX_ROI_MARGIN_MM,
    DEFAULT_ROI_MARGIN_MM,
    ExplainSettings,
    default_margin_mm,
    resolve_margin,
)
from LesionXAILib.explain.targets import InstanceTarget, instance_target, missed_lesion_targets



def __getattr__(name: str) -> tuple[str, ...]:
    """Return METHODS: the registered method names, read when asked (the registry may have grown)."""
    if name == "METHODS":
        return available_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AGGREGATIONS",
    "DEFAULT_MAX_ROI_MARGIN_MM",
    "DEFAULT_ROI_MARGIN_MM",
    "ExplainSettings",
    "Explanation",
    "GradCAM",
    "GradCAMpp",
    "Gradient",
    "InstanceTarget",
    "IntegratedGradients",
    "MarginCalibration",
    "MethodSpec",
    "Region",
    "SmoothGrad",
    "SmoothGradSettings",
    "IntegratedGradientsSettings",
    "available_methods",
    "calibrate_margin",
    "calibrated_config",
    "default_margin_mm",
    "explain_instance",
    "explain_instances",
    "instance_target",
    "instance_targets",
    "iter_explanations",
    "method_spec",
    "method_title",
    "missed_lesion_targets",
    "register",
    "resolve_margin",
]
