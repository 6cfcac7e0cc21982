"""Helpers of the counterfactual tests (no tests here): a hand-built size detector and a one-blob subject.

The detector's lesion evidence is the bright load ``b(x) = relu(FLAIR - T) / (F - T)`` (1 for a full
lesion voxel of intensity F, 0 for tissue below T); its logit at a voxel is
``min(load within a 15-voxel window - N + 0.5, 200 (b - 0.5))``: a bright voxel is segmented exactly
when the window around it holds a load of at least N - 0.5. The window covers the whole blob from each
of its voxels, so the blob is detected if and only if its total load reaches N - 0.5: detection
depends on the lesion's size (load) only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from torch import nn

from LesionXAILib.geometry import Geometry
from LesionXAILib.image_io import InputPair
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig

TISSUE, LESION, T_LOW, T_FULL = 100.0, 200.0, 150.0, 200.0
WINDOW = 15
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class SizeDetector(nn.Module):
    """Segments bright voxels whose 15-voxel window holds a bright load >= n - 0.5 (see the module docstring)."""

    def __init__(self, n: float, t_low: float = T_LOW, t_full: float = T_FULL, window: int = WINDOW) -> None:
        super().__init__()
        self.n = float(n)
        self.t_low = float(t_low)
        self.t_full = float(t_full)
        self.window = int(window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = torch.relu(x[:, :1] - self.t_low) / (self.t_full - self.t_low)
        w = self.window
        load = F.avg_pool3d(b, (w, 1, 1), stride=1, padding=(w // 2, 0, 0))
        load = F.avg_pool3d(load, (1, w, 1), stride=1, padding=(0, w // 2, 0))
        load = F.avg_pool3d(load, (1, 1, w), stride=1, padding=(0, 0, w // 2)) * float(w**3)
        return torch.minimum(load - self.n + 0.5, 200.0 * (b - 0.5))


class ConstantDetector(nn.Module):
    """Segments a fixed box whatever the input (a model no counterfactual can flip)."""

    def __init__(self, shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int]) -> None:
        super().__init__()
        logits = torch.full((1, 1) + tuple(shape), -10.0)
        logits[(0, 0) + tuple(slice(a, b) for a, b in zip(lo, hi))] = 10.0
        self.register_buffer("logits", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits + 0.0 * x[:, :1]


def size_config(normalization: str = "none", name: str = "size-detector") -> ModelConfig:
    """Return a sigmoid-head config with size divisor 1 for the hand-built detectors."""
    return ModelConfig(name=name, channels=(1,), strides=(), num_res_units=0, threshold=0.5, roi_size=(256,) * 3,
                       normalization=normalization)  # fmt: skip


def size_model(n: float, normalization: str = "none", **kwargs) -> LesionModel:
    """Return the size detector wrapped as an eval-mode LesionModel."""
    return LesionModel(SizeDetector(n, **kwargs), size_config(normalization), source="hand-built").eval()


def ball(shape, centre, radius: float) -> np.ndarray:
    """Return the boolean ball of ``radius`` voxels around ``centre`` (k, j, i)."""
    kk, jj, ii = np.indices(shape)
    return (kk - centre[0]) ** 2 + (jj - centre[1]) ** 2 + (ii - centre[2]) ** 2 <= radius**2


def subject_arrays(shape=(36, 38, 40), centre=(18, 19, 20), radius: float = 3.0, seed: int = 0):
    """Return (FLAIR, MPRAGE, blob mask): noisy tissue, a bright FLAIR / dark MPRAGE blob, zero background slices."""
    rng = np.random.default_rng(seed)
    flair = (TISSUE + 2.0 * rng.standard_normal(shape)).astype(np.float32)
    t1 = (80.0 + 2.0 * rng.standard_normal(shape)).astype(np.float32)
    blob = ball(shape, centre, radius) if radius > 0 else np.zeros(shape, bool)
    flair[blob] = LESION + 2.0 * rng.standard_normal(int(blob.sum())).astype(np.float32)
    t1[blob] = 60.0
    flair[:2] = 0.0
    t1[:2] = 0.0
    return flair, t1, blob


def geometry(shape, spacing=(1.0, 1.0, 1.0), origin=(12.5, -30.0, 7.25), direction=IDENTITY) -> Geometry:
    """Return a grid of numpy shape ``shape`` (k, j, i)."""
    return Geometry((shape[2], shape[1], shape[0]), tuple(map(float, origin)), tuple(map(float, spacing)), tuple(map(float, direction)))


def pair(flair, t1, grid: Geometry) -> InputPair:
    """Return the in-memory input pair."""
    return InputPair(flair, t1, grid)


def bright_load(flair: np.ndarray) -> float:
    """Return the blob's load as the detector measures it, computed from an image (independent of the library)."""
    return float(np.maximum(np.asarray(flair, np.float64) - T_LOW, 0.0).sum() / (T_FULL - T_LOW))


def write_image(array, grid: Geometry, path: Path) -> Path:
    """Write a k,j,i array on ``grid`` as NIfTI and return the path."""
    img = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    img.SetOrigin(grid.origin)
    img.SetSpacing(grid.spacing)
    img.SetDirection(grid.direction)
    sitk.WriteImage(img, str(path))
    return path


def write_model(directory: Path, module: nn.Module, normalization: str = "none") -> tuple[Path, Path]:
    """Write ``module`` as TorchScript plus its JSON config into ``directory``; return (model path, config path)."""
    model_path = directory / "detector.pt"
    torch.jit.script(module).save(str(model_path))
    config_path = directory / "detector.json"
    config_path.write_text(json.dumps(size_config(normalization).to_dict()))
    return model_path, config_path


pytestmark = pytest.mark.usefixtures("one_torch_thread")
