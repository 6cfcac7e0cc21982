"""nnU-Net folders whose target spacing differs from the image's, with a zero border nnU-Net crops away.

The model is trained at 1 mm isotropic; the FLAIR/T1 are 1.2 x 1.0 x 1.5 mm (i, j, k) with zeros
around the head (Testing/nnunet_fixtures.resampled_nnunet_case). References come from nnunetv2
itself: its predictor for the segmentation and probabilities, and for the gradient a finite
difference through nnU-Net's own numpy pipeline (crop to its bounding box, transpose, its
resampling function, the folds' networks in float64 on the whole volume, its probability
resampling back) along random directions: LesionXAI's gradient is differentiated *through*
nnU-Net's resampling onto the FLAIR grid.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

pytest.importorskip("nnunetv2")

from nnunet_fixtures import FOLDS, nnunet_network, resampled_nnunet_case  # noqa: E402

from LesionXAILib.explain.api import explain_instance  # noqa: E402
from LesionXAILib.explain.settings import ExplainSettings  # noqa: E402
from LesionXAILib.image_io import load_pair  # noqa: E402
from LesionXAILib.model_loading import load_model  # noqa: E402
from LesionXAILib.segmentation import segment  # noqa: E402


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.fixture(scope="module")
def case():
    folder, flair, t1, _ = resampled_nnunet_case()
    model = load_model(folder)
    result = segment(load_pair(flair, t1), model)
    return folder, flair, t1, model, result


def test_probability_equals_nnunet_predictor_with_resampling_and_zero_border(case, tmp_path):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder, flair, t1, model, result = case
    assert model.config.contract.target_spacing == (1.0, 1.0, 1.0) and model.config.contract.crop_nonzero
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(flair)))
    assert sitk.ReadImage(str(flair)).GetSpacing() == pytest.approx((1.2, 1.0, 1.5))
    assert (raw[-3:] == 0).all() and (raw[:, :2] == 0).all()  # a zero border nnU-Net crops away
    predictor = nnUNetPredictor(
        tile_step_size=0.5, use_gaussian=True, use_mirroring=False, perform_everything_on_device=False,
        device=torch.device("cpu"), verbose=False, allow_tqdm=False,
    )  # fmt: skip
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=FOLDS)
    predictor.predict_from_files_sequential([[str(t1), str(flair)]], [str(tmp_path / "case")], save_probabilities=True)
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "case.nii.gz"))) > 0
    reference_prob = np.load(tmp_path / "case.npz")["probabilities"][1]
    mine = result.probability > 0.5
    r = np.corrcoef(result.probability.ravel(), reference_prob.ravel())[0, 1]
    print(f"nnU-Net resampled + cropped: Dice {_dice(mine, reference):.4f} on {reference.sum()} voxels, probability r = {r:.6f}, "
          f"max |diff| {np.abs(result.probability - reference_prob).max():.2e}")
    assert reference.sum() > 20
    assert _dice(mine, reference) >= 0.99
    assert r >= 0.999
    assert result.probability[-3:].max() < 1e-6 and result.probability[:, :2].max() < 1e-6


def test_instance_gradient_equals_finite_differences_through_nnunet_resampling(case):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from scipy import ndimage

    folder, flair, t1, model, result = case
    labels, n = ndimage.label(result.probability > 0.5)
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    lesion = labels == 1 + int(np.argmax(sizes))
    explanation = explain_instance(
        model, result.normalized, lesion, result.geometry, ExplainSettings(methods=("gradient",), full_volume=True), instance_id=1
    )
    grad = np.stack([explanation.maps["gradient_mprage"], explanation.maps["gradient_flair"]]).astype(np.float64)  # nnU-Net order

    plans = json.loads((folder / "plans.json").read_text())
    dataset = json.loads((folder / "dataset.json").read_text())
    manager = PlansManager(plans)
    cm = manager.get_configuration("3d_fullres")
    tf = plans["transpose_forward"]
    reference_data, _, props = DefaultPreprocessor(verbose=False).run_case([str(t1), str(flair)], None, manager, cm, dataset)
    box = tuple(slice(int(a), int(b)) for a, b in props["bbox_used_for_cropping"])
    spacing = [props["spacing"][i] for i in tf]
    networks = []
    for f in FOLDS:
        network = nnunet_network(plans)
        network.load_state_dict(torch.load(folder / f"fold_{f}" / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"])
        networks.append(network.double().eval())
    mask = lesion.transpose(tf)[box]

    def preprocessed(z: np.ndarray) -> np.ndarray:
        crop = z.transpose([0] + [1 + t for t in tf])[(slice(None),) + box]
        return cm.resampling_fn_data(crop, compute_new_shape(crop.shape[1:], spacing, cm.spacing), spacing, cm.spacing)

    def target(z: np.ndarray) -> float:
        data = torch.from_numpy(preprocessed(z))[None]
        pads = [(-s) % 4 for s in data.shape[2:]]  # the network on the whole volume, padded at the end to its size multiple
        data = torch.nn.functional.pad(data, [v for p in reversed(pads) for v in (0, p)])
        with torch.no_grad():
            logits = sum(net(data) for net in networks)[0] / len(networks)
        logits = logits[(slice(None),) + tuple(slice(0, s - p) for s, p in zip(logits.shape[1:], pads))].numpy()
        back = cm.resampling_fn_probabilities(logits, mask.shape, cm.spacing, spacing)
        return float(back[1][mask].sum())

    z = result.normalized.astype(np.float64)
    # LesionXAI's normalisation and nnU-Net's preprocessing agree on what the network sees
    np.testing.assert_allclose(preprocessed(z), reference_data, atol=1e-4)
    rng = np.random.default_rng(0)
    directions = [v / np.linalg.norm(v) for v in [rng.normal(size=z.shape) for _ in range(4)] + [grad]]  # unit vectors
    eps = 1e-4  # float64 pipeline: small enough that no ReLU or clipping kink is crossed
    for v in directions:
        fd = (target(z + eps * v) - target(z - eps * v)) / (2 * eps)
        mine = float((grad * v).sum())
        print(f"nnU-Net resampled: directional derivative {mine:.6g} vs finite difference {fd:.6g}")
        # LesionXAI's gradient is float32: within 0.1 % of the gradient's norm along every direction
        assert mine == pytest.approx(fd, rel=1e-3, abs=1e-3 * np.linalg.norm(grad))
