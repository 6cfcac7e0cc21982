"""The anchor's comparison architectures as presets: nnU-Net-style DynUNet and Swin UNETR."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.explain import ExplainSettings
from LesionXAILib.explain.cam import resolve_layer
from LesionXAILib.image_io import pair_from_images
from LesionXAILib.lesion_model import build_network
from LesionXAILib.model_config import PRESETS, ModelConfig
from LesionXAILib.model_loading import load_model
from LesionXAILib.segmentation import SegmentationSettings, segment


def _pair(shape_kji=(32, 32, 64)):
    rng = np.random.default_rng(0)
    flair = (rng.random(shape_kji) * 50 + 50).astype(np.float32)
    flair[:2] = 0
    images = [sitk.GetImageFromArray(a) for a in (flair, flair[::-1].copy())]
    for img in images:
        img.SetSpacing((1.0, 1.0, 1.2))
    return pair_from_images(images[0], images[1])


@pytest.mark.parametrize(("name", "divisor", "layer"), [("dynunet", 4, "upsamples.0"), ("swin-unetr", 32, "decoder2")])
def test_preset_builds_loads_its_state_dict_segments_and_has_a_cam_layer(tmp_path, name, divisor, layer):
    cfg = PRESETS[name]
    assert cfg.size_divisor == divisor and cfg.contract.axes == "ijk" and cfg.contract.crop_rule == "calibrate"
    torch.manual_seed(0)
    net = build_network(cfg)
    path = tmp_path / f"{name}.pth"
    torch.save(net.state_dict(), path)
    model = load_model(path, name)
    loaded = model.network.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in net.state_dict().items())
    pair = _pair()
    result = segment(pair, model, SegmentationSettings(min_size=1))
    assert result.probability.shape == pair.geometry.shape and np.isfinite(result.probability).all()
    assert 0.0 <= result.probability.min() <= result.probability.max() <= 1.0
    # one window (sizes are multiples of 32): the network saw the i, j, k array itself, as the anchor fed it
    net.eval()
    with torch.no_grad():
        x = torch.from_numpy(result.normalized)[None].permute(0, 1, 4, 3, 2)
        ref = torch.softmax(net(x), 1)[0, 1].permute(2, 1, 0).numpy()
    np.testing.assert_allclose(result.probability, ref, atol=1e-5)
    found, module = resolve_layer(model)
    assert found == layer and module is model.network.get_submodule(layer)


def test_uncalibrated_long_reach_presets_explain_whole_volumes_and_calibrated_ones_crop():
    for name in ("dynunet", "swin-unetr"):
        cfg = PRESETS[name]
        model = type("M", (), {"config": cfg})()
        assert ExplainSettings().resolved(model).full_volume
        assert not ExplainSettings(roi_margin_mm=20).resolved(model).full_volume  # a margin the user chose
        calibrated = type("M", (), {"config": cfg.replace(explain_margin_mm=14.0)})()
        settings = ExplainSettings().resolved(calibrated)
        assert not settings.full_volume and settings.roi_margin_mm == 14.0


def test_architecture_arguments_are_checked():
    bad = PRESETS["dynunet"].replace(architecture={"kernel_size": [3, 3]})
    with pytest.raises(ModelLoadError, match="dynunet"):
        build_network(bad)
    with pytest.raises(ModelLoadError, match="cannot be built from a config"):
        build_network(ModelConfig(name="x", network="nnunet"))


class _GlobalNet(torch.nn.Module):
    """logit = FLAIR + mean(FLAIR): every voxel reaches every other, so any crop changes the gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flair = x[:, :1] * self.scale
        return flair + flair.mean(dim=(2, 3, 4), keepdim=True)


def test_uncalibrated_calibrate_rule_is_never_silently_cropped_by_the_class_api():
    from LesionXAILib.explain import Gradient
    from LesionXAILib.lesion_model import LesionModel

    cfg = ModelConfig(name="global", contract={"crop_rule": "calibrate", "size_divisor": 1})
    model = LesionModel(_GlobalNet(), cfg).eval()
    shape = (12, 40, 44)
    image = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[5:7, 3:5, 3:5] = True
    g = Gradient(model).attribute(image, mask).numpy()  # default margin 12 mm would crop j, i to ~18 voxels
    # whole-volume gradient of sum_M (x_v + mean x): |M| / N everywhere off the lesion, also beyond any 12 mm crop
    np.testing.assert_allclose(g[0, 11, 39, 43], mask.sum() / mask.size, rtol=1e-5)
    chosen = Gradient(model).attribute(image, mask, margin_mm=4.0).numpy()  # a margin the user chose: cropped
    assert chosen[0, 11, 39, 43] == 0.0
