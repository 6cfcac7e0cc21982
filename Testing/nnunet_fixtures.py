"""A tiny nnU-Net v2 trained-model folder written by the tests (plans.json, dataset.json, fold_*/checkpoint_final.pth).

The plans are those of a real 3d_fullres configuration reduced to a 3-stage PlainConvUNet (4, 8, 16
features, instance norm, leaky ReLU), with a non-identity ``transpose_forward`` and the T1 as
channel 0, so that LesionXAI's channel mapping and axis order are exercised. Each fold's network
is trained for a few steps on the phantom (in nnU-Net's preprocessed space) so that its
segmentation follows the lesions; checkpoints have the keys nnU-Net's ``nnUNetTrainer.save_checkpoint``
writes (network weights, optimizer state, training log with numpy scalars, init args with a
``torch.device``, trainer name, mirroring axes).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from LesionXAILib.geometry import array_to_image

TRANSPOSE_FORWARD = [2, 0, 1]
TRANSPOSE_BACKWARD = [1, 2, 0]
# file spacing (i, j, k) mm; nnU-Net's (z, y, x) spacing is its reverse, transposed by TRANSPOSE_FORWARD
FILE_SPACING = (1.8, 2.0, 2.4)
PATCH = [16, 16, 16]
FOLDS = (0, 1)
FOLDER_NAME = "nnUNetTrainer__nnUNetPlans__3d_fullres"


def model_spacing(file_spacing_ijk=FILE_SPACING) -> list[float]:
    """Return the configuration's target spacing: the (z, y, x) spacing transposed by transpose_forward."""
    zyx = list(file_spacing_ijk)[::-1]
    return [float(zyx[t]) for t in TRANSPOSE_FORWARD]


def _intensity_properties(values: np.ndarray) -> dict:
    v = values.astype(np.float64)
    return {
        "max": float(v.max()), "mean": float(v.mean()), "median": float(np.median(v)), "min": float(v.min()),
        "percentile_00_5": float(np.percentile(v, 0.5)), "percentile_99_5": float(np.percentile(v, 99.5)), "std": float(v.std()),
    }  # fmt: skip


def plans_dict(t1: np.ndarray, flair: np.ndarray, file_spacing_ijk=FILE_SPACING, target_spacing=None) -> dict:
    """Return a 3d_fullres plans.json for a tiny PlainConvUNet (channel 0: T1, channel 1: FLAIR); target spacing: the file's by default."""
    spacing = [float(v) for v in target_spacing] if target_spacing is not None else model_spacing(file_spacing_ijk)
    shape = [int(s) for s in np.array(flair.shape)[TRANSPOSE_FORWARD]]
    return {
        "dataset_name": "Dataset901_TinyMS",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": shape,
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": TRANSPOSE_FORWARD,
        "transpose_backward": TRANSPOSE_BACKWARD,
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": PATCH,
                "median_image_size_in_voxels": shape,
                "spacing": spacing,
                # T1: z-score over the whole crop; FLAIR: z-score inside the brain mask (nnU-Net's choice for skull-stripped data)
                "normalization_schemes": ["ZScoreNormalization", "ZScoreNormalization"],
                "use_mask_for_norm": [False, True],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
                "architecture": {
                    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                    "arch_kwargs": {
                        "n_stages": 3,
                        "features_per_stage": [4, 8, 16],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[3, 3, 3], [3, 3, 3], [3, 3, 3]],
                        "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
                        "n_conv_per_stage": [2, 2, 2],
                        "n_conv_per_stage_decoder": [2, 2],
                        "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                        "dropout_op": None,
                        "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True},
                    },
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": _intensity_properties(t1[flair > 0]),
            "1": _intensity_properties(flair[flair > 0]),
        },
    }


DATASET_JSON = {
    "channel_names": {"0": "T1", "1": "FLAIR"},
    "labels": {"background": 0, "lesion": 1},
    "numTraining": 1,
    "file_ending": ".nii.gz",
}


def nnunet_network(plans: dict) -> torch.nn.Module:
    """Return the 3d_fullres network built by nnunetv2's get_network_from_plans (no deep supervision)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    cm = PlansManager(plans).get_configuration("3d_fullres")
    return get_network_from_plans(
        cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
        2, 2, allow_init=True, deep_supervision=False,
    )  # fmt: skip


def _train_fold(plans: dict, data: np.ndarray, target: np.ndarray, fold: int, steps: int = 12) -> tuple[dict, dict]:
    """Return (network weights, optimizer state) after a few Adam steps on lesion-centred patches (seed = fold)."""
    torch.manual_seed(100 + fold)
    rng = np.random.default_rng(100 + fold)
    network = nnunet_network(plans)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    centres = np.argwhere(target > 0)
    weight = torch.tensor([1.0, 10.0])
    network.train()
    for _ in range(steps):
        c = centres[rng.integers(len(centres))]
        lo = [int(np.clip(v - p // 2, 0, s - p)) for v, p, s in zip(c, PATCH, target.shape)]
        box = tuple(slice(a, a + p) for a, p in zip(lo, PATCH))
        x = torch.from_numpy(data[(slice(None),) + box])[None]
        y = torch.from_numpy(target[box].astype(np.int64))[None]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(network(x), y, weight=weight).backward()
        optimizer.step()
    # so few steps leave the lesion class rare: shift its output bias so that ~2% of the volume is segmented
    network.eval()
    with torch.no_grad():
        whole = torch.from_numpy(data)[None]
        pads = [(-s) % 4 for s in whole.shape[2:]]  # the network's size multiple (two strides of 2)
        whole = torch.nn.functional.pad(whole, [v for p in reversed(pads) for v in (0, p)])
        out = network(whole)[0][(slice(None),) + tuple(slice(0, s) for s in data.shape[1:])]
        margin = float(torch.quantile((out[1] - out[0]).flatten(), 0.98))
        head = network.decoder.seg_layers[-1]
        head.bias[1] -= margin
    return {k: v.detach().clone() for k, v in network.state_dict().items()}, optimizer.state_dict()


def write_nnunet_folder(
    root: Path, flair: np.ndarray, t1: np.ndarray, lesions: np.ndarray, folds=FOLDS, file_spacing=FILE_SPACING, target_spacing=None
) -> Path:
    """Write a trained-model folder for (k, j, i) FLAIR/T1/lesion arrays on ``file_spacing`` (i, j, k mm); return its path."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    out = Path(root) / "Dataset901_TinyMS" / FOLDER_NAME
    out.mkdir(parents=True, exist_ok=True)
    plans = plans_dict(t1, flair, file_spacing, target_spacing)
    (out / "plans.json").write_text(json.dumps(plans, indent=2))
    (out / "dataset.json").write_text(json.dumps(DATASET_JSON, indent=2))
    manager = PlansManager(plans)
    # nnU-Net's own preprocessing (transpose, crop, normalise) of the training case
    stack = np.stack([t1, flair]).astype(np.float32)
    seg = lesions[None].astype(np.int16)
    data, seg_pp, _ = DefaultPreprocessor(verbose=False).run_case_npy(
        stack, seg, {"spacing": list(file_spacing)[::-1]}, manager, manager.get_configuration("3d_fullres"), DATASET_JSON
    )
    target = np.clip(seg_pp[0], 0, 1)
    for f in folds:
        weights, opt_state = _train_fold(plans, data.astype(np.float32), target, f)
        (out / f"fold_{f}").mkdir(exist_ok=True)
        checkpoint = {
            "network_weights": weights,
            "optimizer_state": opt_state,
            "grad_scaler_state": None,
            "logging": {
                "mean_fg_dice": [np.float64(0.1), np.float64(0.2)],
                "ema_fg_dice": [np.float64(0.1), np.float64(0.15)],
                "train_losses": [np.float32(1.2), np.float32(0.9)],
                "epoch_start_timestamps": [1.0, 2.0],
                "lrs": [0.01, 0.0099],
            },
            "_best_ema": np.float64(0.15),
            "current_epoch": 2,
            "init_args": {
                "plans": plans,
                "configuration": "3d_fullres",
                "fold": f,
                "dataset_json": DATASET_JSON,
                "device": torch.device("cpu"),
            },
            "trainer_name": "nnUNetTrainer",
            "inference_allowed_mirroring_axes": (0, 1, 2),
        }
        torch.save(checkpoint, out / f"fold_{f}" / "checkpoint_final.pth")
    return out


@functools.lru_cache(maxsize=None)
def tiny_nnunet_case() -> tuple[Path, Path, Path, Path]:
    """Return (model folder, FLAIR file, T1 file, lesion file) of a cached tiny nnU-Net case (2 mm phantom, 32^3)."""
    from phantom_fixtures import small_phantom

    ph = small_phantom(spacing=(2.0, 2.0, 2.0))
    root = Path(tempfile.mkdtemp(prefix="lesionxai-nnunet-"))
    atexit.register(shutil.rmtree, root, True)  # cached for the whole test session, removed at its end
    geometry = dataclasses.replace(ph.geometry, spacing=FILE_SPACING)
    flair = ph.flair.astype(np.float32)
    t1 = ph.t1.astype(np.float32)
    lesions = (ph.lesions > 0).astype(np.uint8)
    paths = []
    for name, arr in (("flair", flair), ("t1", t1), ("lesions", lesions.astype(np.float32))):
        p = root / f"{name}.nii.gz"
        sitk.WriteImage(array_to_image(arr, geometry), str(p))
        paths.append(p)
    folder = write_nnunet_folder(root / "results", flair, t1, lesions)
    return (folder, *paths)


# a FLAIR at 1.2 x 1.0 x 1.5 mm (i, j, k) for a model trained at 1 mm isotropic, with a zero border around the head
RESAMPLED_FILE_SPACING = (1.2, 1.0, 1.5)
ISO_TARGET = (1.0, 1.0, 1.0)
ZERO_BORDER = ((0, 3), (2, 0), (1, 2))  # (k, j, i) voxels of zeros added before / after the phantom


@functools.lru_cache(maxsize=None)
def resampled_nnunet_case() -> tuple[Path, Path, Path, Path]:
    """Return (model folder, FLAIR, T1, lesions) where nnU-Net resamples (1 mm model, 1.2 x 1.0 x 1.5 mm images) and crops a zero border."""
    from phantom_fixtures import small_phantom

    ph = small_phantom(spacing=(2.0, 2.0, 2.0))
    root = Path(tempfile.mkdtemp(prefix="lesionxai-nnunet-resampled-"))
    atexit.register(shutil.rmtree, root, True)
    flair = np.pad(ph.flair.astype(np.float32), ZERO_BORDER)
    t1 = np.pad(ph.t1.astype(np.float32), ZERO_BORDER)
    lesions = np.pad((ph.lesions > 0).astype(np.uint8), ZERO_BORDER)
    t1[flair == 0] = 0.0  # skull-stripped: both channels zero outside the head
    shape_ijk = tuple(int(v) for v in flair.shape[::-1])
    geometry = dataclasses.replace(ph.geometry, spacing=RESAMPLED_FILE_SPACING, size=shape_ijk)
    paths = []
    for name, arr in (("flair", flair), ("t1", t1), ("lesions", lesions.astype(np.float32))):
        p = root / f"{name}.nii.gz"
        sitk.WriteImage(array_to_image(arr, geometry), str(p))
        paths.append(p)
    folder = write_nnunet_folder(root / "results", flair, t1, lesions, file_spacing=RESAMPLED_FILE_SPACING, target_spacing=ISO_TARGET)
    return (folder, *paths)
