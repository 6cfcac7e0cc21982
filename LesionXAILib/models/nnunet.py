"""nnU-Net v2 trained-model folders as LesionXAI models, built and preprocessed by the ``nnunetv2`` package.

A trained-model folder (``nnUNet_results/DatasetXXX/<trainer>__<plans>__<configuration>``) holds
``plans.json``, ``dataset.json`` and ``fold_*/checkpoint_final.pth``. LesionXAI reads it without
nnU-Net's environment variables:

- the network is built by the trainer class named in the checkpoint (``build_network_architecture``,
  i.e. ``get_network_from_plans`` for nnU-Net's own trainers) from ``plans.json``;
- weights are read with ``torch.load(weights_only=True)``: the checkpoint holds tensors and plain
  values (plus numpy scalars in its training log, allow-listed as data); nnU-Net's own loader
  unpickles arbitrary objects, LesionXAI does not;
- the contract is nnU-Net's: ``transpose_forward`` applied to SimpleITK ``(z, y, x) = (k, j, i)``
  arrays, the configuration's target spacing (per transposed axis), its per-channel normalisation
  (:func:`nnunet_normalize`: nnU-Net's normaliser classes on nnU-Net's nonzero crop), channels in
  ``dataset.json`` order, a softmax head (sigmoid for region-based training), the patch size as the
  sliding window with step 0.5 and Gaussian blending;
- folds are ensembled as ``nnUNetPredictor`` does: the mean of the folds' logits (then the softmax).
  The explanation target is therefore the mean of the folds' lesion logits, whose gradient is the
  mean of the folds' gradients;
- test-time mirroring (the checkpoint's ``inference_allowed_mirroring_axes``) is off unless asked
  (``mirror=True``): it averages the logits of every flipped copy, as nnU-Net does.

- the pipeline is nnU-Net's: crop to the bounding box of the non-zero voxels (outside it the output is
  background), transpose, normalise, resample to the target spacing with nnU-Net's own resampling
  (spline order 3, separate-z rule, clipping), tile with nnU-Net's windows and Gaussian, resample the
  logits back (order 1), un-crop. LesionXAI runs these steps as differentiable torch operators
  (:mod:`LesionXAILib.models.resampling`), so explanations are gradients through nnU-Net's resampling
  onto the FLAIR grid (the network is then run on the whole model-space volume at once).

Over 400 lines on purpose: reading the folder, nnU-Net's preprocessing (transpose, nonzero crop,
resampling, normalisation) and its sliding-window prediction form one contract that has to match
``nnUNetPredictor`` as a whole (tested against it); the resampling matrices live in models/resampling.py.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.models.contract import InputContract
from LesionXAILib.models.formats import LoadRequest
from LesionXAILib.normalization import NORMALIZERS

PLANS_FILE = "plans.json"
DATASET_FILE = "dataset.json"
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
NORMALIZATION = "nnunet"
# nnU-Net's step size (fraction of the patch) and Gaussian sigma (fraction of the patch)
NNUNET_TILE_STEP = 0.5
NNUNET_SIGMA_SCALE = 1.0 / 8
# plans.json names classes that nnU-Net imports by name; without trust only these packages may be named
TRUSTED_CLASS_PREFIXES = ("torch.nn.", "dynamic_network_architectures.", "nnunetv2.")
# dataset.json channel names meaning FLAIR / T1 (case-insensitive, punctuation ignored)
FLAIR_NAMES = {"flair", "t2flair", "flairt2", "t2wflair", "3dflair"}
T1_NAMES = {"t1", "t1w", "mprage", "t1mprage", "mp2rage", "t1weighted", "3dt1", "t1ce", "t1gd"}
LESION_LABEL_NAMES = ("lesion", "lesions", "ms", "mslesion", "mslesions", "wml", "wmh", "foreground")


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _safe_numpy_globals() -> list:
    """Return numpy scalar/dtype reconstructors (plain numbers in nnU-Net's training log) for weights_only loading."""
    import numpy._core.multiarray as multiarray

    items: list = [multiarray.scalar, (multiarray.scalar, "numpy.core.multiarray.scalar"), np.dtype]
    items += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return items


def read_checkpoint(path: str | Path, trust: bool = False) -> dict:
    """Return an nnU-Net checkpoint dict read with weights_only=True (full unpickling only with ``trust``)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"nnU-Net checkpoint '{p}' not found")
    try:
        with torch.serialization.safe_globals(_safe_numpy_globals()):
            ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types
        if not trust:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(
                f"nnU-Net checkpoint '{p}' holds objects beyond tensors and plain values and was not unpickled "
                f"({detail[:200]}); pass --trust-model only if you trust where it comes from"
            ) from None
        ckpt = torch.load(str(p), map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt:
        raise ModelLoadError(f"nnU-Net checkpoint '{p}' has no 'network_weights' (not an nnU-Net v2 checkpoint)")
    return ckpt


def _fold_dirs(path: Path, checkpoint: str) -> list[str]:
    """Return the fold names (e.g. '0', '1', 'all') that hold ``checkpoint``, in nnU-Net's order."""
    folds = [d.name[len("fold_") :] for d in sorted(path.iterdir()) if d.is_dir() and d.name.startswith("fold_")]
    folds = [f for f in folds if (path / f"fold_{f}" / checkpoint).is_file()]
    numeric = sorted((f for f in folds if f.isdigit()), key=int)
    # nnU-Net's auto-detection skips fold_all when numbered folds exist
    return numeric if numeric else [f for f in folds if f == "all"]


@dataclass
class NnunetFolder:
    """An nnU-Net v2 trained-model folder as nnunetv2 reads it (plans, dataset, configuration, fold weights)."""

    path: Path
    plans_manager: Any
    configuration_name: str
    configuration_manager: Any
    dataset_json: dict
    label_manager: Any
    trainer_name: str
    folds: tuple[str, ...]
    weights: list[dict[str, torch.Tensor]] = field(repr=False)
    mirror_axes: Optional[tuple[int, ...]] = None
    checkpoint: str = DEFAULT_CHECKPOINT

    @property
    def transpose_forward(self) -> tuple[int, int, int]:
        """Return nnU-Net's transpose_forward: model axis m holds (z, y, x) = (k, j, i) axis transpose_forward[m]."""
        return tuple(int(v) for v in self.plans_manager.transpose_forward)

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Return the dataset's channel names in network input order."""
        names = self.dataset_json.get("channel_names", self.dataset_json.get("modality"))
        return tuple(str(names[str(i)]) for i in range(len(names)))


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"nnU-Net folder: cannot read '{path}' ({exc})") from None


def read_nnunet_folder(
    path: str | Path,
    folds: Optional[Sequence[int | str]] = None,
    checkpoint: str = DEFAULT_CHECKPOINT,
    trust: bool = False,
) -> NnunetFolder:
    """Return the folder's plans, configuration and fold weights (``folds=None``: every fold holding ``checkpoint``)."""
    try:
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    except ImportError:
        raise ModelLoadError(
            "nnU-Net v2 folders need the 'nnunetv2' package: pip install -c constraints.txt 'lesionxai[nnunet]'"
        ) from None
    from LesionXAILib.models.formats import is_nnunet_folder

    p = Path(path)
    if not is_nnunet_folder(p):
        raise ModelLoadError(f"'{p}' is not an nnU-Net v2 trained-model folder (needs {PLANS_FILE}, {DATASET_FILE}, fold_*/)")
    plans = _load_json(p / PLANS_FILE)
    dataset_json = _load_json(p / DATASET_FILE)
    available = _fold_dirs(p, checkpoint)
    chosen = [str(f) for f in folds] if folds else available
    if not chosen:
        raise ModelLoadError(f"nnU-Net folder '{p}': no fold_*/{checkpoint} found")
    missing = [f for f in chosen if not (p / f"fold_{f}" / checkpoint).is_file()]
    if missing:
        raise ModelLoadError(
            f"nnU-Net folder '{p}': fold(s) {', '.join(missing)} have no {checkpoint} (available: {', '.join(available) or 'none'})"
        )
    weights, trainer_name, configuration_name, mirror_axes = [], None, None, None
    for f in chosen:
        ckpt = read_checkpoint(p / f"fold_{f}" / checkpoint, trust)
        if trainer_name is None:
            trainer_name = str(ckpt.get("trainer_name", "nnUNetTrainer"))
            configuration_name = (ckpt.get("init_args") or {}).get("configuration")
            axes = ckpt.get("inference_allowed_mirroring_axes")
            mirror_axes = tuple(int(a) for a in axes) if axes is not None else None
        weights.append({k: v for k, v in ckpt["network_weights"].items()})
    manager = PlansManager(plans)
    if configuration_name is None:
        match = re.search(r"__([^_].*)$", p.name)
        configuration_name = match.group(1).split("__")[-1] if match else None
    if configuration_name not in manager.available_configurations:
        raise ModelLoadError(
            f"nnU-Net folder '{p}': configuration '{configuration_name}' not in plans.json "
            f"({', '.join(manager.available_configurations)})"
        )
    configuration = manager.get_configuration(configuration_name)
    if configuration.previous_stage_name is not None:
        raise ModelLoadError(
            f"nnU-Net folder '{p}': configuration '{configuration_name}' is a cascade stage (needs the previous "
            "stage's segmentation as input); LesionXAI explains single-stage configurations"
        )
    return NnunetFolder(
        path=p,
        plans_manager=manager,
        configuration_name=configuration_name,
        configuration_manager=configuration,
        dataset_json=dataset_json,
        label_manager=manager.get_label_manager(dataset_json),
        trainer_name=trainer_name,
        folds=tuple(chosen),
        weights=weights,
        mirror_axes=mirror_axes,
        checkpoint=checkpoint,
    )


def _check_class_names(folder: NnunetFolder, trust: bool) -> None:
    """Refuse plans that import classes from outside torch.nn / dynamic_network_architectures / nnunetv2 unless trusted."""
    if trust:
        return
    cm = folder.configuration_manager
    names = [cm.network_arch_class_name]
    kwargs = cm.network_arch_init_kwargs
    names += [kwargs[k] for k in cm.network_arch_init_kwargs_req_import if kwargs.get(k) is not None]
    outside = [n for n in names if not str(n).startswith(TRUSTED_CLASS_PREFIXES)]
    if outside:
        raise ModelLoadError(
            f"nnU-Net folder '{folder.path}': plans.json names classes outside torch.nn, dynamic_network_architectures "
            f"and nnunetv2 ({', '.join(map(str, outside))}); pass --trust-model only if you trust where it comes from"
        )


def build_nnunet_network(folder: NnunetFolder, trust: bool = False) -> nn.Module:
    """Return one freshly built network of the folder's configuration (no deep supervision), as nnU-Net builds it."""
    import inspect

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    _check_class_names(folder, trust)
    pm, cm = folder.plans_manager, folder.configuration_manager
    n_in = determine_num_input_channels(pm, cm, folder.dataset_json)
    n_out = folder.label_manager.num_segmentation_heads
    try:
        trainer = recursive_find_trainer_class_by_name(folder.trainer_name)
    except (RuntimeError, AssertionError) as exc:
        raise ModelLoadError(
            f"nnU-Net folder '{folder.path}': trainer '{folder.trainer_name}' is not part of the installed nnunetv2 "
            f"({str(exc).splitlines()[0][:160]})"
        ) from None
    import pydoc

    try:
        if "plans_manager" in inspect.signature(trainer.build_network_architecture).parameters:
            network = trainer.build_network_architecture(pm, cm, n_in, n_out, enable_deep_supervision=False)
        else:  # trainers written for nnU-Net < 2.6
            network = trainer.build_network_architecture(
                cm.network_arch_class_name, cm.network_arch_init_kwargs, cm.network_arch_init_kwargs_req_import,
                n_in, n_out, enable_deep_supervision=False,
            )  # fmt: skip
    except (ImportError, pydoc.ErrorDuringImport) as exc:
        # e.g. the transformer architectures (Primus) need timm, whose torchvision does not load with the CPU torch
        cause = getattr(exc, "value", exc)
        raise ModelLoadError(
            f"nnU-Net folder '{folder.path}': network '{cm.network_arch_class_name}' needs a package that is missing or does not "
            f"load ({type(cause).__name__}: {str(cause).splitlines()[0][:160] if str(cause) else ''}); see README 'Models'"
        ) from None
    return network


class NnunetEnsemble(nn.Module):
    """The folds' networks on nnU-Net's (transposed) arrays: returns the mean of their logits, optionally mirrored.

    ``mirror_axes`` (axes of the spatial model array, as in nnU-Net's checkpoint) averages the logits
    of every flipped copy, as ``nnUNetPredictor(use_mirroring=True)`` does; ``None`` switches it off.
    ``channel`` keeps one output channel only (region-based models: the lesion region's sigmoid logit).
    """

    def __init__(self, networks: Sequence[nn.Module], mirror_axes: Optional[Sequence[int]] = None, channel: Optional[int] = None) -> None:
        super().__init__()
        self.folds = nn.ModuleList(networks)
        self.mirror_axes = tuple(int(a) for a in mirror_axes) if mirror_axes else None
        self.channel = channel
        self.patch_size: tuple[int, ...] = ()

    def _one(self, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
        import itertools

        out = network(x)
        if self.mirror_axes:
            axes = [a + 2 for a in self.mirror_axes]
            combos = [c for n in range(len(axes)) for c in itertools.combinations(axes, n + 1)]
            for dims in combos:
                out = out + torch.flip(network(torch.flip(x, dims)), dims)
            out = out / (len(combos) + 1)
        return out

    def window_weights(self, shape: Sequence[int]) -> torch.Tensor:
        """Return nnU-Net's sliding-window blending weights for a window of ``shape`` (its compute_gaussian, float16 as nnU-Net)."""
        from nnunetv2.inference.sliding_window_prediction import compute_gaussian

        shape = tuple(int(s) for s in shape)
        g = compute_gaussian(shape, sigma_scale=NNUNET_SIGMA_SCALE, value_scaling_factor=10, dtype=torch.float16, device=torch.device("cpu"))
        return g.float()

    def infer(self, y: torch.Tensor, patch_size: Optional[Sequence[int]] = None) -> torch.Tensor:
        """Return the (B, C_out, ...) logits of a whole model-space volume tiled as nnUNetPredictor tiles it.

        nnU-Net's own helpers place the windows (``pad_nd_image`` centres a volume smaller than the
        patch, ``compute_steps_for_sliding_window`` with step 0.5); each window's logits are weighted by
        nnU-Net's Gaussian and the sum divided by the summed weights.
        """
        from acvl_utils.cropping_and_padding.padding import pad_nd_image
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        patch = tuple(int(v) for v in (patch_size or self.patch_size))
        outs = []
        for b in range(y.shape[0]):
            data, revert = pad_nd_image(y[b], patch, "constant", {"value": 0}, True, None)
            steps = compute_steps_for_sliding_window(tuple(data.shape[1:]), patch, NNUNET_TILE_STEP)
            weights = self.window_weights(patch).to(data.device)
            total = counts = None
            for sx in steps[0]:
                for sy in steps[1]:
                    for sz in steps[2]:
                        sl = (slice(sx, sx + patch[0]), slice(sy, sy + patch[1]), slice(sz, sz + patch[2]))
                        pred = self(data[(slice(None),) + sl][None])[0] * weights
                        if total is None:
                            total = torch.zeros((pred.shape[0], *data.shape[1:]), dtype=pred.dtype, device=pred.device)
                            counts = torch.zeros(data.shape[1:], dtype=pred.dtype, device=pred.device)
                        total[(slice(None),) + sl] += pred
                        counts[sl] += weights
            outs.append((total / counts)[(slice(None), *revert[1:])])
        return torch.stack(outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the mean over folds of the (B, C_out, ...) logits of a (B, C_in, ...) model-space input."""
        total = None
        for network in self.folds:
            out = self._one(network, x)
            total = out if total is None else total + out
        total = total / len(self.folds)
        if self.channel is not None:
            total = total[:, self.channel : self.channel + 1]
        return total


def nnunet_ensemble(folder: NnunetFolder, mirror: bool = False, trust: bool = False, channel: Optional[int] = None) -> NnunetEnsemble:
    """Return an eval-mode NnunetEnsemble with every fold's weights loaded strictly."""
    networks = []
    for fold, state in zip(folder.folds, folder.weights):
        network = build_nnunet_network(folder, trust)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelLoadError(
                f"nnU-Net folder '{folder.path}': fold {fold}'s weights do not fit the network of plans.json "
                f"({str(exc).splitlines()[0][:200]})"
            ) from None
        networks.append(network.eval())
    axes = folder.mirror_axes if mirror else None
    if mirror and not axes:
        raise ModelLoadError(f"nnU-Net folder '{folder.path}': the checkpoint allows no mirroring axes")
    ensemble = NnunetEnsemble(networks, axes, channel)
    ensemble.patch_size = tuple(int(v) for v in folder.configuration_manager.patch_size)
    return ensemble.eval()


def sequence_order(folder: NnunetFolder) -> tuple[str, ...]:
    """Return LesionXAI's sequence names (FLAIR, MPRAGE) in the network's channel order, from dataset.json's names."""
    order = []
    for name in folder.channel_names:
        k = _key(name)
        if k in FLAIR_NAMES or "flair" in k:
            order.append("FLAIR")
        elif k in T1_NAMES or k.startswith("t1"):
            order.append("MPRAGE")
        else:
            raise ModelLoadError(
                f"nnU-Net folder '{folder.path}': channel '{name}' is neither a FLAIR nor a T1 "
                f"(dataset.json channel_names: {dict(folder.dataset_json.get('channel_names', {}))}); LesionXAI feeds FLAIR and T1"
            )
    if sorted(order) != ["FLAIR", "MPRAGE"]:
        raise ModelLoadError(
            f"nnU-Net folder '{folder.path}': channels {list(folder.channel_names)} must be one FLAIR and one T1"
        )
    return tuple(order)


def lesion_output(folder: NnunetFolder, label: Optional[str] = None) -> tuple[str, int]:
    """Return (head, lesion channel) of the folder's output: softmax over labels, or sigmoid per region."""
    labels = {str(k): v for k, v in folder.dataset_json.get("labels", {}).items() if k != "ignore"}
    foreground = {k: v for k, v in labels.items() if k != "background"}
    if label is not None:
        if label not in foreground:
            raise ModelLoadError(f"nnU-Net folder '{folder.path}': no label '{label}' (labels: {', '.join(foreground)})")
        name = label
    elif len(foreground) == 1:
        name = next(iter(foreground))
    else:
        hits = [k for k in foreground if _key(k) in LESION_LABEL_NAMES]
        if len(hits) != 1:
            raise ModelLoadError(
                f"nnU-Net folder '{folder.path}': cannot tell the lesion label among {', '.join(foreground)}; "
                "name it (lesion_label)"
            )
        name = hits[0]
    lm = folder.label_manager
    if lm.has_regions:
        regions = [tuple(r) if isinstance(r, (list, tuple)) else (r,) for r in lm.foreground_regions]
        value = foreground[name]
        target = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        return "sigmoid", regions.index(target)
    return "softmax", list(lm.all_labels).index(int(foreground[name]))


def normalization_parameters(folder: NnunetFolder) -> dict[str, Any]:
    """Return the plans' per-channel normalisation (schemes, use_mask_for_norm, intensity properties) as plain JSON values."""
    cm = folder.configuration_manager
    properties = folder.plans_manager.foreground_intensity_properties_per_channel
    return {
        "normalization_schemes": [str(s) for s in cm.normalization_schemes],
        "use_mask_for_norm": [bool(v) for v in cm.use_mask_for_norm],
        "foreground_intensity_properties_per_channel": {str(k): dict(v) for k, v in properties.items()},
    }


def nnunet_normalize(stack_kji: np.ndarray, parameters: dict[str, Any]) -> np.ndarray:
    """Return a float32 (C, k, j, i) copy normalised per channel exactly as nnU-Net's DefaultPreprocessor does.

    nnU-Net crops to the bounding box of the voxels non-zero in any channel, then runs each
    channel's normaliser class (``normalization_schemes``, ``use_mask_for_norm``, the plans' foreground
    intensity properties) on the crop with the non-zero mask. Transposing comes before and
    resampling after normalisation in nnU-Net and neither changes per-channel statistics, so doing it
    on the FLAIR grid gives nnU-Net's values. Voxels outside the bounding box, which nnU-Net's
    network never sees, are set to 0 (nnU-Net's padding value).
    """
    import nnunetv2
    from nnunetv2.preprocessing.cropping.cropping import crop_to_nonzero
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    data = np.asarray(stack_kji, dtype=np.float32)
    schemes = parameters["normalization_schemes"]
    if data.ndim != 4 or data.shape[0] != len(schemes):
        raise ModelLoadError(f"nnU-Net normalisation expects {len(schemes)} channels, got an array of shape {data.shape}")
    cropped, seg, bbox = crop_to_nonzero(data.copy())
    folder = str(Path(nnunetv2.__path__[0]) / "preprocessing" / "normalization")
    for c, scheme in enumerate(schemes):
        cls = recursive_find_python_class(folder, scheme, "nnunetv2.preprocessing.normalization")
        if cls is None:
            raise ModelLoadError(f"nnU-Net normalisation scheme '{scheme}' is not part of the installed nnunetv2")
        normalizer = cls(
            use_mask_for_norm=parameters["use_mask_for_norm"][c],
            intensityproperties=parameters["foreground_intensity_properties_per_channel"][str(c)],
        )
        cropped[c] = normalizer.run(cropped[c], seg[0])
    out = np.zeros_like(data)
    out[(slice(None),) + tuple(slice(int(lo), int(hi)) for lo, hi in bbox)] = cropped
    return out


def _normalize_for_config(stack: np.ndarray, config: Any) -> np.ndarray:
    params = (config.extra or {}).get("nnunet_normalization") if config is not None else None
    if not params:
        raise ModelLoadError("normalization 'nnunet' needs the plans' parameters in config.extra['nnunet_normalization']")
    return nnunet_normalize(stack, params)


NORMALIZERS.setdefault(NORMALIZATION, _normalize_for_config)

# plans.json image readers -> the orientation their arrays have (all give SimpleITK's (z, y, x) = (k, j, i) order)
READER_ORIENTATION = {
    "SimpleITKIO": "as-stored",
    "NibabelIO": "as-stored",
    "SimpleITKIOWithReorient": "RAS",
    "NibabelIOWithReorient": "RAS",
}


def contract_for(folder: NnunetFolder, crop_rule: str = "calibrate") -> InputContract:
    """Return the input contract of the folder's configuration (reader orientation, transpose_forward, target spacing, divisor)."""
    reader = str(folder.plans_manager.plans.get("image_reader_writer", "SimpleITKIO"))
    if reader not in READER_ORIENTATION:
        raise ModelLoadError(
            f"nnU-Net folder '{folder.path}': image reader '{reader}' is not a 3D medical image reader LesionXAI maps "
            f"({', '.join(READER_ORIENTATION)})"
        )
    spacing = [float(v) for v in folder.configuration_manager.spacing]
    if len(spacing) != 3 or len(folder.configuration_manager.patch_size) != 3:
        raise ModelLoadError(
            f"nnU-Net folder '{folder.path}': configuration '{folder.configuration_name}' is not 3D; LesionXAI explains 3D networks"
        )
    per_axis = [1, 1, 1]
    for stride in folder.configuration_manager.pool_op_kernel_sizes:
        stride = list(stride) if isinstance(stride, (list, tuple)) else [stride] * 3
        per_axis = [a * int(b) for a, b in zip(per_axis, stride)]
    conf = folder.configuration_manager.configuration
    for kind in ("data", "probabilities"):
        name = str(conf.get(f"resampling_fn_{kind}", ""))
        if name != "resample_data_or_seg_to_shape":
            raise ModelLoadError(
                f"nnU-Net folder '{folder.path}': resampling function '{name}' for {kind} is not nnU-Net's default "
                "(resample_data_or_seg_to_shape), which LesionXAI reproduces"
            )
    return InputContract(
        axes="".join("kji"[t] for t in folder.transpose_forward),
        orientation=READER_ORIENTATION[reader],
        target_spacing=tuple(spacing),
        size_divisor=int(math.lcm(*per_axis)),
        crop_rule=crop_rule,
        resampling="nnunet",
        crop_nonzero=True,
    )


def resampling_parameters(folder: NnunetFolder) -> dict[str, Any]:
    """Return the plans' resampling keyword arguments (data forward, probabilities back) as plain JSON values."""
    conf = folder.configuration_manager.configuration
    return {"data": dict(conf["resampling_fn_data_kwargs"]), "probabilities": dict(conf["resampling_fn_probabilities_kwargs"])}


def _parse_folds(value: Any) -> Optional[list[str]]:
    if value is None:
        return None
    items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
    return [str(v).strip() for v in items if str(v).strip()] or None


def load_nnunet(request: LoadRequest) -> LesionModel:
    """Return a LesionModel of an nnU-Net v2 trained-model folder (options: folds, checkpoint, mirror, lesion_label).

    ``folds`` (e.g. ``(0, 1)`` or ``"0,1"``; default every fold with the checkpoint), ``checkpoint``
    (default ``checkpoint_final.pth``), ``mirror`` (nnU-Net's test-time mirroring; default off, so
    explanations are of the plain network), ``lesion_label`` (a dataset.json label name, when there are
    several foreground labels).
    """
    options = dict(request.options or {})
    unknown = sorted(set(options) - {"folds", "checkpoint", "mirror", "lesion_label"})
    if unknown:
        raise ModelLoadError(f"nnU-Net folder '{request.path}': unknown options {unknown} (folds, checkpoint, mirror, lesion_label)")
    if request.config is not None:
        raise ModelLoadError(
            f"model '{request.path}' is an nnU-Net folder: its plans.json and dataset.json describe the network; drop --config"
        )
    folder = read_nnunet_folder(
        request.path, _parse_folds(options.get("folds")), str(options.get("checkpoint") or DEFAULT_CHECKPOINT), request.trust
    )
    head, channel = lesion_output(folder, options.get("lesion_label"))
    order = sequence_order(folder)
    ensemble = nnunet_ensemble(folder, bool(options.get("mirror", False)), request.trust, channel if head == "sigmoid" else None)
    n_out = 1 if head == "sigmoid" else folder.label_manager.num_segmentation_heads
    decoder = getattr(ensemble.folds[0], "decoder", None)
    stages = getattr(decoder, "stages", None)
    # Grad-CAM: the half-resolution decoder stage of a single network (with several folds a layer is one fold's only)
    cam_layer = f"folds.0.decoder.stages.{len(stages) - 2}" if stages is not None and len(stages) >= 2 and len(folder.folds) == 1 else None
    config = ModelConfig(
        name=f"nnunet-{folder.plans_manager.dataset_name}-{folder.configuration_name}",
        network="nnunet",
        in_channels=len(order),
        input_order=order,
        out_channels=n_out,
        head=head,
        lesion_index=0 if head == "sigmoid" else channel,
        normalization=NORMALIZATION,
        roi_size=tuple(int(v) for v in folder.configuration_manager.patch_size),
        overlap=NNUNET_TILE_STEP,
        threshold=0.5,
        cam_layer=cam_layer,
        contract=contract_for(folder),
        extra={
            "nnunet_normalization": normalization_parameters(folder),
            "nnunet_resampling": resampling_parameters(folder),
            "nnunet": {
                "folder": str(folder.path),
                "configuration": folder.configuration_name,
                "trainer": folder.trainer_name,
                "folds": list(folder.folds),
                "checkpoint": folder.checkpoint,
                "mirror_axes": list(ensemble.mirror_axes) if ensemble.mirror_axes else None,
                "fold_ensemble": "mean of the folds' logits (as nnUNetPredictor), then the head",
            },
        },
    )
    model = LesionModel(ensemble, config, source=str(folder.path))
    return model.to(request.device).eval()
