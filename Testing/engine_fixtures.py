"""Small synthetic inputs and tiny networks for fast engine tests (no phantom, no shipped model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from LesionXAILib.lesion_model import LesionModel, build_network
from LesionXAILib.model_config import ModelConfig

OBLIQUE_DIRECTION = tuple(
    np.array(
        sitk.VersorTransform((0.2, -0.3, 0.4), 0.35).GetMatrix(),
        dtype=float,
    ).tolist()
)


def make_image(
    array_kji: np.ndarray,
    spacing=(1.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> sitk.Image:
    """Return a SimpleITK image of a k,j,i array with the given geometry."""
    img = sitk.GetImageFromArray(np.asarray(array_kji, dtype=np.float32))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection(tuple(float(d) for d in direction))
    return img


def blob_volume(shape=(32, 40, 36), seed: int = 0, centres=((10, 12, 9), (20, 28, 25)), radius: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Return (noisy brain-like volume, bright-blob mask) of the given k,j,i shape."""
    rng = np.random.default_rng(seed)
    vol = 100 + 5 * rng.standard_normal(shape).astype(np.float32)
    kk, jj, ii = np.indices(shape)
    mask = np.zeros(shape, bool)
    for c in centres:
        mask |= (kk - c[0]) ** 2 + (jj - c[1]) ** 2 + (ii - c[2]) ** 2 <= radius**2
    vol[mask] += 60
    vol[:2] = 0  # some zero background, as in skull-stripped images
    return vol.astype(np.float32), mask


def tiny_config(**changes) -> ModelConfig:
    """Return a small 2-level U-Net config (size divisor 4) for fast tests."""
    base = dict(name="tiny", channels=(4, 8, 16), strides=(2, 2), num_res_units=0, roi_size=(32, 32, 32))
    base.update(changes)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **changes) -> LesionModel:
    """Return an eval-mode randomly initialised tiny LesionModel with non-trivial batch-norm statistics."""
    torch.manual_seed(seed)
    cfg = tiny_config(**changes)
    net = build_network(cfg)
    # give batch norm running stats away from (0, 1) so eval-mode affine maps are exercised
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    model = LesionModel(net, cfg, source="tiny")
    return model.eval()


def write_pair(tmp: Path, shape=(32, 40, 36), spacing=(1.0, 1.0, 1.0), suffix=".nii.gz") -> tuple[Path, Path, Path]:
    """Write a FLAIR/MPRAGE/ground-truth triple of blob volumes into ``tmp`` and return their paths."""
    flair, mask = blob_volume(shape)
    t1 = np.where(flair > 0, 250 - flair, 0).astype(np.float32)
    paths = []
    for name, arr in (("flair", flair), ("t1", t1), ("gt", mask.astype(np.float32))):
        p = tmp / f"{name}{suffix}"
        sitk.WriteImage(make_image(arr, spacing), str(p))
        paths.append(p)
    return tuple(paths)
