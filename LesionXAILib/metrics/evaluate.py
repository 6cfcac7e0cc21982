"""evaluate_explanation: every selected metric for every method of one instance's Explanation.

Results come as :class:`InstanceMetrics`: a flat row (``<method>_infidelity``, ``<map>_ap``, ...),
per-metric costs (network passes and seconds, summed over methods and per method) and details
(deletion/insertion curves) for JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.explanation import Explanation
from LesionXAILib.explain.registry import find_spec
from LesionXAILib.explain.targets import InstanceTarget
from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.metrics.activation_precision import activation_precision, lesion_target
from LesionXAILib.metrics.cost import MetricCost, count_passes, timed
from LesionXAILib.metrics.deletion import deletion_insertion, deletion_region, feature_order, random_order
from LesionXAILib.metrics.infidelity import attribution_infidelity, perturbation_effects
from LesionXAILib.metrics.inputs import InstanceInputs, explanation_methods, instance_inputs
from LesionXAILib.metrics.randomisation import brain_mask, compare_maps
from LesionXAILib.metrics.sensitivity import max_sensitivity
from LesionXAILib.metrics.settings import MetricSettings
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter
from LesionXAILib.vocabulary import finite_or_none, map_keys

if TYPE_CHECKING:
    from LesionXAILib.analysis import SubjectAnalysis

RANDOM_CONTROL = "random"  # method name of the random-ranking control in deletion/insertion


@dataclass
class InstanceMetrics:
    """Metric values of one instance (flat row), their costs per metric and per metric/method, and details."""

    instance_id: Optional[int]
    status: Optional[str]
    values: dict[str, Optional[float]] = field(default_factory=dict)
    costs: dict[str, MetricCost] = field(default_factory=dict)
    method_costs: dict[str, dict[str, MetricCost]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add_cost(self, metric: str, method: str, cost: MetricCost) -> None:
        """Add ``cost`` to the metric's total and to its per-method entry."""
        self.costs[metric] = self.costs.get(metric, MetricCost()) + cost
        per = self.method_costs.setdefault(metric, {})
        per[method] = per.get(method, MetricCost()) + cost

    def row(self) -> dict[str, Any]:
        """Return the flat row: metric values plus ``<metric>_forward_passes/_backward_passes/_seconds``."""
        out: dict[str, Any] = {k: finite_or_none(v) for k, v in self.values.items()}
        for metric, cost in self.costs.items():
            out[f"{metric}_forward_passes"] = cost.forward_passes
            out[f"{metric}_backward_passes"] = cost.backward_passes
            out[f"{metric}_seconds"] = round(cost.seconds, 4)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (strict JSON: non-finite values become null)."""
        return {
            "instance_id": self.instance_id,
            "status": self.status,
            "values": {k: finite_or_none(v) for k, v in self.values.items()},
            "costs": {k: c.to_dict() for k, c in self.costs.items()},
            "method_costs": {m: {k: c.to_dict() for k, c in per.items()} for m, per in self.method_costs.items()},
            "details": _strict(self.details),
        }


def _strict(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    return obj


def evaluate_explanation(
    model: LesionModel,
    normalized: np.ndarray,
    explanation: Explanation,
    target: InstanceTarget | np.ndarray,
    geometry: Geometry,
    settings: MetricSettings = MetricSettings(),
    random_model: Optional["LesionModel | SubjectAnalysis"] = None,
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> InstanceMetrics:
    """Return the selected metrics of every method in ``explanation`` for its instance ``target``.

    ``random_model`` (from :func:`metrics.randomised_model`) is needed for the randomisation check;
    without it that metric is skipped. Pass it as an ``analysis.SubjectAnalysis`` of the randomised
    model on the same segmentation to share its CAM layer activations between the subject's lesions.
    The explanation must come from ``model`` on ``normalized``.
    """
    reporter = as_reporter(progress, cancel)
    inputs = instance_inputs(model, normalized, target, geometry, explanation.settings)
    out = InstanceMetrics(explanation.instance_id, explanation.status)
    selected = [m for m in settings.metrics if m != "randomisation" or random_model is not None]
    for n, metric in enumerate(selected):
        sub = reporter.sub(n / len(selected), (n + 1) / len(selected))
        sub(0.0, metric)
        if metric == "infidelity":
            _infidelity(inputs, explanation, settings, out)
        elif metric == "max_sensitivity":
            _sensitivity(inputs, explanation, settings, out, sub)
        elif metric == "activation_precision":
            _precision(inputs, explanation, settings, out)
        elif metric == "deletion_insertion":
            _deletion(inputs, explanation, settings, out)
        elif metric == "randomisation":
            _randomisation(inputs, explanation, random_model, out)
        sub(1.0, metric)
    return out


def _infidelity(inputs: InstanceInputs, explanation: Explanation, settings: MetricSettings, out: InstanceMetrics) -> None:
    # the perturbed scores do not depend on the method: evaluate them once for all methods
    effects = perturbation_effects(inputs, settings.infidelity_perturbations, settings.infidelity_scale,
                                   settings.seed, settings.batch_size)  # fmt: skip
    out.add_cost("infidelity", "all", effects.cost)
    for method in explanation_methods(explanation):
        r = attribution_infidelity(effects, inputs.attribution(explanation, method))
        out.values[f"{method}_infidelity"] = r.infidelity
        out.values[f"{method}_infidelity_normalized"] = r.normalized
        out.values[f"{method}_infidelity_relative"] = r.relative
        out.add_cost("infidelity", method, r.cost)


def _sensitivity(
    inputs: InstanceInputs, explanation: Explanation, settings: MetricSettings, out: InstanceMetrics, reporter: ProgressReporter
) -> None:
    methods = explanation_methods(explanation)
    for n, method in enumerate(methods):
        reporter(n / len(methods), f"max-sensitivity {method}")
        r = max_sensitivity(inputs, method, settings.sensitivity_radius, settings.sensitivity_samples,
                            settings.seed, settings.batch_size)  # fmt: skip
        out.values[f"{method}_max_sensitivity"] = r.max_sensitivity
        out.add_cost("max_sensitivity", method, r.cost)


def _map_keys(explanation: Explanation, inputs: InstanceInputs) -> list[str]:
    keys = []
    for method in explanation_methods(explanation):
        keys.extend(map_keys(method, inputs.sequences))
    return keys


def _precision(inputs: InstanceInputs, explanation: Explanation, settings: MetricSettings, out: InstanceMetrics) -> None:
    with timed() as cost:
        box = inputs.box
        truth = lesion_target(inputs.target.mask, settings.ap_dilate_mm, inputs.geometry.spacing_kji)
        for key in _map_keys(explanation, inputs):
            # the crop's image part: evaluate on it without copying the full grid
            r = activation_precision(np.asarray(explanation.maps[key])[box.slices], truth[box.slices],
                                     settings.ap_threshold, settings.ap_top_k_percent)  # fmt: skip
            out.values[f"{key}_ap"] = r.at_threshold
            if settings.ap_top_k_percent is not None:
                out.values[f"{key}_ap_top_k"] = r.at_top_k
    out.add_cost("activation_precision", "all", cost)


def _deletion(inputs: InstanceInputs, explanation: Explanation, settings: MetricSettings, out: InstanceMetrics) -> None:
    region = deletion_region(inputs, settings.deletion_region_mm)
    curves = {}
    rankings = [(m, feature_order(inputs.attribution(explanation, m), region)) for m in explanation_methods(explanation)]
    rankings.append((RANDOM_CONTROL, random_order(region, inputs.image.shape[0], settings.seed)))
    for method, order in rankings:
        r = deletion_insertion(inputs, order, settings.deletion_steps, settings.batch_size)
        out.values[f"{method}_deletion_auc"] = r.deletion_auc
        out.values[f"{method}_insertion_auc"] = r.insertion_auc
        out.add_cost("deletion_insertion", method, r.cost)
        curves[method] = r.to_dict()
    out.details["deletion_insertion"] = curves


def _randomisation(
    inputs: InstanceInputs, explanation: Explanation, random_model: "LesionModel | SubjectAnalysis", out: InstanceMetrics
) -> None:
    from LesionXAILib.analysis import SubjectAnalysis
    from LesionXAILib.explain.api import iter_explanations

    if isinstance(random_model, SubjectAnalysis):
        if explanation.instance_id is None:
            raise ParameterError("a SubjectAnalysis needs an explanation of a numbered instance")
        with count_passes(random_model.model) as cost:
            random_expl = random_model.explain(int(explanation.instance_id), explanation.settings)
    else:
        with count_passes(random_model) as cost:
            random_expl = next(iter_explanations(random_model, inputs.image, [inputs.target], inputs.geometry, explanation.settings))
    brain = brain_mask(inputs.image)
    for key in _map_keys(explanation, inputs):
        spec = find_spec(key)
        cam = spec is not None and not spec.per_sequence  # per-instance full-grid maps: scored over the whole brain as well
        r = compare_maps(explanation.maps[key], random_expl.maps[key], inputs.box, brain if cam else None)
        out.values[f"{key}_randomisation_spearman"] = r.spearman
        out.values[f"{key}_randomisation_spearman_abs"] = r.spearman_abs
        if cam:
            out.values[f"{key}_randomisation_spearman_brain"] = r.spearman_brain
            out.values[f"{key}_randomisation_spearman_abs_brain"] = r.spearman_abs_brain
    out.add_cost("randomisation", "all", cost)
