"""``lesionxai cohort``: the cohort study over a folder of subjects (or a CSV manifest), serial or on Dask."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

from LesionXAILib.cli.common import (
    add_image_limit_argument,
    add_model_arguments,
    add_segmentation_arguments,
    segmentation_settings_from_args,
)
from LesionXAILib.errors import ParameterError

NAME = "cohort"
HELP = ("cohort study: segment, explain, probe and score every lesion of every subject; TP/FP/FN statistics and an "
        "HTML report (resumable; --workers N runs subjects on a local Dask cluster)")  # fmt: skip
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.explain.registry import available_methods, method_default
    from LesionXAILib.explain.settings import AGGREGATIONS
    from LesionXAILib.metrics.settings import METRICS

    parser.add_argument("--input", required=True, metavar="DIR|CSV",
                        help="a BIDS dataset (dataset_description.json; read with pybids), a folder with one folder per subject "
                             "(flair.nii.gz, t1.nii.gz, optional lesions.nii.gz; aliases: mprage/t1w, gt/ground_truth/lesion_mask) "
                             "or a CSV manifest subject,flair,t1,gt")  # fmt: skip
    parser.add_argument("--out", required=True, help="output folder (created; an earlier run there is resumed)")
    add_image_limit_argument(parser)
    gt = parser.add_mutually_exclusive_group()
    gt.add_argument("--gt", dest="ground_truth", action="store_const", const="require", default="auto",
                    help="require a ground-truth mask for every subject (TP/FP/FN); default: use it where present")  # fmt: skip
    gt.add_argument("--no-gt", dest="ground_truth", action="store_const", const="ignore", help="ignore ground-truth masks")
    add_model_arguments(parser)
    add_segmentation_arguments(parser)

    g = parser.add_argument_group("BIDS input and output")
    g.add_argument("--participant-label", nargs="+", default=(), metavar="LABEL", help="BIDS input: only these subjects (01 or sub-01)")
    g.add_argument("--session-label", nargs="+", default=(), metavar="LABEL", help="BIDS input: only these sessions (1 or ses-1)")
    g.add_argument("--acq", action="append", default=[], metavar="[SUFFIX=]LABEL",
                   help="BIDS input: only images with this acq label; SUFFIX FLAIR or T1w chooses for one image (--acq FLAIR=3D); repeatable")  # fmt: skip
    g.add_argument("--gt-derivative", default=None, metavar="NAME|DIR",
                   help="BIDS input: lesion masks from derivatives/NAME (or a derivatives folder): "
                        "*_desc-lesion_mask, *_label-lesion_mask or *_desc-lesions_dseg per subject and session")  # fmt: skip
    g.add_argument("--bids-out", action=argparse.BooleanOptionalAction, default=None,
                   help="also lay the results out in --out as BIDS-Derivatives (default: yes for BIDS input)")

    g = parser.add_argument_group("explanations")
    g.add_argument("--methods", default=None,
                   help=f"comma-separated from {', '.join(available_methods())}, or 'none' (default smoothgrad,gradcampp)")  # fmt: skip
    g.add_argument("--aggregation", choices=AGGREGATIONS, default=None, help="instance target (default sum)")
    g.add_argument("--samples", type=int, default=None, help=f"SmoothGrad samples (default {method_default('smoothgrad', 'samples')}; --preset anchor: 50)")
    g.add_argument("--noise-level", type=float, default=None, help="SmoothGrad sigma / FLAIR range (default 0.05)")
    g.add_argument("--seed", type=int, default=0, help="SmoothGrad noise seed (default 0)")
    g.add_argument("--margin-mm", type=float, default=None,
                   help="crop margin in mm (default: the model's calibrated margin; an uncalibrated model is calibrated on "
                        "the first subject, cached by its weights, else the whole volume; every lesion's crop is checked and "
                        "widened below r 0.995 / captured 0.98; max aggregation: around each voxel)")  # fmt: skip
    g.add_argument("--cam-layer", default=None, help="CAM layer module name (default: documented decoder layer)")

    g = parser.add_argument_group("context probe")
    g.add_argument("--probe-element", choices=("ball", "anchor"), default=None,
                   help="ball: Euclidean balls in mm (default); anchor: 18-connected dilation steps 1..34, any-voxel detection")  # fmt: skip
    g.add_argument("--max-radius", type=float, default=None, help="largest kept radius in mm (default 15)")
    g.add_argument("--radius-step", type=float, default=None, help="radius step in mm (default 1)")
    g.add_argument("--radii", type=float, nargs="+", default=None, metavar="MM", help="explicit radii (mm)")
    g.add_argument("--fill", choices=("background", "zero", "mean", "noise"), default=None, help="fill outside the kept region (default background)")
    g.add_argument("--no-context", action="store_true", help="skip the context probe")

    g = parser.add_argument_group("explanation metrics")
    g.add_argument("--metrics", default="all", help=f"comma-separated from {', '.join(METRICS)}; 'all' (default) or 'none'")
    g.add_argument("--infidelity-perturbations", type=int, default=16, help="infidelity perturbations (default 16)")
    g.add_argument("--infidelity-scale", type=float, default=0.01, help="infidelity noise SD / FLAIR range (default 0.01)")
    g.add_argument("--sensitivity-samples", type=int, default=8, help="max-sensitivity draws (default 8)")
    g.add_argument("--sensitivity-radius", type=float, default=0.02, help="max-sensitivity L-inf radius / FLAIR range (default 0.02)")
    g.add_argument("--ap-top-k", type=float, default=1.0, help="activation precision top-k percent (default 1; 0 disables)")
    g.add_argument("--ap-dilate-mm", type=float, default=0.0, help="dilate the lesion mask for activation precision (mm)")
    g.add_argument("--deletion-steps", type=int, default=32, help="deletion/insertion steps (default 32)")
    g.add_argument("--deletion-region-mm", type=float, default=8.0, help="features within this distance of the lesion (default 8; -1: the whole crop)")

    g = parser.add_argument_group("running")
    g.add_argument("--workers", type=int, default=None,
                   help="Dask worker processes on this machine (default: CPU cores / --threads; 0 = serial in this process)")  # fmt: skip
    g.add_argument("--threads", type=int, default=1, help="torch threads per subject (default 1)")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="submit to an existing Dask cluster (its workers must see the inputs and --out at the same paths)")  # fmt: skip
    g.add_argument("--wait", action="store_true",
                   help="if another cohort run holds --out, wait for it to finish (default: refuse, naming that run)")  # fmt: skip
    g.add_argument("--overwrite", action="store_true", help="recompute subjects finished with other settings or another model")
    g.add_argument("--no-lesion-files", action="store_true", help="do not write per-lesion maps, curves and shells")
    g.add_argument("--correction", choices=("holm", "bh"), default="holm", help="multiple-comparison correction (default holm)")
    g.add_argument("--report-only", action="store_true", help="only rebuild tables, statistics and report from finished subjects")
    g.add_argument("--library", default=None, metavar="LIB",
                   help="also embed every finished subject's lesions into this lesion library (created if missing; the same "
                        "as `lesionxai library build --cohort OUT --out LIB` after the run)")  # fmt: skip


def _csv(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


def settings_from_args(args: argparse.Namespace):
    """Return the CohortSettings described by the options."""
    from LesionXAILib.analysis import AnalysisSettings
    from LesionXAILib.cohort.settings import CohortSettings
    from LesionXAILib.explain import ExplainSettings
    from LesionXAILib.metrics.settings import METRICS, MetricSettings

    methods = _csv(args.methods)
    explain = None
    if methods and methods != ("none",):
        explain = ExplainSettings(methods=methods, aggregation=args.aggregation, samples=args.samples,
                                  noise_level=args.noise_level, seed=args.seed, roi_margin_mm=args.margin_mm,
                                  cam_layer=args.cam_layer)  # fmt: skip
    context = None
    if not args.no_context:
        from LesionXAILib.cli.commands.probe import context_settings_from_args

        context = context_settings_from_args(args)
    chosen = _csv(args.metrics)
    metrics = None
    if chosen and chosen != ("none",):
        metrics = MetricSettings(
            metrics=METRICS if chosen == ("all",) else chosen,
            infidelity_perturbations=args.infidelity_perturbations, infidelity_scale=args.infidelity_scale,
            sensitivity_samples=args.sensitivity_samples, sensitivity_radius=args.sensitivity_radius,
            ap_top_k_percent=args.ap_top_k if args.ap_top_k > 0 else None, ap_dilate_mm=args.ap_dilate_mm,
            deletion_steps=args.deletion_steps,
            deletion_region_mm=None if args.deletion_region_mm < 0 else args.deletion_region_mm,
        )  # fmt: skip
        if explain is None:
            raise ParameterError("--metrics score explanations; they need --methods (not 'none')")
    return CohortSettings(
        segmentation=segmentation_settings_from_args(args),
        analysis=AnalysisSettings(explain=explain, context=context),
        metrics=metrics,
        ground_truth=args.ground_truth,
        lesion_files=not args.no_lesion_files,
        threads=args.threads,
    )


def default_workers(threads: int) -> int:
    """Return the default number of local worker processes: CPU cores available / threads per worker (>= 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, threads))


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the cohort and write tables, statistics and the report; return 0, or 1 if a subject failed."""
    from tqdm import tqdm

    from LesionXAILib.cohort.bids_input import BidsQuery
    from LesionXAILib.cohort.runner import run_cohort
    from LesionXAILib.cohort.settings import ModelSpec

    settings = settings_from_args(args)
    if args.weights and args.model and args.weights != args.model:
        raise ParameterError("give either --model or --weights, not both")
    if args.weights and not args.config:
        raise ParameterError("--weights needs --config (e.g. --config ies-unet)")
    from LesionXAILib.cli.common import model_options_from_args

    spec = ModelSpec(args.model or args.weights, args.config, args.device, bool(args.trust_model), bool(args.weights),
                     model_options_from_args(args))  # fmt: skip
    library_model = None
    if args.library:  # opened before any subject runs: a library of another model is refused at once
        from LesionXAILib.cli.common import load_model_from_args
        from LesionXAILib.cohort.library_step import open_run_library

        library_model = load_model_from_args(argparse.Namespace(**vars(args)))  # a copy: presets may fill args in
        open_run_library(args.library, args.out, library_model)
    workers: Optional[int] = args.workers
    if workers is None:
        workers = 0 if args.scheduler is None and default_workers(args.threads) == 1 else default_workers(args.threads)
    quiet = bool(getattr(args, "quiet", False))
    # one bar over the subjects still to compute; its ETA comes from the subjects (and lesions) done so far
    bar = tqdm(total=1, desc="cohort", unit="subject", disable=quiet, dynamic_ncols=True)

    def plan(to_compute: int, total: int) -> None:
        bar.reset(total=max(to_compute, 1))
        if to_compute < total:
            bar.write(f"lesionxai: {total - to_compute} of {total} subjects finished earlier; computing {to_compute}", file=sys.stderr)

    def progress(fraction: float, message: str) -> None:
        target = round(fraction * bar.total, 3)
        if target > bar.n:
            bar.update(target - bar.n)
        if message:
            bar.set_postfix_str(message[-60:], refresh=False)

    def on_outcome(outcome) -> None:
        if outcome.state == "failed":
            bar.write(f"lesionxai: subject {outcome.subject} failed (skipped): {outcome.error}", file=sys.stderr)

    try:
        result = run_cohort(args.input, args.out, settings, spec, workers=workers, scheduler=args.scheduler,
                            overwrite=args.overwrite, correction=args.correction, compute=not args.report_only,
                            progress=progress, on_outcome=on_outcome, on_plan=plan, wait=args.wait,
                            bids=BidsQuery(tuple(args.participant_label), tuple(args.session_label), tuple(args.acq), args.gt_derivative),
                            bids_out=args.bids_out)  # fmt: skip
    finally:
        bar.close()
    if library_model is not None:
        from LesionXAILib.cohort.library_step import fill_run_library

        fill_run_library(args.library, args.out, library_model)
    groups = ", ".join(f"{g} {n}" for g, n in (result.statistics or {}).get("groups", {}).items()) or "no instances"
    log.info("cohort: %d subjects (%d computed, %d finished earlier, %d failed, %d not run); %s; %.1f s -> %s",
             len(result.subjects), result.count("finished"), result.count("skipped"), result.count("failed"),
             result.count("pending"), groups, result.seconds, result.paths.get("report", result.out))  # fmt: skip
    return 1 if result.failures else 0

