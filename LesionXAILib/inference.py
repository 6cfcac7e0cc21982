"""Whole-volume inference: normalisation plus MONAI sliding-window inference with Gaussian blending."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window settings; ``None`` fields take the model config's defaults.

    ``roi_size`` is in canonical (k, j, i) voxels; the config's window is in the model's own axis
    order and spacing and is mapped through the model's contract (:meth:`LesionModel.canonical_roi`).
    """

    roi_size: Optional[tuple[int, int, int]] = None
    overlap: Optional[float] = None
    mode: str = "gaussian"
    sigma_scale: float = 0.125
    sw_batch_size: int = 1

    def resolved(self, model: LesionModel) -> "InferenceSettings":
        """Return a copy with defaults filled from ``model.config`` and values checked."""
        roi = tuple(int(v) for v in (self.roi_size or model.canonical_roi()))
        overlap = model.config.overlap if self.overlap is None else float(self.overlap)
        if len(roi) != 3 or any(v < 1 for v in roi):
            raise ParameterError(f"roi_size must be three positive integers, got {roi}")
        if not 0.0 <= overlap < 1.0:
            raise ParameterError(f"overlap must be in [0, 1), got {overlap}")
        if self.mode not in ("gaussian", "constant"):
            raise ParameterError(f"blend mode must be 'gaussian' or 'constant', got '{self.mode}'")
        if self.sw_batch_size < 1:
            raise ParameterError("sw_batch_size must be >= 1")
        return replace(self, roi_size=roi, overlap=overlap)


def effective_roi(shape: Sequence[int], roi: Sequence[int], divisor: int) -> tuple[int, ...]:
    """Return the window actually used: ``roi`` clamped to the image (rounded up to ``divisor``) per axis.

    A volume smaller than the window is then processed as one window, padded only up to the
    network's size multiple, which makes the result equal to a direct forward pass.
    """
    return tuple(min(int(r), int(math.ceil(s / divisor) * divisor)) for s, r in zip(shape, roi))


def count_windows(shape: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Return how many sliding windows MONAI evaluates for this shape (same scan rule as MONAI)."""
    total = 1
    for s, r in zip(shape, roi):
        s = max(int(s), int(r))
        interval = int(r) if r == s else max(int(r * (1 - overlap)), 1)
        total *= int(math.ceil(max(s - r, 0) / interval)) + 1
    return total


def predict_output(
    model: LesionModel,
    image: np.ndarray | torch.Tensor,
    settings: InferenceSettings = InferenceSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """Return the blended raw network output (C_out, k, j, i) for a normalised (C_in, k, j, i) image."""
    from monai.inferers import sliding_window_inference

    settings = settings.resolved(model)
    reporter = as_reporter(progress, cancel)
    x = torch.as_tensor(np.asarray(image, dtype=np.float32) if not isinstance(image, torch.Tensor) else image)
    if x.ndim != 4:
        raise ParameterError(f"expected a (channels, k, j, i) image, got shape {tuple(x.shape)}")
    if x.shape[0] != model.config.in_channels:
        raise ParameterError(
            f"model '{model.config.name}' expects {model.config.in_channels} input channels "
            f"({', '.join(model.config.input_order)}), got {x.shape[0]}"
        )
    shape = tuple(int(s) for s in x.shape[1:])
    roi = effective_roi(shape, settings.roi_size, model.size_divisor)
    total = count_windows(shape, roi, settings.overlap)
    done = [0]

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        reporter.check()
        out = model(patch)
        done[0] += patch.shape[0]
        reporter(done[0] / total, f"window {done[0]}/{total}")
        return out

    device = model.device
    if model.runs_in_model_space:  # nnU-Net's crop, a format's own resampling: tile the model-space volume (README "Models")
        return _predict_in_model_space(model, x.to(device), settings, reporter)
    # a format's own window blending (nnU-Net's Gaussian, centred at P//2 where MONAI's is at (P-1)/2), in model axes
    blend = getattr(model.network, "window_weights", None) if settings.mode == "gaussian" else None
    weights = None if blend is None else model.model_space().to_canonical(blend(model.model_space().model_shape(roi))).to(device)
    with torch.inference_mode():
        out = sliding_window_inference(
            x[None].to(device),
            roi_size=roi,
            sw_batch_size=settings.sw_batch_size,
            predictor=predictor,
            overlap=settings.overlap,
            mode=settings.mode,
            sigma_scale=settings.sigma_scale,
            padding_mode="constant",
            cval=0.0,
            roi_weight_map=weights,
        )
    return torch.as_tensor(out)[0].float().cpu()


def _predict_in_model_space(model: LesionModel, x: torch.Tensor, settings: InferenceSettings, reporter: ProgressReporter) -> torch.Tensor:
    """Return the output of a model that runs on the whole volume in its own space (its own tiling, else MONAI's in model axes)."""
    from monai.inferers import sliding_window_inference

    def windows(y: torch.Tensor, network: torch.nn.Module) -> torch.Tensor:
        roi = effective_roi(y.shape[2:], model.config.roi_size, model.size_divisor)
        return sliding_window_inference(y, roi, settings.sw_batch_size, network, settings.overlap, settings.mode, settings.sigma_scale)

    reporter.check()
    with torch.inference_mode():
        out = model.predict_in_model_space(x[None], windows)
    reporter(1.0, "model-space inference done")
    return torch.as_tensor(out)[0].float().cpu()


def predict_probability(
    model: LesionModel,
    image: np.ndarray | torch.Tensor,
    settings: InferenceSettings = InferenceSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> np.ndarray:
    """Return the lesion probability map (k, j, i, float32) for a normalised (C_in, k, j, i) image."""
    out = predict_output(model, image, settings, progress, cancel)
    with torch.inference_mode():
        prob = model.probability(out[None])[0, 0]
    return prob.numpy().astype(np.float32, copy=False)
