"""Instance-level explainers of a lesion segmenter (docs/methods.md#instance-target, #explainers).

``explain_instance`` / ``explain_instances`` run the selected methods for lesion instances and
return :class:`Explanation` objects; ``Gradient``, ``SmoothGrad``, ``IntegratedGradients``,
``GradCAM`` and ``GradCAMpp`` are Captum-style classes (``Method(model).attribute(inputs, target)``);
``calibrate_margin`` measures the crop margin a model's explanations need (``calibrated_config`` keeps it).
"""

from LesionXAILib.explain.api import explain_instance, explain_instances, instance_targets, iter_explanations
from LesionXAILib.explain.attribution import GradCAM, GradCAMpp, Gradient, IntegratedGradients, SmoothGrad
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.margin_calibration import MarginCalibration, calibrate_margin, calibrated_config
from LesionXAILib.explain.settings import (
    AGGREGATIONS,
    DEFAULT_MAX_ROI_MARGIN_MM,
    DEFAULT_ROI_MARGIN_MM,
    METHODS,
    ExplainSettings,
    default_margin_mm,
    resolve_margin,
)
from LesionXAILib.explain.targets import InstanceTarget, instance_target, missed_lesion_targets

__all__ = [
    "AGGREGATIONS",
    "DEFAULT_MAX_ROI_MARGIN_MM",
    "DEFAULT_ROI_MARGIN_MM",
    "METHODS",
    "ExplainSettings",
    "Explanation",
    "GradCAM",
    "GradCAMpp",
    "Gradient",
    "InstanceTarget",
    "IntegratedGradients",
    "MarginCalibration",
    "SmoothGrad",
    "calibrate_margin",
    "calibrated_config",
    "default_margin_mm",
    "explain_instance",
    "explain_instances",
    "instance_target",
    "instance_targets",
    "iter_explanations",
    "missed_lesion_targets",
    "resolve_margin",
]
