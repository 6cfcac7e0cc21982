"""The anchor preset: its labelling and probe element against scipy-made references, its detection rule, and
how ``--preset`` fills the command line (explicit options win)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from LesionXAILib.errors import ParameterError
from LesionXAILib.instances import label_components
from LesionXAILib.presets import PRESETS, apply_preset, get_preset, is_monai_unet, resolve_model_settings
from LesionXAILib.probes.context import ANCHOR_STEPS, ContextSettings
from LesionXAILib.probes.detection import score_prediction
from LesionXAILib.probes.structuring import dilate_steps, dilation_steps

STRUCTURE_18 = ndimage.generate_binary_structure(3, 2)


def _scipy_instances(mask: np.ndarray, min_size: int) -> np.ndarray:
    """The anchor's labelling written with scipy: 18-connected components, those of >= min_size voxels renumbered in order."""
    labels, n = ndimage.label(mask, structure=STRUCTURE_18)
    out = np.zeros_like(labels)
    new = 0
    for i in range(1, n + 1):
        component = labels == i
        if component.sum() >= min_size:
            new += 1
            out[component] = new
    return out


def _speckle(shape, seed, fraction=0.08):
    rng = np.random.default_rng(seed)
    return ndimage.binary_dilation(rng.random(shape) < fraction * 0.2) & (rng.random(shape) < 0.7)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_anchor_labelling_equals_scipy_18_connected_components_larger_than_5(seed):
    mask = _speckle((20, 24, 18), seed)
    ours, n = label_components(mask, connectivity=18, min_size_voxels=6)
    ref = _scipy_instances(mask, 6)
    assert n == ref.max() and n > 3
    np.testing.assert_array_equal(ours, ref)
    # 18 differs from 26 on this mask (corner-touching voxels join under 26 only)
    assert label_components(mask, 26, 6)[1] != n or not np.array_equal(label_components(mask, 26, 6)[0], ours)


def test_anchor_element_is_n_fold_18_connected_dilation():
    mask = np.zeros((30, 30, 30), dtype=bool)
    mask[12:15, 13:15, 14] = True
    mask[20, 8, 9] = True
    steps = dilation_steps(mask, 9)
    grown = mask.copy()
    for n in range(1, 10):
        grown = ndimage.binary_dilation(grown, structure=STRUCTURE_18)  # one step at a time, as the anchor looped
        np.testing.assert_array_equal(steps <= n, grown, err_msg=f"step {n}")
        np.testing.assert_array_equal(dilate_steps(mask, n), grown)
    assert np.isinf(steps[~grown]).all() and (steps[mask] == 0).all()
    # not a ball: 3 steps reach (3, 3, 0) diagonally but not (3, 3, 3)
    one = np.zeros((9, 9, 9), dtype=bool)
    one[4, 4, 4] = True
    s = dilation_steps(one, 5)
    assert s[7, 4, 4] == 3 and s[7, 7, 4] == 3 and s[7, 7, 7] == 5  # (3, 3, 3): 9 / 2 coordinates per step


def test_any_voxel_detection_rule():
    prob = np.zeros((10, 10, 10), dtype=np.float32)
    lesion = np.zeros(prob.shape, dtype=bool)
    lesion[4:6, 4:6, 4:6] = True
    prob[4, 4, 4] = 0.35  # one voxel above 0.3: a component of 1 voxel, below the anchor's 6-voxel minimum
    assert score_prediction(prob, lesion, 0.3, min_size_voxels=6, connectivity=18, rule="any").detected
    assert not score_prediction(prob, lesion, 0.3, min_size_voxels=6, connectivity=18, rule="component").detected
    assert not score_prediction(prob, lesion, 0.4, 6, 18, rule="any").detected
    with pytest.raises(ParameterError, match="detection rule"):
        score_prediction(prob, lesion, 0.3, rule="nearby")


def test_anchor_probe_settings():
    s = ContextSettings.anchor()
    assert s.radii_mm == tuple(float(n) for n in range(1, 35)) == ANCHOR_STEPS
    assert (s.element, s.detection, s.fill) == ("anchor", "any", "zero")
    assert s.reach_mm((1.0, 1.0, 1.5)) == 34 * 1.5
    with pytest.raises(ParameterError, match="whole dilation steps"):
        ContextSettings(radii_mm=(1.5,), element="anchor")
    with pytest.raises(ParameterError, match="probe element"):
        ContextSettings(element="cube")


def test_anchor_probe_masks_by_dilation_steps():
    """The probe keeps exactly the n-fold dilation: a model whose output is its input shows which voxels were kept."""
    from explain_fixtures import unit_geometry
    from LesionXAILib.lesion_model import LesionModel
    from LesionXAILib.model_config import ModelConfig
    from LesionXAILib.probes import context_probe

    class Echo(torch.nn.Module):
        def forward(self, x):
            return x[:, :1] * 40 - 20  # logit > 0 wherever the FLAIR channel is kept (image 1), < 0 where filled with 0

    shape = (24, 24, 24)
    image = np.ones((2, *shape), dtype=np.float32)
    lesion = np.zeros(shape, dtype=bool)
    lesion[11:13, 11:13, 11:13] = True
    model = LesionModel(Echo(), ModelConfig(name="echo", head="sigmoid", threshold=0.5)).eval()
    settings = ContextSettings.anchor(radii_mm=(1.0, 2.0, 3.0), receptive_margin_mm=0.0)
    curve = context_probe(model, image, lesion, unit_geometry(shape), settings)
    assert curve.detected.all()
    grown = lesion
    for n, voxels in zip((1, 2, 3), curve.predicted_voxels):
        grown = ndimage.binary_dilation(grown, structure=STRUCTURE_18)
        assert voxels == grown.sum()  # the kept region is the one 18-connected component overlapping the lesion


def _namespace(**given):
    base = dict(preset=None, min_size=None, min_size_unit="voxels", connectivity=None, methods=None, aggregation=None,
                samples=None, noise_level=None, cam_layer=None, probe_element=None, fill=None, threshold=None)  # fmt: skip
    base.update(given)
    return argparse.Namespace(**base)


def test_preset_fills_unset_options_and_explicit_ones_win():
    args = _namespace(preset="anchor", samples=8)
    assert apply_preset(args) is PRESETS["anchor"]
    assert (args.connectivity, args.min_size, args.samples, args.noise_level) == (18, 6, 8, 0.05)
    assert args.methods == "smoothgrad,gradcampp_anchor" and args.cam_layer == "module.model.1.submodule.2.conv"
    assert (args.probe_element, args.fill, args.aggregation) == ("anchor", "zero", "sum")
    plain = _namespace()
    apply_preset(plain)
    assert (plain.connectivity, plain.min_size, plain.samples, plain.methods) == (26, 3, 16, "smoothgrad,gradcampp")
    with pytest.raises(ParameterError, match="unknown preset 'nope'"):
        get_preset("nope")


def test_library_defaults_are_what_the_command_line_ships():
    # a Python-API explanation with default settings must be the one `lesionxai explain` writes without options
    from LesionXAILib.explain.settings import ExplainSettings
    from LesionXAILib.presets import BUILTIN_DEFAULTS

    plain = _namespace()
    apply_preset(plain)
    api = ExplainSettings()
    assert ",".join(api.methods) == plain.methods == BUILTIN_DEFAULTS["methods"]
    assert (api.samples, api.noise_level, api.aggregation) == (plain.samples, plain.noise_level, plain.aggregation)


def test_preset_threshold_and_cam_layer_follow_the_network():
    from explain_fixtures import tiny_model, tiny_unet

    unet = tiny_unet(seed=1)
    args = _namespace(preset="anchor")
    apply_preset(args)
    resolve_model_settings(args, unet)
    assert is_monai_unet(unet) and args.threshold == 0.3
    assert args.cam_layer == "model.1.submodule.2.0.conv"  # residual units: the same transposed convolution
    other = _namespace(preset="anchor")
    apply_preset(other)
    with pytest.raises(ParameterError, match="anchor's CAM layer"):
        resolve_model_settings(other, tiny_model(seed=1))
    assert other.threshold == 0.4
    explicit = _namespace(preset="anchor", threshold=0.6, cam_layer="model.1")
    apply_preset(explicit)
    resolve_model_settings(explicit, unet)
    assert (explicit.threshold, explicit.cam_layer) == (0.6, "model.1")


def test_anchor_unet_layer_name_exists_in_the_anchor_network():
    from LesionXAILib.explain.cam import resolve_layer
    from LesionXAILib.lesion_model import LesionModel, build_network
    from LesionXAILib.model_config import get_config

    cfg = get_config("ies-unet").replace(channels=(4, 8, 8, 8, 8))  # the anchor's layout, few channels
    model = LesionModel(build_network(cfg), cfg)
    assert resolve_layer(model, "module.model.1.submodule.2.conv")[0] == "model.1.submodule.2.conv"


def test_segment_command_with_the_anchor_preset(tmp_path):
    from explain_fixtures import saved_subject
    from LesionXAILib.cli.main import main

    from LesionXAILib.image_io import load_pair
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.segmentation import segment

    directory, model_path, _ = saved_subject(tmp_path)
    probability = segment(load_pair(directory / "flair.nii.gz", directory / "t1.nii.gz"), load_model(model_path)).probability
    threshold = float(np.quantile(probability, 0.97))  # components of more than 5 voxels
    common = ["-q", "segment", "--flair", str(directory / "flair.nii.gz"), "--t1", str(directory / "t1.nii.gz"),
              "--model", str(model_path), "--threshold", f"{threshold:.6f}"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "a"), "--preset", "anchor"]) == 0
    assert main([*common, "--out", str(tmp_path / "b"), "--connectivity", "18", "--min-size", "6"]) == 0
    a = json.loads((tmp_path / "a" / "instances.json").read_text())
    b = json.loads((tmp_path / "b" / "instances.json").read_text())
    assert a["instances"] == b["instances"] and len(a["instances"]) > 0
    assert all(row["voxels"] >= 6 for row in a["instances"])
