"""Explanation-quality metrics (docs/methods.md#metrics), per instance and per method.

``infidelity`` and ``max_sensitivity`` (Yeh et al. 2019), ``activation_precision`` (MProtoNet),
``deletion_insertion`` curves and AUCs, and the model-randomisation sanity check
(``randomised_model`` + ``compare_maps``). ``evaluate_explanation`` runs the selected ones for an
Explanation and reports their cost (network passes and seconds per lesion).
"""

from LesionXAILib.metrics.activation_precision import PrecisionResult, activation_precision, lesion_target
from LesionXAILib.metrics.cost import MetricCost, count_passes, timed
from LesionXAILib.metrics.deletion import DeletionResult, deletion_insertion, deletion_region, feature_order, random_order
from LesionXAILib.metrics.evaluate import InstanceMetrics, evaluate_explanation
from LesionXAILib.metrics.infidelity import (
    InfidelityResult,
    PerturbationEffects,
    attribution_infidelity,
    infidelity,
    infidelity_terms,
    perturbation_effects,
)
from LesionXAILib.metrics.inputs import InstanceInputs, instance_inputs
from LesionXAILib.metrics.randomisation import RandomisationResult, compare_maps, randomised_model, spearman
from LesionXAILib.metrics.sensitivity import SensitivityResult, max_sensitivity
from LesionXAILib.metrics.settings import METRICS, MetricSettings

__all__ = [
    "METRICS",
    "DeletionResult",
    "InfidelityResult",
    "InstanceInputs",
    "InstanceMetrics",
    "MetricCost",
    "MetricSettings",
    "PerturbationEffects",
    "PrecisionResult",
    "RandomisationResult",
    "SensitivityResult",
    "activation_precision",
    "attribution_infidelity",
    "compare_maps",
    "count_passes",
    "deletion_insertion",
    "deletion_region",
    "evaluate_explanation",
    "feature_order",
    "infidelity",
    "infidelity_terms",
    "instance_inputs",
    "lesion_target",
    "max_sensitivity",
    "perturbation_effects",
    "random_order",
    "randomised_model",
    "spearman",
    "timed",
]
