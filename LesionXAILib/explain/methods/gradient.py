"""Gradient (saliency): G_k(x) = dS_k/dx, signed, one map per input sequence (formula: explain/gradient.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

from LesionXAILib.explain.methods.base import BatchContext, Explainer
from LesionXAILib.explain.registry import MethodSpec, register
from LesionXAILib.vocabulary import GRADIENT_UNIT

if TYPE_CHECKING:
    import numpy as np
    import torch

NAME = "gradient"


class Gradient(Explainer):
    """Signed gradient dS_k/dx of an instance target, one map per input channel: ``attribute`` returns (C, k, j, i)."""

    method = NAME

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Return {'gradient': (K, C, *crop)} gradients of the K targets at the unperturbed image."""
        from LesionXAILib.explain.gradient import gradient_maps

        return {NAME: gradient_maps(ctx.model, ctx.crop, ctx.aggregation, ctx.batch_size, ctx.reporter)}

    @classmethod
    def perturbed_maps(cls, ctx: BatchContext, name: str, images: Sequence[torch.Tensor],
                       full_images: Iterable[Optional[np.ndarray]]) -> Iterator[torch.Tensor]:  # fmt: skip
        """Yield the first instance's gradient for each (C, *crop) image, ``batch_size`` images per engine call."""
        import torch

        from LesionXAILib.explain.vjp import target_gradients

        for start in range(0, len(images), ctx.batch_size):
            chunk = torch.stack(list(images[start : start + ctx.batch_size]))
            yield from target_gradients(ctx.model, chunk, ctx.crop.masks, ctx.aggregation, ctx.batch_size,
                                        windows=ctx.crop.windows)[0]  # fmt: skip


register(MethodSpec(
    name=NAME, title="Gradient", unit=GRADIENT_UNIT, per_sequence=True, cls=Gradient,
    description="signed gradient of the instance's logit target with respect to each input sequence", order=10,
))  # fmt: skip
