"""``--config ies-unet`` explains the anchor study's network as the anchor's own code does (federicospagnolo/IES ies.py).

The reference is computed here the anchor's way: MONAI ``LoadImaged`` -> ``EnsureChannelFirstd`` ->
``NormalizeIntensityd(nonzero=True, channel_wise=True)``, the anchor's U-Net layout inside
``DataParallel``, ``outputs[0, 1][lesion].sum()`` differentiated with respect to the (i, j, k) input. The
network has realistic batch-norm statistics: running means and variances accumulated in train mode over
augmented copies of a brain-like subject (not the default 0 / 1), which is what makes its gradients reach far.
LesionXAI is run as a user would, from the command line, on the files and the saved state dict.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LesionXAILib.cli.main import main
from LesionXAILib.model_config import PRESETS

KEYS = ("flair", "mprage")


def _write_subject(directory) -> dict:
    """Write a brain-like FLAIR / MPRAGE pair (smooth texture, skull-stripped zeros) with three lesions; return the paths.

    64 x 48 x 32 voxels (i, j, k) of 1 mm: every size a multiple of the U-Net's 16, and the three axes differ.
    """
    from scipy import ndimage

    rng = np.random.default_rng(3)
    shape = (32, 48, 64)  # k, j, i
    kk, jj, ii = np.indices(shape)
    brain = ((kk - 16) / 14.0) ** 2 + ((jj - 24) / 21.0) ** 2 + ((ii - 32) / 29.0) ** 2 <= 1.0
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) * 40
    lesions = np.zeros(shape, np.uint8)
    for n, (c, r) in enumerate((((16, 20, 24), 3.0), ((12, 30, 40), 2.0), ((20, 24, 44), 2.5)), 1):
        lesions[((kk - c[0]) ** 2 + (jj - c[1]) ** 2 + (ii - c[2]) ** 2 <= r * r) & brain] = n
    flair = np.where(brain, 300 + texture + 250 * (lesions > 0) + 5 * rng.standard_normal(shape), 0)
    t1 = np.where(brain, 600 - texture - 200 * (lesions > 0) + 5 * rng.standard_normal(shape), 0)
    paths = {}
    for name, arr in (("flair", flair), ("t1", t1), ("lesions", lesions)):
        img = sitk.GetImageFromArray(arr.astype(np.uint8 if name == "lesions" else np.float32))
        img.SetOrigin((-31.0, 12.0, -5.0))
        paths[name] = directory / f"{name}.nii.gz"
        sitk.WriteImage(img, str(paths[name]))
    return paths


def _anchor_inputs(flair, t1) -> torch.Tensor:
    """Return the anchor's (1, 2, i, j, k) network input for two NIfTI files."""
    from monai.transforms import Compose, ConcatItemsd, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd

    transforms = Compose(
        [
            LoadImaged(keys=KEYS),
            EnsureChannelFirstd(keys=KEYS),
            NormalizeIntensityd(keys=KEYS, nonzero=True, channel_wise=True),
            ConcatItemsd(keys=KEYS, name="inputs"),
        ]
    )
    data = transforms({"flair": str(flair), "mprage": str(t1)})
    return torch.as_tensor(np.asarray(data["inputs"]), dtype=torch.float32)[None]


def _anchor_network(inputs: torch.Tensor) -> torch.nn.Module:
    """Return the anchor's DataParallel U-Net (xavier init as ies.py) with batch-norm statistics learnt from ``inputs``."""
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(spatial_dims=3, in_channels=2, out_channels=2, channels=(32, 64, 128, 256, 512), strides=(2, 2, 2, 2), norm="batch", num_res_units=0)
    for layer in net.model.modules():
        if type(layer) is torch.nn.Conv3d:
            torch.nn.init.xavier_normal_(layer.weight, gain=1.0)
    model = torch.nn.DataParallel(net)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    for bn in bns:
        bn.momentum = None  # cumulative average over the passes below
    gen = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for n in range(6):  # augmented copies: flips, intensity scale and shift, noise
            x = inputs.flip(dims=[2 + n % 3]) if n % 2 else inputs
            x = x * (1 + 0.1 * torch.randn(1, 2, 1, 1, 1, generator=gen)) + 0.1 * torch.randn(1, 2, 1, 1, 1, generator=gen)
            model(x + 0.05 * torch.randn(x.shape, generator=gen))
    model.eval()
    assert all(not torch.allclose(bn.running_var, torch.ones_like(bn.running_var)) for bn in bns)
    # a random network's "lesions" are speckle: lower the class-1 bias until nothing passes the 0.3 threshold, so the
    # instances are the subject's true lesions, explained as FN (M_k = the ground-truth lesion, as the anchor does)
    with torch.no_grad():
        out = model(inputs)
        d = out[0, 1] - out[0, 0]
        net.model[2].conv.bias[1] += float(np.log(0.3 / 0.7) - d.max()) - 0.5
    return model


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def _explain(flair, t1, gt, weights, config, out) -> None:
    args = ["-q", "explain", "--flair", str(flair), "--t1", str(t1), "--gt", str(gt), "--out", str(out), "--config", str(config), "--weights", str(weights),
            "--samples", "1", "--noise-level", "0", "--methods", "smoothgrad", "--full-volume"]  # fmt: skip
    assert main(args) == 0


def _per_lesion_r(model, inputs, out) -> dict[tuple[int, str], float]:
    """Return {(instance, sequence): Pearson r} of LesionXAI's maps in ``out`` against the anchor's gradients."""
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "instances.nii.gz")))  # k, j, i
    ids = [int(v) for v in np.unique(labels) if v > 0]
    assert len(ids) >= 2, "the subject has no lesions to explain"
    rs = {}
    for lesion in ids:
        mask_ijk = torch.from_numpy((labels == lesion).transpose(2, 1, 0).copy())
        x = inputs.clone().requires_grad_(True)
        outputs = model(x)
        (grad,) = torch.autograd.grad(outputs[0, 1][mask_ijk].sum(), x)  # the anchor's instance target
        grad_kji = grad[0].numpy().transpose(0, 3, 2, 1)
        for c, seq in enumerate(("flair", "mprage")):
            ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"instance_{lesion}" / f"smoothgrad_{seq}.nii.gz")))
            rs[(lesion, seq)] = _pearson(ours, grad_kji[c])
    return rs


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_ies_unet_gradients_equal_the_anchor_pipeline(tmp_path):
    paths = _write_subject(tmp_path)
    inputs = _anchor_inputs(paths["flair"], paths["t1"])
    assert tuple(inputs.shape[2:]) == tuple(sitk.ReadImage(str(paths["flair"])).GetSize())  # (i, j, k): nibabel order
    model = _anchor_network(inputs)
    weights = tmp_path / "ies_model.pth"
    torch.save(model.state_dict(), weights)  # keys start with 'module.' as the anchor's checkpoints
    out = tmp_path / "ies"
    _explain(paths["flair"], paths["t1"], paths["lesions"], weights, "ies-unet", out)
    rs = _per_lesion_r(model, inputs, out)
    print("anchor order, ies-unet contract: r =", {f"{k[0]}/{k[1]}": round(v, 6) for k, v in rs.items()})
    assert min(rs.values()) >= 0.999, rs
    # the same weights fed SimpleITK's (k, j, i) arrays (the contract ignored) explain something else
    ignored = tmp_path / "ignored.json"
    ignored.write_text(json.dumps({**PRESETS["ies-unet"].to_dict(), "name": "ies-unet-kji", "contract": {"axes": "kji"}}))
    out2 = tmp_path / "kji"
    _explain(paths["flair"], paths["t1"], paths["lesions"], weights, ignored, out2)
    rs2 = _per_lesion_r(model, inputs, out2)
    print("anchor order, contract ignored (k, j, i): r =", {f"{k[0]}/{k[1]}": round(v, 6) for k, v in rs2.items()})
    assert max(rs2.values()) < 0.9, rs2
