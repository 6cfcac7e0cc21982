"""``lesionxai calibrate``: measure the explanation crop margins a model needs and write a calibrated model."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from LesionXAILib.cli.common import (
    add_subject_arguments,
    progress_for,
    segment_subject_from_args,
)

NAME = "calibrate"
HELP = "measure the crop margins this model's explanations need (ROI vs whole volume); write a calibrated model"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.explain.margin_calibration import CALIBRATION_MARGINS_MM, MIN_CAPTURED, MIN_PEARSON_R

    add_subject_arguments(parser)
    g = parser.add_argument_group("calibration")
    g.add_argument("--aggregations", default="sum,max", help="comma-separated targets to calibrate: sum, mean, max (default sum,max)")
    g.add_argument("--lesions", type=int, default=4, help="lesions measured, spread over the size range (default 4)")
    g.add_argument("--max-voxels", type=int, default=60,
                   help="max aggregation: only lesions up to this size (its reference costs one whole-volume "
                        "backward pass per lesion voxel and sample; default 60)")  # fmt: skip
    g.add_argument("--margins", type=float, nargs="+", default=list(CALIBRATION_MARGINS_MM), metavar="MM",
                   help=f"margins measured (default {' '.join(f'{m:g}' for m in CALIBRATION_MARGINS_MM)})")  # fmt: skip
    g.add_argument("--samples", type=int, default=2, help="SmoothGrad samples per map (default 2)")
    g.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    g.add_argument("--min-r", type=float, default=MIN_PEARSON_R, help=f"least Pearson r on every lesion (default {MIN_PEARSON_R})")
    g.add_argument("--min-captured", type=float, default=MIN_CAPTURED,
                   help=f"least share of the whole-volume attribution inside the crop (default {MIN_CAPTURED})")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Segment one subject, measure margin -> fidelity per aggregation, write the curves and the calibrated model."""
    import torch

    from LesionXAILib.errors import ParameterError
    from LesionXAILib.explain.margin_calibration import calibrate_margin, calibrated_config, pick_lesions
    from LesionXAILib.explain.settings import AGGREGATIONS
    from LesionXAILib.lesion_model import LesionModel
    from LesionXAILib.model_loading import save_checkpoint

    aggregations = tuple(a.strip() for a in args.aggregations.split(",") if a.strip())
    bad = [a for a in aggregations if a not in AGGREGATIONS]
    if not aggregations or bad:
        raise ParameterError(f"--aggregations: choose from {', '.join(AGGREGATIONS)}, got '{args.aggregations}'")
    if args.lesions < 1:
        raise ParameterError(f"--lesions must be >= 1, got {args.lesions}")
    subject = segment_subject_from_args(args)
    model, result, out = subject.model, subject.result, subject.out
    instances = result.instances
    masks = [instances.mask(i) for i in instances.ids]
    calibrations, measured = [], {}
    callback, close = progress_for(args, "calibrate")
    try:
        for n, aggregation in enumerate(aggregations):
            limit = args.max_voxels if aggregation == "max" else None
            picked = pick_lesions(masks, args.lesions, limit)
            if not picked:
                raise ParameterError(
                    f"no lesion to calibrate {aggregation} aggregation on: {len(masks)} instance(s) found"
                    + (f", none of at most {limit} voxels (--max-voxels)" if limit is not None and masks else "")
                )
            ids = [instances.ids[i] for i in picked]
            log.info("%s aggregation: instances %s (%s voxels)", aggregation, ids, [int(masks[i].sum()) for i in picked])

            def report(fraction: float, message: str, n: int = n, aggregation: str = aggregation) -> None:
                callback((n + fraction) / len(aggregations), f"{aggregation}: {message}")

            cal = calibrate_margin(model, result.normalized, [masks[i] for i in picked], result.geometry, aggregation,
                                   args.margins, args.samples, args.seed, min_r=args.min_r,
                                   min_captured=args.min_captured, progress=report)  # fmt: skip
            calibrations.append(cal)
            measured[aggregation] = {"instances": ids, **cal.to_dict()}
    finally:
        close()
    doc = {"lesionxai_version": __import__("LesionXAILib").__version__, "model": result.model_info, "calibrations": measured}
    _write_json(out / "margin_calibration.json", doc)
    for cal in calibrations:
        log.info("%s: %s", cal.aggregation, _summary(cal))
    config = calibrated_config(model.config, calibrations)  # raises if a curve never met the bounds
    _write_json(out / "model_config.json", config.to_dict())
    calibrated = LesionModel(model.network, config, source=str(out / "model_config.json"))
    target = out / "model-calibrated.pt"
    if isinstance(model.network, torch.jit.ScriptModule):
        log.info("calibrated config -> %s (TorchScript model: pass it with --config)", out / "model_config.json")
    else:
        if any(p and Path(p).resolve() == target.resolve() for p in (args.model, args.weights)):
            raise ParameterError(f"{target} is the input model; choose another --out")
        path = save_checkpoint(calibrated, target, {"calibrated_from": str(getattr(model, "source", ""))})
        log.info("calibrated model -> %s (explanations with --model %s use these margins)", path, path)
    return 0


def _summary(cal) -> str:
    """Return one line: the chosen margin and the worst r / captured share at each margin."""
    parts = [f"{c['margin_mm']:g} mm r {c['min_r']:.4f} captured {c['min_captured']:.3f}" for c in cal.curve()]
    chosen = "none" if cal.margin_mm is None else f"{cal.margin_mm:g} mm"
    return f"margin {chosen} ({'; '.join(parts)})"


def _write_json(path, doc) -> None:
    from LesionXAILib.atomic_write import write_json

    write_json(path, doc, allow_nan=True)
