"""``lesionxai explain``: segment, then explain lesion instances (one NIfTI per instance x method x sequence)."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_segmentation_arguments,
    parse_instances,
    parse_methods,
    segment_subject_from_args,
)

NAME = "explain"
EXPLAIN_SUMMARIES = ("explanations.json", "explanations.csv")
HELP = "explain lesion instances per input sequence (SmoothGrad, Grad-CAM++, ...); writes maps + explanations.json"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.explain.registry import available_methods, method_default
    from LesionXAILib.explain.settings import AGGREGATIONS

    add_input_arguments(parser)
    add_output_arguments(parser)
    add_model_arguments(parser)
    add_segmentation_arguments(parser)
    g = parser.add_argument_group("explanation")
    g.add_argument("--instances", default="all", help="'all' (default) or comma-separated instance ids, e.g. 3,7")
    g.add_argument(
        "--methods", default=None,
        help=f"comma-separated, from: {', '.join(available_methods())} (default smoothgrad,gradcampp; --preset anchor: smoothgrad,gradcampp_anchor)",
    )  # fmt: skip
    g.add_argument("--aggregation", choices=AGGREGATIONS, default=None, help="instance target (default sum, as the anchor)")
    g.add_argument("--samples", type=int, default=None, help=f"SmoothGrad noise samples (default {method_default('smoothgrad', 'samples')}; --preset anchor: 50)")
    g.add_argument("--noise-level", type=float, default=None, help="SmoothGrad sigma as a fraction of the normalised FLAIR range "
                   f"(default {method_default('smoothgrad', 'noise_level'):g})")
    g.add_argument("--noise-per-channel", action="store_true", help="scale sigma by each channel's own range")
    seed, steps = method_default("smoothgrad", "seed"), method_default("integrated_gradients", "ig_steps")
    g.add_argument("--seed", type=int, default=seed, help=f"noise seed (default {seed})")
    g.add_argument("--ig-steps", type=int, default=steps, help=f"integrated-gradients path steps (default {steps})")
    g.add_argument("--margin-mm", type=float, default=None,
                   help="crop margin in mm around each lesion or, with max aggregation, around each lesion voxel (default: the "
                        "model's calibrated margin, see `lesionxai calibrate`; an uncalibrated model is calibrated on this subject "
                        "the first time, cached by its weights). Every lesion's crop is checked against a wider one and widened "
                        "(or explained on the whole volume) below r 0.995 / captured 0.98")  # fmt: skip
    g.add_argument("--full-volume", action="store_true", help="evaluate the whole volume per instance (slow reference)")
    g.add_argument("--cam-layer", default=None, help="module name of the CAM layer (default: the model config's cam_layer, else model.1 for MONAI "
                   "UNets (full resolution, measured); --preset anchor: module.model.1.submodule.2.conv)")  # fmt: skip
    g.add_argument("--batch-size", type=int, default=None, help="network copies per pass (default: from the crop size)")
    g.add_argument("--ring-mm", type=float, nargs=2, default=(1.0, 3.0), metavar=("INNER", "OUTER"), help="perilesional ring for the statistics (default 1 3)")


def settings_from_args(args: argparse.Namespace):
    """Return the ExplainSettings described by the explanation options."""
    from LesionXAILib.explain import ExplainSettings

    return ExplainSettings(
        methods=parse_methods(args.methods),
        aggregation=args.aggregation,
        samples=args.samples,
        noise_level=args.noise_level,
        noise_per_channel=args.noise_per_channel,
        seed=args.seed,
        ig_steps=args.ig_steps,
        roi_margin_mm=args.margin_mm,
        full_volume=args.full_volume,
        cam_layer=args.cam_layer,
        batch_size=args.batch_size,
        ring_mm=tuple(args.ring_mm),
    )


def run(args: argparse.Namespace) -> int:
    """Segment one subject, explain the chosen instances, write maps and statistics; return the exit code."""
    from tqdm import tqdm

    from LesionXAILib.analysis import SubjectAnalysis
    from LesionXAILib.explain.api import instance_targets, iter_explanations
    from LesionXAILib.explain.fidelity import write_run_calibration
    from LesionXAILib.explain.output import write_explanations
    from LesionXAILib.models.contract import apply_crop_rule

    settings = settings_from_args(args)  # bad options fail before the subject is loaded
    ids = parse_instances(args.instances)
    # unknown instance ids are refused before anything is written
    subject = segment_subject_from_args(args, clears=EXPLAIN_SUMMARIES,
                                        check_result=lambda r: instance_targets(r.instances, ids, settings.aggregation))  # fmt: skip
    settings = settings_from_args(args)  # a preset's CAM layer is resolved once the network is loaded
    model, result, out, inputs = subject.model, subject.result, subject.out, subject.protected
    if "atoms" in settings.methods:
        from LesionXAILib.models.mlcsc_atoms import require_mlcsc

        require_mlcsc(model)  # before any lesion is explained: one line, nothing half-written
    settings = apply_crop_rule(settings, model.config)  # resampling / uncalibrated long-reach models: whole volume
    targets = instance_targets(result.instances, ids, settings.aggregation)
    # an uncalibrated model is calibrated here, on this subject's lesions (once per model: cached by its weights)
    shared = SubjectAnalysis(model, result)
    settings = shared.margin_settings(settings)
    margin_source = shared.margin_source or ("whole-volume" if settings.full_volume else "chosen")
    log.info("%d instances found; explaining %d with %s", len(result.instances.instances), len(targets), ", ".join(settings.methods))
    if not settings.full_volume:
        log.info("crop margin %g mm around each lesion%s (%s; checked per lesion)", settings.roi_margin_mm,
                 " voxel" if settings.aggregation == "max" else "", margin_source)  # fmt: skip
    else:
        log.info("whole volume per lesion (%s)", margin_source)
    rows = []
    bar = tqdm(total=len(targets), desc="explain", unit="lesion", disable=bool(getattr(args, "quiet", False)), dynamic_ncols=True)

    def step(fraction: float, message: str) -> None:
        bar.set_postfix_str(message, refresh=False)

    try:
        for explanation in iter_explanations(model, result.normalized, targets, result.geometry, settings, step):
            explanation.write(out / f"instance_{explanation.instance_id}", result.geometry, inputs)
            rows.append(explanation.to_dict())
            bar.update(1)
    finally:
        bar.close()
    rows.sort(key=lambda r: r["instance_id"])
    write_explanations(out, rows, settings, result, margin_source)
    if "atoms" in settings.methods:
        from LesionXAILib.explain.methods.atoms import write_atom_tables

        write_atom_tables(out, model, result.normalized, targets)  # which atoms carry each lesion's code
    if margin_source == "auto-calibrated":
        write_run_calibration(model, out, inputs)
    flagged = [r["instance_id"] for r in rows if r.get("fidelity", {}).get("flag")]
    if flagged:
        log.warning("fidelity below the rule or unchecked for instance(s) %s (see explanations.json)", flagged)
    seconds = sum(r["seconds"] for r in rows)
    log.info("explained %d instances in %.1f s -> %s", len(rows), seconds, out / "explanations.json")
    return 0
