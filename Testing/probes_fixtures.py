"""Hand-built networks with a known receptive field and tiny images for the probe tests.

``ContextDetector`` fires on a voxel when (a) its FLAIR value exceeds ``level`` (a bright lesion) and
(b) no voxel in the cube of half-width ``h`` voxels around it lacks tissue, where "lacks tissue" means
|MPRAGE| < 0.5 (the neutral fill 0). Condition (b) is computed by ``h`` stacked 3x3x3 all-ones
convolutions of the no-tissue indicator: their weights are positive integers exactly on that cube,
so the sum is >= 1 iff some voxel of the cube has no tissue. Hence a lesion voxel v is predicted iff
the kept region (lesion dilated by r) contains the whole cube around v, which gives the context radius
on paper.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


class ContextDetector(nn.Module):
    """logit = gain * (FLAIR - level) - penalty * (box^h * no-tissue indicator)."""

    def __init__(self, h: int = 2, level: float = 1.5, gain: float = 10.0, penalty: float = 100.0) -> None:
        super().__init__()
        self.level = float(level)
        self.gain = float(gain)
        self.penalty = float(penalty)
        self.box = nn.ModuleList()
        for _ in range(h):
            conv = nn.Conv3d(1, 1, 3, padding=1, bias=False)
            nn.init.ones_(conv.weight)
            conv.weight.requires_grad_(False)
            self.box.append(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flair = x[:, 0:1]
        no_tissue = torch.relu(1.0 - 2.0 * torch.abs(x[:, 1:2]))
        s = no_tissue
        for conv in self.box:
            s = conv(s)
        return self.gain * (flair - self.level) - self.penalty * s


class DetectorNet(torch.nn.Module):
    """ContextDetector behind an identity 1x1x1 convolution with trainable weights (a layer Grad-CAM can hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = torch.nn.Conv3d(2, 2, 1)
        with torch.no_grad():
            self.pre.weight.copy_(torch.eye(2).reshape(2, 2, 1, 1, 1))
            self.pre.bias.zero_()
        self.detector = ContextDetector(h=1, level=1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.detector(self.pre(x))


def detector_config(threshold: float = 0.5) -> ModelConfig:
    """Return a sigmoid-head config with size divisor 1 for the hand-built detector."""
    return ModelConfig(
        name="context-detector", channels=(1,), strides=(), num_res_units=0, threshold=threshold, roi_size=(256,) * 3
    )


def detector_model(h: int = 2, level: float = 1.5, threshold: float = 0.5) -> LesionModel:
    """Return the hand-built detector wrapped as an eval-mode LesionModel."""
    model = LesionModel(ContextDetector(h, level), detector_config(threshold), source="hand-built")
    return model.eval()


def geometry_for(shape_kji, spacing_ijk=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=IDENTITY) -> Geometry:
    """Return a grid of numpy shape ``shape_kji`` with the given i,j,k spacing."""
    return Geometry(
        size=(shape_kji[2], shape_kji[1], shape_kji[0]),
        origin=tuple(float(v) for v in origin),
        spacing=tuple(float(v) for v in spacing_ijk),
        direction=tuple(float(v) for v in direction),
    )


def lesion_image(shape_kji, lesion_mask: np.ndarray, lesion_value: float = 2.0) -> np.ndarray:
    """Return a normalised (2, k, j, i) stack: FLAIR 0 in tissue and ``lesion_value`` in the lesion; MPRAGE 1."""
    x = np.zeros((2, *shape_kji), dtype=np.float32)
    x[0][lesion_mask] = lesion_value
    x[1] = 1.0
    return x


def cube_mask(shape_kji, centre_kji, half: int = 0) -> np.ndarray:
    """Return a boolean mask of the cube of half-width ``half`` voxels around ``centre_kji``."""
    m = np.zeros(shape_kji, dtype=bool)
    k, j, i = centre_kji
    m[k - half : k + half + 1, j - half : j + half + 1, i - half : i + half + 1] = True
    return m


def write_detector_model(directory, h: int = 2, threshold: float = 0.5):
    """Write the detector as TorchScript plus its JSON config into ``directory``; return (model path, config path)."""
    import json
    from pathlib import Path

    directory = Path(directory)
    model_path = directory / "detector.pt"
    torch.jit.script(ContextDetector(h)).save(str(model_path))
    config_path = directory / "detector.json"
    config_path.write_text(json.dumps(detector_config(threshold).to_dict()))
    return model_path, config_path


def write_subject(directory, shape=(24, 28, 40), spacing=(1.0, 1.0, 1.0), lesions=(((12, 14, 10), 1), ((12, 14, 28), 0))):
    """Write flair/t1 NIfTIs of a box-shaped brain with cube lesions; z-scoring maps MPRAGE to +-1 in the brain.

    Returns (flair path, t1 path, lesion mask).
    """
    import SimpleITK as sitk
    from pathlib import Path

    directory = Path(directory)
    brain = np.zeros(shape, dtype=bool)
    brain[2:-2, 2:-2, 2:-2] = True
    mask = np.zeros(shape, dtype=bool)
    for centre, half in lesions:
        mask |= cube_mask(shape, centre, half)
    flair = np.where(brain, 100.0, 0.0).astype(np.float32)
    flair[mask] = 400.0
    t1 = np.zeros(shape, dtype=np.float32)
    slab = (np.indices(shape)[2] % 2).astype(bool)  # alternating 100 / 300 columns: mean 200, std 100
    t1[brain & slab] = 300.0
    t1[brain & ~slab] = 100.0
    paths = []
    for name, arr in (("flair", flair), ("t1", t1)):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(tuple(float(s) for s in spacing))
        p = directory / f"{name}.nii.gz"
        sitk.WriteImage(img, str(p))
        paths.append(p)
    return paths[0], paths[1], mask
