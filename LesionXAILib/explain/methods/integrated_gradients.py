"""Integrated gradients from the normalised background (all zeros), midpoint rule (formula: explain/integrated_gradients.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from LesionXAILib.explain.methods.base import BatchContext, Explainer
from LesionXAILib.explain.registry import MethodSpec, register

if TYPE_CHECKING:
    import torch

NAME = "integrated_gradients"
DEFAULTS = {"ig_steps": 32}


@dataclass(frozen=True)
class IntegratedGradientsSettings:
    """Integrated gradients' own setting: the number of path points (midpoint rule)."""

    steps: int = DEFAULTS["ig_steps"]


class IntegratedGradients(Explainer):
    """Integrated gradients from the normalised background (all zeros) to the image: ``attribute`` returns (C, k, j, i)."""

    settings_type = IntegratedGradientsSettings
    method = NAME

    @classmethod
    def settings_from(cls, explain_settings: Any) -> IntegratedGradientsSettings:
        """Return the settings taken from an ExplainSettings (``ig_steps``)."""
        return IntegratedGradientsSettings(steps=int(explain_settings.ig_steps))

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Return {'integrated_gradients': (K, C, *crop)} maps along the straight path from 0."""
        from LesionXAILib.explain.integrated_gradients import integrated_gradient_maps

        steps = ctx.settings.steps
        return {NAME: integrated_gradient_maps(ctx.model, ctx.crop, steps, ctx.aggregation, ctx.batch_size, ctx.reporter)}


register(MethodSpec(
    name=NAME, title="Integrated gradients", unit="logit (normalised input × d logit / d normalised input)", per_sequence=True,
    cls=IntegratedGradients, defaults=DEFAULTS, options=("ig_steps",),
    description="(x - 0) x the mean gradient along the straight path from the normalised background", order=30,
))  # fmt: skip
