"""``lesionxai counterfactual``: segment, then find per lesion the smallest smooth change that flips its detection."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_segmentation_arguments,
    parse_instances,
    segment_subject_from_args,
)
from LesionXAILib.errors import LesionXAIError

NAME = "counterfactual"
HELP = ("per lesion, the smallest smooth warp / intensity change that makes the model drop it (TP/FP) or find it (FN); "
        "writes instance_<id>/ maps + counterfactuals.json")  # fmt: skip
SUMMARIES = ("counterfactuals.json",)
log = logging.getLogger("LesionXAILib.cli")


class NotFlipped(LesionXAIError):
    """Some lesions could not be flipped within the budget (their folders are not written)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.counterfactual.settings import (
        CHANGES, CHECKS, DEFAULT_CHECK_MARGIN_MM, DEFAULT_MARGIN_MM, MODES, CounterfactualSettings,
    )  # fmt: skip

    add_input_arguments(parser)
    add_output_arguments(parser)
    add_model_arguments(parser)
    add_segmentation_arguments(parser)
    d = CounterfactualSettings()  # the options' defaults are the library's
    g = parser.add_argument_group("counterfactual")
    g.add_argument("--instances", default="all", help="'all' (default) or comma-separated instance ids, e.g. 3,7")
    g.add_argument("--mode", choices=MODES, default="auto",
                   help="auto (default): remove predicted/TP/FP lesions, add FN ones (needs --gt); remove; add")  # fmt: skip
    g.add_argument("--change", choices=CHANGES, default=d.change, help="what may change: both (default), warp or intensity")
    g.add_argument("--seed", type=int, default=d.seed, help="seed of the run's random generators (default 0)")
    g.add_argument("--max-iter", type=int, default=d.max_iter, help=f"optimisation steps per lesion before giving up (default {d.max_iter})")
    g.add_argument("--step-mm", type=float, default=d.step_mm, help=f"largest control-point move per step in mm (default {d.step_mm:g})")
    g.add_argument("--intensity-per-mm", type=float, default=d.intensity_per_mm,
                   help=f"normalised intensity change that costs as much as 1 mm of displacement (default {d.intensity_per_mm:g})")  # fmt: skip
    g.add_argument("--reach-mm", type=float, default=d.reach_mm, help=f"the change is zero beyond this distance from the lesion's bounding box (default {d.reach_mm:g})")
    g.add_argument("--control-spacing-mm", type=float, default=d.control_spacing_mm, help=f"control grid spacing (default {d.control_spacing_mm:g})")
    g.add_argument("--margin-mm", type=float, default=None,
                   help=f"search crop margin beyond the changed region (default: the model's calibrated margin, else {DEFAULT_MARGIN_MM:g})")  # fmt: skip
    g.add_argument("--check", choices=CHECKS, default=d.check, help="re-segment each result on a wide crop (default) or the whole volume")
    g.add_argument("--check-margin-mm", type=float, default=d.check_margin_mm, help=f"check crop margin (default {DEFAULT_CHECK_MARGIN_MM:g})")


def settings_from_args(args: argparse.Namespace):
    """Return the CounterfactualSettings described by the counterfactual options."""
    from LesionXAILib.counterfactual.settings import CounterfactualSettings

    return CounterfactualSettings(
        mode=args.mode, change=args.change, seed=args.seed, max_iter=args.max_iter, step_mm=args.step_mm,
        intensity_per_mm=args.intensity_per_mm, reach_mm=args.reach_mm, control_spacing_mm=args.control_spacing_mm,
        margin_mm=args.margin_mm, check=args.check, check_margin_mm=args.check_margin_mm,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Segment one subject, search the chosen lesions' counterfactuals, write them; return the exit code."""
    from tqdm import tqdm

    from LesionXAILib.counterfactual import iter_counterfactuals, plan
    from LesionXAILib.counterfactual.output import write_counterfactual, write_summary

    settings = settings_from_args(args)  # bad options fail before the subject is loaded
    ids = parse_instances(args.instances)
    steps: list = []

    def check(result) -> None:  # unknown ids, no lesion, nothing to flip: refused before --out is created
        steps[:] = plan(result.instances, ids, settings.mode)

    subject = segment_subject_from_args(args, clears=SUMMARIES, check_result=check)
    model, result, out = subject.model, subject.result, subject.out
    log.info("%d instances found; searching counterfactuals of %d", len(result.instances.instances), len(steps))
    rows, failed = [], []
    bar = tqdm(total=len(steps), desc="counterfactual", unit="lesion", disable=bool(getattr(args, "quiet", False)), dynamic_ncols=True)

    def progress(fraction: float, message: str) -> None:
        bar.set_postfix_str(message, refresh=False)

    try:
        for cf in iter_counterfactuals(model, result, steps, settings, progress):
            row = cf.summary()
            row.pop("settings", None)
            if cf.passed:
                row["folder"] = write_counterfactual(out, cf, result, subject.protected).name
            else:
                row["folder"] = None
                failed.append(cf)
            rows.append(row)
            bar.update(1)
    finally:
        bar.close()
    write_summary(out, rows, settings.to_dict(), {"threshold": result.threshold, "min_size_voxels": result.instances.min_size_voxels})
    seconds = sum(r["seconds"] for r in rows)
    log.info("%d of %d lesions flipped in %.1f s -> %s", len(rows) - len(failed), len(rows), seconds, out / "counterfactuals.json")
    if failed:
        raise NotFlipped("; ".join(_why(cf, settings) for cf in failed) + " (no folder written for them; see counterfactuals.json)")
    return 0


def _why(cf, settings) -> str:
    """Return one clause saying why a lesion's counterfactual does not count."""
    if not cf.flipped:
        verb = "dropped" if cf.mode == "remove" else "found"
        return (f"instance {cf.instance_id}: not {verb} within {settings.max_iter} steps (lesion probability "
                f"{cf.before.mean_probability:.3f} -> {cf.after.mean_probability:.3f}); raise --max-iter or --step-mm")  # fmt: skip
    return f"instance {cf.instance_id}: the warp folds (Jacobian determinant {float(cf.pullback_jacobian.min()):.3g} <= 0); lower --step-mm"
