"""Probes of model behaviour (docs/methods.md#context-probe): perilesional context and synthetic lesions.

``synthetic_lesion_probe`` loads the phantom lesion inserter on first use.
"""

from LesionXAILib.probes.context import (
    ContextSettings,
    context_probe,
    context_probe_instances,
    default_radii,
)
from LesionXAILib.probes.curve import ContextCurve, context_needed
from LesionXAILib.probes.detection import ProbePoint, score_prediction

__all__ = [
    "ContextCurve",
    "ContextSettings",
    "ProbePoint",
    "context_needed",
    "context_probe",
    "context_probe_instances",
    "default_radii",
    "score_prediction",
    "synthetic_lesion_probe",
    "SyntheticSettings",
    "SyntheticResult",
]


def __getattr__(name: str):
    if name in ("synthetic_lesion_probe", "SyntheticSettings", "SyntheticResult"):
        from LesionXAILib.probes import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'LesionXAILib.probes' has no attribute '{name}'")
