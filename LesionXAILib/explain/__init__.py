"""Instance-level explainers of a lesion segmenter (docs/methods.md#instance-target, #explainers).

``explain_instance`` / ``explain_instances`` run the selected methods for lesion instances and
return :class:`Explanation` objects; ``Gradient``, ``SmoothGrad``, ``IntegratedGradients``,
``GradCAM`` and ``GradCAMpp`` are Captum-style classes (``Method(model).attribute(inputs, target)``),
each registered in :mod:`LesionXAILib.explain.registry` (``available_methods``, ``method_spec``);
``calibrate_margin`` measures the crop margin a model's explanations need (``calibrated_config`` keeps it).

Names load on first use (PEP 562): reading the registry (titles, options) imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LesionXAILib.explain.api": ("explain_instance", "explain_instances", "instance_targets", "iter_explanations"),
    "LesionXAILib.explain.explanation": ("Explanation",),
    "LesionXAILib.explain.methods.base": ("Region",),
    "LesionXAILib.explain.methods.gradcam": ("GradCAM", "GradCAMpp"),
    "LesionXAILib.explain.methods.gradient": ("Gradient",),
    "LesionXAILib.explain.methods.integrated_gradients": ("IntegratedGradients", "IntegratedGradientsSettings"),
    "LesionXAILib.explain.methods.smoothgrad": ("SmoothGrad", "SmoothGradSettings"),
    "LesionXAILib.explain.margin_calibration": ("MarginCalibration", "calibrate_margin", "calibrated_config"),
    "LesionXAILib.explain.registry": ("MethodSpec", "available_methods", "method_spec", "method_title", "register"),
    "LesionXAILib.explain.settings": (
        "AGGREGATIONS", "DEFAULT_MAX_ROI_MARGIN_MM", "DEFAULT_ROI_MARGIN_MM", "METHODS", "ExplainSettings",
        "default_margin_mm", "resolve_margin",
    ),
    "LesionXAILib.explain.targets": ("InstanceTarget", "instance_target", "missed_lesion_targets"),
}  # fmt: skip
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """Return an exported name, importing its module on first use (METHODS is read from the registry each time)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    if name != "METHODS":  # the registry may grow
        globals()[name] = value
    return value
