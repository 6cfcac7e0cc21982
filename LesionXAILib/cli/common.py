"""Argument groups and helpers shared by several subcommands (inputs, model, segmentation settings)."""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from LesionXAILib.errors import ParameterError

log = logging.getLogger("LesionXAILib.cli")


def add_global_options(parser: argparse.ArgumentParser, in_subcommand: bool = False) -> None:
    """Add --debug and -q/--quiet to ``parser``; accepted before the subcommand and (``in_subcommand``) after it."""
    # after the subcommand the options default to SUPPRESS, so an option given before the subcommand
    # is not reset to False by the subparser's own default
    default: Any = argparse.SUPPRESS if in_subcommand else False
    parser.add_argument("--debug", action="store_true", default=default, help="show full tracebacks on errors")
    parser.add_argument("-q", "--quiet", action="store_true", default=default, help="no progress bars or info messages")


def add_input_arguments(parser: argparse.ArgumentParser, gt: bool = True) -> None:
    """Add --flair, --t1 (and --gt) to ``parser``."""
    parser.add_argument("--flair", required=True, help="FLAIR volume (reference grid)")
    parser.add_argument("--t1", required=True, help="MPRAGE/T1 volume (resampled onto the FLAIR grid if needed)")
    if gt:
        parser.add_argument("--gt", default=None, help="optional ground-truth lesion mask (enables TP/FP/FN)")
    add_image_limit_argument(parser)


def add_image_limit_argument(parser: argparse.ArgumentParser) -> None:
    """Add --max-image-voxels (the declared-size guard applied before any image is read)."""
    from LesionXAILib.image_checks import DEFAULT_MAX_VOXELS, MAX_VOXELS_ENV

    parser.add_argument("--max-image-voxels", type=int, default=None, metavar="N",
                        help=f"refuse images whose header declares more voxels (default {DEFAULT_MAX_VOXELS:,} = 512^3, "
                             f"or ${MAX_VOXELS_ENV}); guards against corrupt or hostile headers")  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --model, --config, --weights, --trust-model and --device to ``parser``."""
    g = parser.add_argument_group("model")
    g.add_argument(
        "--model",
        default=None,
        help="LesionXAI checkpoint, state dict (with --config), TorchScript file (with --trust-model), nnU-Net v2 "
        "trained-model folder or MONAI bundle folder; default: shipped demo model",
    )
    g.add_argument("--config", default=None, help="network config preset (e.g. ies-unet, dynunet, swin-unetr) or JSON file, for bare state dicts")
    g.add_argument("--weights", default=None, help="state-dict file to load into --config (weights only: never TorchScript)")
    g.add_argument(
        "--trust-model", action="store_true", help="allow a --model that runs code when loaded (TorchScript); only for files you trust"
    )
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    g.add_argument("--folds", default=None, help="nnU-Net folder: folds to ensemble, e.g. 0,1,2 (default: every fold with the checkpoint)")
    g.add_argument("--checkpoint", default=None, help="nnU-Net folder: checkpoint file name in each fold (default checkpoint_final.pth)")
    g.add_argument("--mirror", action="store_true", default=None,
                   help="nnU-Net folder: test-time mirroring as nnUNetPredictor (off by default: explanations are of the plain network)")
    g.add_argument("--lesion-label", default=None, help="nnU-Net folder: the dataset.json label to explain when it has several foreground labels")


def add_segmentation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the run preset, threshold, minimum size, connectivity and sliding-window options to ``parser``."""
    from LesionXAILib.presets import PRESETS

    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="a study's conventions in one switch (anchor: 18-connectivity, > 5 voxels, threshold 0.3 U-Net / 0.4, "
                             "18-connected step probe, SmoothGrad n=50, gradcampp_anchor); explicit options override it")  # fmt: skip
    g = parser.add_argument_group("segmentation")
    g.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's, e.g. 0.5)")
    g.add_argument("--min-size", type=float, default=None, help="minimum lesion size (default 3; --preset anchor: 6 voxels)")
    g.add_argument("--connectivity", type=int, choices=(6, 18, 26), default=None,
                   help="voxel connectivity of lesion instances (default 26; --preset anchor: 18)")  # fmt: skip
    g.add_argument("--min-size-unit", choices=("voxels", "mm3"), default="voxels")
    g.add_argument("--roi", type=int, nargs=3, default=None, metavar=("K", "J", "I"), help="sliding window size (default 96 96 96)")
    g.add_argument("--overlap", type=float, default=None, help="sliding window overlap (default 0.25)")
    g.add_argument("--blend", choices=("gaussian", "constant"), default="gaussian")


def add_subject_arguments(parser: argparse.ArgumentParser) -> None:
    """Add what every segment-a-subject command takes: inputs, --out, the model and the segmentation settings."""
    add_input_arguments(parser)
    add_output_arguments(parser)
    add_model_arguments(parser)
    add_segmentation_arguments(parser)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --out and --allow-input-dir to ``parser``."""
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument(
        "--allow-input-dir", action="store_true", help="allow --out to be the directory holding an input file"
    )


def parse_instances(text: str) -> Optional[list[int]]:
    """Return None for 'all', else the list of instance ids in ``text`` ('3,7')."""
    text = (text or "").strip()
    if text.lower() == "all":
        return None
    ids = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise ParameterError(f"--instances: '{part}' is not an instance id (give 'all' or ids like 3,7)") from None
        if value < 1:
            raise ParameterError(f"--instances: instance ids start at 1, got {value}")
        ids.append(value)
    if not ids:
        raise ParameterError("--instances: no instance id given (use 'all' or ids like 3,7)")
    return list(dict.fromkeys(ids))


def parse_methods(text: str) -> tuple[str, ...]:
    """Return the method names of a comma-separated --methods value (validated by the settings that take them)."""
    return tuple(m.strip() for m in text.split(",") if m.strip())


def load_model_from_args(args: argparse.Namespace):
    """Return the LesionModel selected by --model/--config/--weights/--trust-model/--device (and format options)."""
    from LesionXAILib.model_loading import load_model, load_weights

    if args.weights and args.model:
        raise ParameterError("give either --model or --weights, not both")
    from LesionXAILib.presets import resolve_model_settings

    if args.weights:
        if not args.config:
            raise ParameterError("--weights needs --config (e.g. --config ies-unet)")
        model = load_weights(args.weights, args.config, args.device)
    else:
        model = load_model(args.model, args.config, args.device, trust=bool(getattr(args, "trust_model", False)),
                           options=model_options_from_args(args))  # fmt: skip
    resolve_model_settings(args, model)  # a preset's threshold and CAM layer depend on the network
    return model


def model_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Return the format options (e.g. nnU-Net's folds / checkpoint) given on the command line, if any."""
    return {key: getattr(args, key) for key in MODEL_FORMAT_OPTIONS if getattr(args, key, None) is not None}


# argparse destinations of format-specific model options, passed to the format's loader by name
MODEL_FORMAT_OPTIONS: tuple[str, ...] = ("folds", "checkpoint", "mirror", "lesion_label")


def segmentation_settings_from_args(args: argparse.Namespace):
    """Return SegmentationSettings built from the segmentation argument group."""
    from LesionXAILib.inference import InferenceSettings
    from LesionXAILib.segmentation import SegmentationSettings

    from LesionXAILib.presets import BUILTIN_DEFAULTS

    min_size = getattr(args, "min_size", None)
    connectivity = getattr(args, "connectivity", None)
    return SegmentationSettings(
        threshold=args.threshold,
        min_size=BUILTIN_DEFAULTS["min_size"] if min_size is None else min_size,
        min_size_unit=args.min_size_unit,
        connectivity=BUILTIN_DEFAULTS["connectivity"] if connectivity is None else int(connectivity),
        inference=InferenceSettings(
            roi_size=tuple(args.roi) if args.roi else None, overlap=args.overlap, mode=args.blend
        ),
    )


def progress_for(args: argparse.Namespace, desc: str):
    """Return (callback, close) for a tqdm progress bar honouring --quiet."""
    from LesionXAILib.progress import tqdm_callback

    return tqdm_callback(desc, disable=bool(getattr(args, "quiet", False)))


@dataclass
class SegmentedSubject:
    """One subject loaded from --flair/--t1/--gt, segmented with --model, its outputs written to --out."""

    pair: Any  # InputPair
    ground_truth: Any  # Optional[np.ndarray]
    model: Any  # LesionModel
    result: Any  # SegmentationResult
    out: Path
    protected: list = field(default_factory=list)


def segment_subject_from_args(
    args: argparse.Namespace,
    extra_inputs: Sequence[Optional[str]] = (),
    clears: Sequence[str] = (),
    check_result: Optional[Callable[[Any], None]] = None,
) -> SegmentedSubject:
    """Return the subject of the input/model/segmentation options, segmented, with its segmentation written to --out.

    ``extra_inputs`` are further user files that must never be overwritten (e.g. a white-matter map).
    Inputs and the output directory are checked before the model is loaded, so bad paths fail fast; --out
    is created only once the segmentation is done and ``check_result(result)`` (e.g. that the requested
    instance ids exist) passed, so a refused run leaves no folder. ``clears`` are this command's summary
    files in --out (e.g. explanations.json): an earlier run's are removed before the new segmentation is
    written, so an interrupted re-run never leaves an old summary beside new results.
    """
    from LesionXAILib.image_io import check_output_dir, load_pair, read_label_image
    from LesionXAILib.segmentation import segment

    pair = load_pair(args.flair, args.t1)
    gt = read_label_image(args.gt, pair.geometry) if getattr(args, "gt", None) else None
    protected = [args.flair, args.t1, getattr(args, "gt", None), *extra_inputs]
    out = check_output_dir(args.out, protected, args.allow_input_dir, create=False)
    model = load_model_from_args(args)
    callback, close = progress_for(args, "segment")
    try:
        result = segment(pair, model, segmentation_settings_from_args(args), gt, progress=callback)
    finally:
        close()
    if check_result is not None:
        check_result(result)
    out.mkdir(parents=True, exist_ok=True)
    clear_outputs(out, clears)
    result.write(out, protected=protected)
    return SegmentedSubject(pair, gt, model, result, out, protected)


def clear_outputs(out: Path, names: Sequence[str]) -> list[str]:
    """Remove the files ``names`` from ``out`` (an earlier run's summaries this run rewrites); return those removed."""
    removed = []
    for name in names:
        p = out / name
        if p.is_file():
            p.unlink()
            removed.append(name)
    if removed:
        log.info("an earlier run's %s removed from %s before rewriting", ", ".join(removed), out)
    return removed


def command_line(args: argparse.Namespace) -> str:
    """Return the `lesionxai ...` command that reproduces this run (the arguments main() parsed, shell-quoted)."""
    import shlex

    return "lesionxai " + " ".join(shlex.quote(str(a)) for a in args._argv)
