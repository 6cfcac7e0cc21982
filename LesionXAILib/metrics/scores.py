"""Re-evaluating the instance target S (sum or mean of the lesion logits over M_k) on batches of crops."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from LesionXAILib.explain.targets import target_weights
from LesionXAILib.explain.vjp import lesion_logits
from LesionXAILib.lesion_model import LesionModel


def target_scores(
    model: LesionModel, images: Iterable[torch.Tensor], mask: torch.Tensor, aggregation: str, batch_size: int
) -> np.ndarray:
    """Return float64 S(x) for each (C, *crop) image in ``images``, ``batch_size`` images per forward pass."""
    weights = target_weights(mask[None], aggregation)[0]
    out: list[float] = []
    pending: list[torch.Tensor] = []

    def flush() -> None:
        if not pending:
            return
        with torch.no_grad():
            z = lesion_logits(model, torch.stack(pending))[:, 0]
            s = (z.to(torch.float64) * weights.to(z.device)).flatten(1).sum(1)
        out.extend(float(v) for v in s.cpu())
        pending.clear()

    for image in images:
        pending.append(image)
        if len(pending) >= batch_size:
            flush()
    flush()
    return np.asarray(out, dtype=np.float64)
