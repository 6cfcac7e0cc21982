"""Tiny networks and synthetic volumes for the explainer tests (fast on 2 CPU cores)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from LesionXAILib.geometry import Geometry
from LesionXAILib.lesion_model import LesionModel, build_network
from LesionXAILib.model_config import ModelConfig


class TinyNet(nn.Module):
    """A 3D encoder-decoder with one stride-2 level, batch norm, PReLU and a skip connection."""

    def __init__(self, out_channels: int = 1) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d(4), nn.PReLU())
        self.down = nn.Sequential(nn.Conv3d(4, 6, 3, stride=2, padding=1), nn.BatchNorm3d(6), nn.PReLU())
        self.up = nn.ConvTranspose3d(6, 4, 2, stride=2)
        self.head = nn.Conv3d(8, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc(x)
        return self.head(torch.cat([a, self.up(self.down(a))], 1))


def _randomise_norm(network: nn.Module, seed: int) -> None:
    """Give batch-norm layers non-trivial running statistics and affine parameters (eval is then a real affine map)."""
    g = torch.Generator().manual_seed(seed + 1000)
    for m in network.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(n, generator=g))
            m.bias.data.copy_(0.2 * torch.randn(n, generator=g))


def tiny_model(head: str = "sigmoid", seed: int = 0, dtype: torch.dtype = torch.float64) -> LesionModel:
    """Return a TinyNet LesionModel (sigmoid: 1 output channel; softmax: 2, lesion channel 1), eval mode."""
    torch.manual_seed(seed)
    out = 1 if head == "sigmoid" else 2
    cfg = ModelConfig(
        name=f"tiny-{head}", channels=(4, 6), strides=(2,), out_channels=out, head=head,
        lesion_index=0 if head == "sigmoid" else 1, cam_layer="down",
    )  # fmt: skip
    net = TinyNet(out)
    _randomise_norm(net, seed)
    return LesionModel(net.to(dtype), cfg).eval()


def tiny_unet(seed: int = 0, dtype: torch.dtype = torch.float64, head: str = "sigmoid") -> LesionModel:
    """Return a small MONAI UNet (3 levels, residual units, batch norm) as a LesionModel, eval mode."""
    torch.manual_seed(seed)
    out = 1 if head == "sigmoid" else 2
    cfg = ModelConfig(
        name="tiny-unet", channels=(4, 8, 16), strides=(2, 2), num_res_units=1, out_channels=out, head=head,
        lesion_index=0 if head == "sigmoid" else 1,
    )  # fmt: skip
    net = build_network(cfg)
    _randomise_norm(net, seed)
    return LesionModel(net.to(dtype), cfg).eval()


def synthetic_image(shape: tuple[int, int, int], seed: int = 0, dtype=np.float64) -> np.ndarray:
    """Return a smooth random (2, k, j, i) 'normalised' image with a zero background border."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    img = np.stack([gaussian_filter(rng.standard_normal(shape), 1.0) * 3 for _ in range(2)])
    img[:, :2] = 0
    img[:, -2:] = 0
    return img.astype(dtype)


def box_mask(shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    """Return a boolean k,j,i mask that is True on [lo, hi)."""
    m = np.zeros(shape, dtype=bool)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return m


def unit_geometry(shape: tuple[int, int, int], spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Geometry:
    """Return an axis-aligned geometry for a k,j,i ``shape`` with i,j,k ``spacing``."""
    return Geometry(size=tuple(shape[::-1]), origin=(0.0, 0.0, 0.0), spacing=spacing, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))


def logits(model: LesionModel, x: np.ndarray) -> np.ndarray:
    """Return the lesion logits (k, j, i) of one (C, k, j, i) image, computed directly."""
    with torch.no_grad():
        t = torch.from_numpy(np.asarray(x)).to(next(model.parameters()).dtype)[None]
        return model.lesion_logit(model(t))[0, 0].numpy()


def saved_subject(directory, shape: tuple[int, int, int] = (24, 28, 24)):
    """Write flair/t1 NIfTI files and a saved tiny U-Net into ``directory``; return (directory, model path, threshold).

    The threshold is one at which this random network yields a few small components (the 99.5th
    percentile of its probability), so the command-line tests have instances to work on.
    """
    import SimpleITK as sitk

    from LesionXAILib.geometry import array_to_image
    from LesionXAILib.image_io import load_pair
    from LesionXAILib.model_loading import load_model, save_checkpoint
    from LesionXAILib.segmentation import segment

    geo = unit_geometry(shape, spacing=(1.0, 1.0, 1.2))
    img = synthetic_image(shape, seed=3, dtype=np.float32) + 5.0
    img[:, :2] = 0
    for name, arr in (("flair", img[0]), ("t1", img[1])):
        sitk.WriteImage(array_to_image(arr, geo), str(directory / f"{name}.nii.gz"))
    model_path = save_checkpoint(tiny_unet(seed=4, dtype=torch.float32), directory / "tiny.pt")
    result = segment(load_pair(directory / "flair.nii.gz", directory / "t1.nii.gz"), load_model(model_path))
    return directory, model_path, float(np.quantile(result.probability, 0.995))
