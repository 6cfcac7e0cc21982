"""Running a network for explanations: eval mode, autograd on, and the caller's state restored afterwards."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.eval_mode import eval_mode
from LesionXAILib.lesion_model import LesionModel


def check_model(model: object) -> LesionModel:
    """Return ``model`` if it is a LesionModel (it knows where the lesion logit lives), else raise."""
    if not isinstance(model, LesionModel):
        raise ParameterError(
            f"explainers need a LesionModel (from LesionXAILib.model_loading.load_model or LesionModel(network, "
            f"config)), got {type(model).__name__}"
        )
    return model


@contextmanager
def explaining(model: LesionModel) -> Iterator[None]:
    """Put ``model`` in eval mode (:func:`LesionXAILib.eval_mode.eval_mode`) with autograd enabled for the block."""
    with eval_mode(model), torch.inference_mode(False), torch.enable_grad():
        yield


def model_dtype(model: LesionModel) -> torch.dtype:
    """Return the floating dtype of the model's parameters (float32 if it has none)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32
