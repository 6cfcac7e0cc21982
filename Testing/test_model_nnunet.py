"""nnU-Net v2 trained-model folders as --model DIR: segmentation equals nnUNetPredictor's, gradients a brute-force one.

The folder is written by the test (Testing/nnunet_fixtures.py): a 3d_fullres PlainConvUNet with a
non-identity transpose_forward, the T1 as channel 0 and two trained folds. The references are
computed by nnunetv2 itself (its predictor, run in-process and sequentially on the CPU; its
preprocessor) and by torch autograd on the whole volume, never by LesionXAI's code.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

pytest.importorskip("nnunetv2")

from nnunet_fixtures import FOLDS, nnunet_network, tiny_nnunet_case  # noqa: E402

from LesionXAILib.errors import ModelLoadError  # noqa: E402
from LesionXAILib.explain.api import explain_instance  # noqa: E402
from LesionXAILib.explain.settings import ExplainSettings  # noqa: E402
from LesionXAILib.image_io import load_pair  # noqa: E402
from LesionXAILib.model_loading import load_model  # noqa: E402
from LesionXAILib.segmentation import segment  # noqa: E402


def _nnunet_predictor(folder, folds=FOLDS, mirror: bool = False):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        tile_step_size=0.5, use_gaussian=True, use_mirroring=mirror, perform_everything_on_device=False,
        device=torch.device("cpu"), verbose=False, allow_tqdm=False,
    )  # fmt: skip
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=tuple(folds))
    return predictor


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


# mirroring runs 8 flips per window: one fold keeps it quick
@pytest.mark.parametrize("mirror, folds", [(False, FOLDS), (True, (1,))])
def test_segmentation_equals_nnunet_predictor(tmp_path, mirror, folds):
    folder, flair, t1, _ = tiny_nnunet_case()
    predictor = _nnunet_predictor(folder, folds, mirror=mirror)
    predictor.predict_from_files_sequential([[str(t1), str(flair)]], [str(tmp_path / "case")], save_probabilities=True)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "case.nii.gz"))) > 0
    reference_prob = np.load(tmp_path / "case.npz")["probabilities"][1]

    model = load_model(folder, options={"folds": ",".join(map(str, folds)), "mirror": mirror})
    result = segment(load_pair(flair, t1), model)
    mine = result.probability > 0.5
    print(f"nnU-Net mirror={mirror}: Dice {_dice(mine, reference):.4f} on {reference.sum()} voxels, probability r = "
          f"{np.corrcoef(result.probability.ravel(), reference_prob.ravel())[0, 1]:.6f}")
    assert reference.sum() > 20  # the folds segment something
    assert _dice(mine, reference) >= 0.99
    assert np.corrcoef(result.probability.ravel(), reference_prob.ravel())[0, 1] >= 0.999


def test_contract_and_config_come_from_the_plans():
    folder, *_ = tiny_nnunet_case()
    model = load_model(folder)
    cfg = model.config
    assert cfg.input_order == ("MPRAGE", "FLAIR")  # dataset.json: channel 0 is the T1
    assert cfg.contract.axes == "ikj"  # transpose_forward [2, 0, 1] of (z, y, x) = (k, j, i)
    assert cfg.contract.target_spacing == (1.8, 2.4, 2.0)
    assert cfg.contract.size_divisor == 4
    assert (cfg.head, cfg.out_channels, cfg.lesion_index) == ("softmax", 2, 1)
    assert cfg.roi_size == (16, 16, 16) and cfg.overlap == 0.5
    assert cfg.extra["nnunet"]["folds"] == ["0", "1"]
    single = load_model(folder, options={"folds": [1]})
    assert len(single.network.folds) == 1 and single.config.cam_layer == "folds.0.decoder.stages.0"


def test_instance_gradient_equals_brute_force_through_nnunet_preprocessing():
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from scipy import ndimage

    folder, flair, t1, _ = tiny_nnunet_case()
    model = load_model(folder)
    result = segment(load_pair(flair, t1), model)
    labels, n = ndimage.label(result.probability > 0.5)
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    lesion = labels == 1 + int(np.argmax(sizes))
    explanation = explain_instance(
        model, result.normalized, lesion, result.geometry,
        ExplainSettings(methods=("gradient",), full_volume=True), instance_id=1,
    )  # fmt: skip

    # brute force: nnU-Net's own preprocessing of the files, each fold's network on the whole volume, autograd
    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    manager = PlansManager(plans)
    data, _, props = DefaultPreprocessor(verbose=False).run_case(
        [str(t1), str(flair)], None, manager, manager.get_configuration("3d_fullres"), dataset
    )
    assert tuple(data.shape[1:]) == tuple(np.array(lesion.shape)[plans["transpose_forward"]])  # no crop, no resampling
    x = torch.from_numpy(data)[None].requires_grad_(True)
    mask = torch.from_numpy(lesion.transpose(plans["transpose_forward"]).copy())
    target = 0
    for f in FOLDS:
        network = nnunet_network(plans)
        ckpt = torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        network.load_state_dict(ckpt["network_weights"])
        network.eval()
        target = target + network(x)[0, 1][mask].sum() / len(FOLDS)
    target.backward()
    grad = x.grad[0].numpy().transpose([0] + [1 + a for a in plans["transpose_backward"]])  # back to (C, k, j, i)
    # channel 0 of nnU-Net is the T1 (MPRAGE), channel 1 the FLAIR
    for name, channel in (("gradient_mprage", 0), ("gradient_flair", 1)):
        mine = explanation.maps[name]
        assert np.abs(mine).max() > 0
        r = np.corrcoef(mine.ravel(), grad[channel].ravel())[0, 1]
        print(f"nnU-Net {name}: r = {r:.7f}, max |diff| / max |grad| = {np.abs(mine - grad[channel]).max() / np.abs(grad[channel]).max():.2e}")
        assert r >= 0.999, (name, r)
        np.testing.assert_allclose(mine, grad[channel], rtol=1e-3, atol=1e-4 * np.abs(grad[channel]).max())


def test_bad_folders_fail_with_one_line(tmp_path):
    folder, *_ = tiny_nnunet_case()
    with pytest.raises(ModelLoadError, match="fold"):
        load_model(folder, options={"folds": "0,7"})
    with pytest.raises(ModelLoadError, match="drop --config"):
        load_model(folder, config="ies-unet")
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    plans = json.loads((copy / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "os.system"
    (copy / "plans.json").write_text(json.dumps(plans))
    with pytest.raises(ModelLoadError, match="outside torch.nn"):
        load_model(copy)
    # a checkpoint that needs unpickling of arbitrary objects is refused without trust
    ckpt = torch.load(copy / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    ckpt["init_args"]["odd"] = ModelLoadError("a pickled object")
    torch.save(ckpt, copy / "fold_0" / "checkpoint_final.pth")
    shutil.copy(folder / "plans.json", copy / "plans.json")
    with pytest.raises(ModelLoadError, match="--trust-model"):
        load_model(copy)
    dataset = json.loads((copy / "dataset.json").read_text())
    dataset["channel_names"] = {"0": "T1", "1": "T2"}
    (copy / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(ModelLoadError, match="neither a FLAIR nor a T1"):
        load_model(copy, trust=True)


def test_command_line_takes_the_folder_with_folds(tmp_path):
    from LesionXAILib.cli.main import main

    folder, flair, t1, _ = tiny_nnunet_case()
    out = tmp_path / "out"
    code = main(["-q", "segment", "--flair", str(flair), "--t1", str(t1), "--out", str(out), "--model", str(folder), "--folds", "1"])
    assert code == 0
    summary = json.loads((out / "instances.json").read_text())
    assert summary["model"]["config"]["extra"]["nnunet"]["folds"] == ["1"]
    assert summary["model"]["config"]["contract"]["axes"] == "ikj"
