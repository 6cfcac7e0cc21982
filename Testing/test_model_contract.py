"""The input contract: serialised with the config, resolved like MONAI's own loading, honoured by every caller.

Every expected array here comes from an independent route: MONAI ``LoadImage`` (+ ``Orientation``) reading
the NIfTI file LesionXAI read with SimpleITK, or a tensor built by hand in the test.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from engine_fixtures import tiny_config, tiny_model
from LesionXAILib.errors import ModelLoadError
from LesionXAILib.explain import ExplainSettings, explain_instance
from LesionXAILib.geometry import Geometry
from LesionXAILib.image_io import load_pair
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import PRESETS, ModelConfig
from LesionXAILib.model_loading import LESIONXAI_FORMAT, load_model, save_checkpoint
from LesionXAILib.models.contract import InputContract
from LesionXAILib.models.space import resolve_space
from LesionXAILib.segmentation import SegmentationSettings, prepare_input, segment

# i -> -y (LPS), j -> +z, k -> -x: a permuted and flipped voxel-to-world direction
TWISTED = (0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _write(path, array_kji, spacing=(1.0, 1.0, 1.0), direction=TWISTED):
    img = sitk.GetImageFromArray(np.asarray(array_kji, dtype=np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin((3.0, -2.0, 7.0))
    img.SetDirection(direction)
    sitk.WriteImage(img, str(path))
    return img


def _monai_array(path, orientation: str) -> np.ndarray:
    """Return the (spatial) array MONAI's LoadImage (+ Orientation) gives for a NIfTI file."""
    from monai.transforms import EnsureChannelFirst, LoadImage, Orientation

    data = EnsureChannelFirst(channel_dim="no_channel")(LoadImage(image_only=True)(str(path)))
    if orientation != "as-stored":
        data = Orientation(axcodes=orientation)(data)
    return np.asarray(data[0])


# ----------------------------------------------------------------------------------------- serialisation


def test_contract_round_trips_and_old_configs_keep_simpleitk_order(tmp_path):
    cfg = PRESETS["ies-unet"]
    assert cfg.contract.axes == "ijk" and cfg.threshold == 0.3
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("contract", "network", "architecture")}
    assert ModelConfig.from_dict(old).contract == InputContract()  # written before contracts: k, j, i as stored
    contract = InputContract(axes="ijk", orientation="ras", target_spacing=(1, 1.5, 2), crop_rule="calibrate")
    assert contract.orientation == "RAS"
    model = tiny_model(contract=contract.to_dict())
    loaded = load_model(save_checkpoint(model, tmp_path / "m.pt"))
    assert loaded.config.contract == contract and loaded.config == model.config
    # a checkpoint written by an earlier LesionXAI (config without the new keys) loads with today's behaviour
    legacy = {k: v for k, v in tiny_config().to_dict().items() if k not in ("contract", "network", "architecture")}
    torch.save({"format": LESIONXAI_FORMAT, "config": legacy, "state_dict": model.network.state_dict()}, tmp_path / "old.pt")
    old_model = load_model(tmp_path / "old.pt")
    assert old_model.model_space().is_identity
    x = torch.randn(1, 2, 8, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(old_model(x), model.network(x))


@pytest.mark.parametrize(
    "bad",
    [{"axes": "xyz"}, {"orientation": "RAR"}, {"target_spacing": [1, 0, 1]}, {"crop_rule": "sometimes"}, {"size_divisor": 0}, {"flip": 1}],
)
def test_bad_contracts_are_clear_errors(bad):
    with pytest.raises(ModelLoadError, match="input contract"):
        ModelConfig.from_dict({**tiny_config().to_dict(), "contract": bad})


# ----------------------------------------------------------------------------------------- model space


@pytest.mark.parametrize(("orientation", "axes"), [("as-stored", "ijk"), ("as-stored", "kji"), ("RAS", "ijk"), ("LPS", "ijk"), ("RAS", "kji"), ("PIR", "jik")])
def test_model_space_is_what_monai_loads(tmp_path, orientation, axes):
    rng = np.random.default_rng(1)
    arr = rng.random((5, 6, 7)).astype(np.float32)
    img = _write(tmp_path / "a.nii.gz", arr, spacing=(1.0, 2.0, 3.0))
    space = resolve_space(InputContract(axes=axes, orientation=orientation), Geometry.from_image(img))
    x = torch.from_numpy(arr)[None, None]
    ours = space.to_model(x)[0, 0].numpy()
    ref = _monai_array(tmp_path / "a.nii.gz", orientation)  # axes i', j', k' after reorientation
    ref = ref.transpose(tuple("ijk".index(a) for a in axes))
    np.testing.assert_array_equal(ours, ref)
    assert torch.equal(space.to_canonical(space.to_model(x)), x)


def test_reorienting_model_must_be_bound_first():
    model = tiny_model(contract={"axes": "ijk", "orientation": "RAS"})
    with pytest.raises(ModelLoadError, match="bind"):
        model(torch.zeros(1, 2, 8, 8, 8))


class _PositionNet(nn.Module):
    """Logit = FLAIR channel + a ramp along the first *model* axis: a network that knows which way it looks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1.0, 1.0, x.shape[2], dtype=x.dtype).view(1, 1, -1, 1, 1)
        return x[:, :1] + ramp


def test_segmentation_comes_back_on_the_flair_grid_exactly(tmp_path):
    rng = np.random.default_rng(2)
    shape = (9, 14, 11)
    flair = (rng.random(shape) * 50 + 20).astype(np.float32)
    flair[0] = 0
    _write(tmp_path / "flair.nii.gz", flair)
    _write(tmp_path / "t1.nii.gz", flair[::-1].copy())
    pair = load_pair(tmp_path / "flair.nii.gz", tmp_path / "t1.nii.gz")
    contract = InputContract(axes="ijk", orientation="RAS", size_divisor=1)  # one window, no padding: the ramp spans the image
    model = LesionModel(_PositionNet(), tiny_config(name="position", contract=contract.to_dict(), roi_size=(64, 64, 64)))
    result = segment(pair, model, SegmentationSettings(threshold=0.5, min_size=1))
    # expected, from MONAI's view of the same files: z-score on non-zero voxels, ramp along the RAS-first axis
    from LesionXAILib.normalization import zscore_nonzero

    model_flair = _monai_array(tmp_path / "flair.nii.gz", "RAS")
    normalised = zscore_nonzero(model_flair[None])[0]
    ramp = np.linspace(-1.0, 1.0, model_flair.shape[0], dtype=np.float32).reshape(-1, 1, 1)
    expected_model = 1.0 / (1.0 + np.exp(-(normalised + ramp)))
    # where each model-space voxel lives on the FLAIR grid: read a canonical index volume the same way
    index = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    _write(tmp_path / "index.nii.gz", index)
    where = _monai_array(tmp_path / "index.nii.gz", "RAS").astype(np.int64)
    expected = np.empty(np.prod(shape), np.float32)
    expected[where.ravel()] = expected_model.ravel()
    np.testing.assert_allclose(result.probability, expected.reshape(shape), rtol=1e-5, atol=1e-6)
    assert result.probability.shape == shape
    assert model.describe()["model_space"]["model_axes"] != "kji"


# ----------------------------------------------------------------------------------------- crops and CAMs


class _StridedNet(nn.Module):
    """A stride-2 encoder/decoder with a skip: exact on crops only if they start on its even grid."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.down = nn.Conv3d(2, 4, 3, stride=2, padding=1)
        self.act = nn.Tanh()
        self.up = nn.ConvTranspose3d(4, 4, 2, stride=2)
        self.head = nn.Conv3d(6, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[2:]
        x = nn.functional.pad(x, [v for s in reversed(shape) for v in (0, s % 2)])  # runs on any size (for the control)
        out = self.head(torch.cat([self.up(self.act(self.down(x))), x], 1))
        return out[:, :, : shape[0], : shape[1], : shape[2]]


def _strided_model(divisor: int) -> LesionModel:
    contract = InputContract(axes="ijk", orientation="LPS", size_divisor=divisor)
    cfg = tiny_config(name="strided", contract=contract.to_dict(), cam_layer="act")
    return LesionModel(_StridedNet(), cfg).eval()


def _geometry(shape_kji) -> Geometry:
    img = sitk.Image([int(s) for s in shape_kji[::-1]], sitk.sitkFloat32)
    img.SetDirection(TWISTED)
    return Geometry.from_image(img)


def test_crops_equal_the_whole_volume_under_a_flipped_permuted_contract():
    shape = (19, 22, 25)  # odd lengths: the whole volume is padded at the canonical end, i.e. the model-space start
    rng = np.random.default_rng(4)
    image = rng.standard_normal((2, *shape)).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[5:7, 15:17, 4:6] = True
    geometry = _geometry(shape)
    model = _strided_model(divisor=2).bind(geometry)
    assert any(model.model_space().flips) and model.model_space().perm != (0, 1, 2)
    base = ExplainSettings(methods=("gradient", "gradcam"), cam_layer="act", roi_margin_mm=6.0)
    for aggregation in ("sum", "max"):
        settings = base.replace(aggregation=aggregation)
        crop = explain_instance(model, image, mask, geometry, settings)
        whole = explain_instance(model, image, mask, geometry, settings.replace(full_volume=True))
        assert not crop.box["full_volume"] and crop.box["stop_kji"] != list(shape) or crop.box["start_kji"] != [0, 0, 0]
        for key in ("gradient_flair", "gradient_mprage", "gradcam"):
            ref = whole.maps[key]
            assert np.abs(ref).max() > 0
            np.testing.assert_allclose(crop.maps[key], ref, atol=1e-5 * np.abs(ref).max(), err_msg=f"{aggregation} {key}")
    # the check has teeth: crops off the network's grid (a declared divisor of 1) are not exact
    even = (20, 22, 26)
    image, geometry = rng.standard_normal((2, *even)).astype(np.float32), _geometry(even)
    mask = np.zeros(even, bool)
    mask[5:7, 15:18, 9:12] = True
    loose = _strided_model(divisor=1).bind(geometry)
    # the fidelity guard would widen such a crop until it is exact: switched off to see the raw crop
    crop = explain_instance(loose, image, mask, geometry, base.replace(fidelity_check=False))
    whole = explain_instance(loose, image, mask, geometry, base.replace(full_volume=True))
    assert not np.allclose(crop.maps["gradient_flair"], whole.maps["gradient_flair"], atol=1e-5 * np.abs(whole.maps["gradient_flair"]).max())


class _FeatureNet(nn.Module):
    """The CAM layer copies the FLAIR channel at full resolution; the logit is that feature."""

    def __init__(self) -> None:
        super().__init__()
        self.feature = nn.Conv3d(1, 1, 1)  # a copy with parameters, as in any network the CAM layer has a graph
        nn.init.ones_(self.feature.weight)
        nn.init.zeros_(self.feature.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature(x[:, :1])


def test_cam_maps_come_back_to_the_canonical_grid():
    shape = (7, 10, 13)
    rng = np.random.default_rng(5)
    image = rng.standard_normal((2, *shape)).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[3, 4:6, 6] = True
    geometry = _geometry(shape)
    cfg = tiny_config(name="feature", contract=InputContract(axes="ijk", orientation="RAS", size_divisor=1).to_dict(), cam_layer="feature")
    model = LesionModel(_FeatureNet(), cfg).bind(geometry)
    assert model.model_space().perm != (0, 1, 2)
    cam = explain_instance(model, image, mask, geometry, ExplainSettings(methods=("gradcam",), full_volume=True)).maps["gradcam"]
    # Grad-CAM of a logit equal to the feature: w = |M| / N > 0, map = w * ReLU(FLAIR) on the FLAIR grid
    expected = mask.sum() / mask.size * np.maximum(image[0], 0)
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------------------- resampling


class _SmoothNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.conv = nn.Conv3d(2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_resampling_contract_differentiates_through_the_resampling_and_explains_whole_volumes():
    import torch.nn.functional as F

    shape = (10, 12, 14)
    spacing_ijk = (1.0, 1.0, 2.0)
    img = sitk.Image([shape[2], shape[1], shape[0]], sitk.sitkFloat32)
    img.SetSpacing(spacing_ijk)
    geometry = Geometry.from_image(img)
    contract = InputContract(axes="ijk", target_spacing=(2.0, 2.0, 1.0))
    net = _SmoothNet()
    model = LesionModel(net, tiny_config(name="resampled", contract=contract.to_dict())).bind(geometry)
    x = torch.randn(1, 2, *shape, requires_grad=True)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[4:6, 5:8, 6:9] = True
    out = model(x)
    assert out.shape == (1, 1, *shape)
    (g,) = torch.autograd.grad(out[0, 0][mask].sum(), x)
    # the same pipeline written out: i,j,k order, zoom (1/2, 1/2, 2) to the target spacing, back, k,j,i order
    x2 = x.detach().clone().requires_grad_(True)
    y = x2.permute(0, 1, 4, 3, 2)
    z = net(F.interpolate(y, size=(7, 6, 20), mode="trilinear", align_corners=False))
    back = F.interpolate(z, size=(14, 12, 10), mode="trilinear", align_corners=False).permute(0, 1, 4, 3, 2)
    (g_ref,) = torch.autograd.grad(back[0, 0][mask].sum(), x2)
    torch.testing.assert_close(g, g_ref)
    assert ExplainSettings().resolved(model).full_volume
    # a chosen margin on a model that does not resample keeps its crop (an uncalibrated one without a margin
    # is explained on the whole volume by the fidelity guard's rule, whatever its contract)
    assert not ExplainSettings(roi_margin_mm=12.0).resolved(tiny_model()).full_volume


def test_prepare_input_follows_the_channel_names(tmp_path):
    rng = np.random.default_rng(7)
    flair = (rng.random((6, 7, 8)) * 10 + 1).astype(np.float32)
    t1 = (rng.random((6, 7, 8)) * 30 + 5).astype(np.float32)
    _write(tmp_path / "f.nii.gz", flair, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    _write(tmp_path / "t.nii.gz", t1, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    pair = load_pair(tmp_path / "f.nii.gz", tmp_path / "t.nii.gz")
    swapped = LesionModel(nn.Identity(), tiny_config(input_order=("T1w", "FLAIR"), normalization="none"))
    x = prepare_input(pair, swapped)
    np.testing.assert_allclose(x[0], t1, rtol=1e-6)
    np.testing.assert_allclose(x[1], flair, rtol=1e-6)
    with pytest.raises(ModelLoadError, match="PD"):
        prepare_input(pair, LesionModel(nn.Identity(), tiny_config(input_order=("FLAIR", "PD"))))
