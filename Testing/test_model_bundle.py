"""MONAI bundles as --model DIR: LesionXAI's probability equals the bundle's own inference inverted to the input space.

The test writes a small bundle (configs/inference.json with LoadImaged, EnsureChannelFirstd,
Orientationd(RAS), NormalizeIntensityd, a SlidingWindowInferer, Activationsd + Invertd postprocessing,
a SupervisedEvaluator with a CheckpointLoader; a tiny UNet network_def; models/model.pt with
non-default weights) and runs the bundle's own evaluator through ``monai.bundle.ConfigParser`` as
the reference. The images have a permuted, flipped direction so that Orientationd reorders and
flips the axes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.geometry import array_to_image
from LesionXAILib.image_io import load_pair
from LesionXAILib.model_loading import load_model
from LesionXAILib.segmentation import segment

# i runs along -y, j along +x (LPS): Orientationd(RAS) must swap and flip axes
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
SPACING = (1.8, 2.0, 2.4)


def inference_config(preprocessing_extra: list | None = None) -> dict:
    """Return a bundle inference.json (MONAI bundle syntax)."""
    return {
        "bundle_root": ".",
        "device": "$torch.device('cpu')",
        "imports": ["$import torch"],
        "image_key": "image",
        "datalist": [],
        "network_def": {
            "_target_": "UNet", "spatial_dims": 3, "in_channels": 2, "out_channels": 2,
            "channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1, "norm": "batch",
        },
        "network": "$@network_def.to(@device)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "@image_key", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "@image_key"},
                {"_target_": "Orientationd", "keys": "@image_key", "axcodes": "RAS"},
                *(preprocessing_extra or []),
                {"_target_": "NormalizeIntensityd", "keys": "@image_key", "nonzero": True, "channel_wise": True},
                {"_target_": "EnsureTyped", "keys": "@image_key"},
            ],
        },
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "shuffle": False, "num_workers": 0},
        "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1, "overlap": 0.5, "mode": "gaussian"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
                 "nearest_interp": False, "to_tensor": True},
            ],
        },
        "handlers": [
            {"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'", "load_dict": {"model": "@network"}}
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator", "device": "@device", "val_data_loader": "@dataloader", "network": "@network",
            "inferer": "@inferer", "postprocessing": "@postprocessing", "val_handlers": "@handlers", "amp": False,
        },
    }  # fmt: skip


METADATA = {
    "version": "0.1.0",
    "network_data_format": {
        "inputs": {"image": {"type": "image", "num_channels": 2, "channel_def": {"0": "FLAIR", "1": "T1"}}},
        "outputs": {"pred": {"type": "image", "num_channels": 2, "channel_def": {"0": "background", "1": "lesion"}}},
    },
}


def write_bundle(root, config: dict) -> "Path":  # noqa: F821
    """Write a bundle folder with a tiny UNet whose weights and batch-norm statistics are not the defaults."""
    from monai.networks.nets import UNet

    bundle = root / "tiny_ms_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    (bundle / "configs" / "metadata.json").write_text(json.dumps(METADATA, indent=2))
    torch.manual_seed(7)
    net = UNet(spatial_dims=3, in_channels=2, out_channels=2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1, norm="batch")
    g = torch.Generator().manual_seed(8)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.copy_(0.3 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.3 * torch.randn(m.num_features, generator=g))
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def write_phantom_pair(root, ph, spacing):
    """Write a phantom's FLAIR and T1 as float32 NIfTI on an oblique grid with ``spacing``; return both paths."""
    geometry = dataclasses.replace(ph.geometry, spacing=spacing, direction=DIRECTION)
    paths = []
    for name, arr in (("flair", ph.flair), ("t1", ph.t1)):
        p = root / f"{name}.nii.gz"
        sitk.WriteImage(array_to_image(arr.astype(np.float32), geometry), str(p))
        paths.append(p)
    return paths[0], paths[1]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from phantom_fixtures import small_phantom

    root = tmp_path_factory.mktemp("bundle")
    flair, t1 = write_phantom_pair(root, small_phantom(spacing=(2.0, 2.0, 2.0)), SPACING)
    return root, write_bundle(root, inference_config()), flair, t1


def bundle_own_probability(bundle, flair, t1) -> np.ndarray:
    """Return the bundle's lesion probability from its own evaluator, inverted to the input file's (i, j, k) voxels."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["datalist"] = [{"image": [str(flair), str(t1)]}]
    evaluator = parser.get_parsed_content("evaluator")
    evaluator.run()
    pred = evaluator.state.output[0]["pred"]
    return np.asarray(pred[1])


def test_probability_equals_bundle_inference_inverted(case):
    root, bundle, flair, t1 = case
    reference_ijk = bundle_own_probability(bundle, flair, t1)
    model = load_model(bundle)
    assert model.config.contract.axes == "ijk" and model.config.contract.orientation == "RAS"
    assert model.config.normalization == "zscore-nonzero" and model.config.input_order == ("FLAIR", "MPRAGE")
    assert (model.config.head, model.config.lesion_index, model.config.roi_size, model.config.overlap) == ("softmax", 1, (16, 16, 16), 0.5)
    result = segment(load_pair(flair, t1), model)
    reference = reference_ijk.transpose(2, 1, 0)  # file voxels (i, j, k) -> SimpleITK (k, j, i)
    assert reference.shape == result.probability.shape
    assert reference.std() > 1e-3  # the network's output varies
    r = np.corrcoef(result.probability.ravel(), reference.ravel())[0, 1]
    print(f"MONAI bundle: probability r = {r:.7f}, max |diff| = {np.abs(result.probability - reference).max():.2e}")
    assert r >= 0.999, r
    np.testing.assert_allclose(result.probability, reference, atol=1e-4)


def test_unmappable_transform_and_untrusted_code_are_refused(case, tmp_path):
    root, bundle, flair, t1 = case
    odd = write_bundle(tmp_path, inference_config([{"_target_": "ScaleIntensityRanged", "keys": "@image_key", "a_min": 0, "a_max": 100, "b_min": 0, "b_max": 1}]))
    with pytest.raises(ModelLoadError, match="ScaleIntensityRanged"):
        load_model(odd)
    cfg = inference_config()
    cfg["preprocessing"]["transforms"][0]["keys"] = "$'image'"
    coded = tmp_path / "coded"
    coded.mkdir()
    coded = write_bundle(coded, cfg)
    with pytest.raises(ModelLoadError, match="--trust-model"):
        load_model(coded)
    assert load_model(coded, trust=True).config.contract.orientation == "RAS"
    # a TorchScript model.ts is code: only with trust
    scripted = tmp_path / "scripted"
    shutil.copytree(bundle, scripted)
    net = load_model(bundle).network.network
    torch.jit.save(torch.jit.script(net), str(scripted / "models" / "model.ts"))
    (scripted / "models" / "model.pt").unlink()
    with pytest.raises(ModelLoadError, match="--trust-model"):
        load_model(scripted)
    assert load_model(scripted, trust=True).config.head == "softmax"


def test_resampling_bundle_equals_its_inference_inverted(tmp_path):
    """Spacingd to 1 mm on a 1.2 x 1.0 x 1.5 mm FLAIR: LesionXAI runs MONAI's own Spacing and Invertd's inverse on the whole volume."""
    from phantom_fixtures import small_phantom

    flair, t1 = write_phantom_pair(tmp_path, small_phantom(spacing=(2.0, 2.0, 2.0)), (1.2, 1.0, 1.5))
    spacing = {"_target_": "Spacingd", "keys": "@image_key", "pixdim": [1.0, 1.0, 1.0], "mode": "bilinear"}
    bundle = write_bundle(tmp_path, inference_config([spacing]))
    model = load_model(bundle)
    contract = model.config.contract
    assert contract.target_spacing == (1.0, 1.0, 1.0) and contract.resampling == "monai" and model.runs_in_model_space
    reference = bundle_own_probability(bundle, flair, t1).transpose(2, 1, 0)
    result = segment(load_pair(flair, t1), model)
    assert reference.shape == result.probability.shape and reference.std() > 1e-3
    r = np.corrcoef(result.probability.ravel(), reference.ravel())[0, 1]
    print(f"MONAI bundle with Spacingd: probability r = {r:.7f}, max |diff| = {np.abs(result.probability - reference).max():.2e}")
    assert r >= 0.999, r
