"""``lesionxai study``: the anchor study's analyses (context needed, saliency inside vs ring, peaks, mimic FPs) over held-out phantoms."""

from __future__ import annotations

import argparse
import logging

NAME = "study"
HELP = "reproduce the anchor study's analyses on held-out phantoms for one or more models (table, figures, HTML)"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.study import StudySettings

    d = StudySettings()
    parser.add_argument(
        "--models", nargs="+", default=None, metavar="NAME_OR_PATH",
        help="shipped demo model names (unet, unet-anchor, dynunet, swinunetr) or checkpoint paths, optionally "
        "LABEL=PATH (default: the anchor comparison's three shipped models)",
    )  # fmt: skip
    parser.add_argument("--out", required=True, help="output directory (lesions.csv, subjects.csv, summary.json/.md, figures, study.html)")
    parser.add_argument("--seeds", default="200-203", help="held-out phantom seeds, < 10000 (default %(default)s)")
    parser.add_argument("--fov", type=float, nargs=3, default=list(d.fov_mm), metavar=("I", "J", "K"), help="phantom field of view in mm (default 96 96 96)")
    parser.add_argument("--whole-brain", action="store_true", help="whole-brain phantoms instead of --fov")
    parser.add_argument("--lesions", type=int, default=d.n_lesions, help="lesions per phantom (default %(default)s)")
    parser.add_argument("--no-mimics", dest="mimics", action="store_false", help="phantoms without lesion mimics")
    parser.add_argument("--no-lookalikes", dest="lookalikes", action="store_false", help="mimics without the lesion-identical lookalikes in deep grey matter")
    parser.add_argument("--method", choices=("smoothgrad", "gradient"), default=d.method, help="saliency method (default %(default)s)")
    parser.add_argument("--samples", type=int, default=d.samples, help="SmoothGrad samples (default %(default)s; the anchor used 50)")
    parser.add_argument("--max-radius", type=float, default=d.max_radius_mm, help="largest context radius in mm (default %(default)s)")
    parser.add_argument("--max-lesions", type=int, default=None, help="analyse at most N lesions per subject and model")
    parser.add_argument("--synthetic-positions", type=int, default=d.synthetic_positions, help="white-matter positions of the synthetic-lesion detection curve on the first phantom (0: none; default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="SmoothGrad / probe seed (default %(default)s)")


def _models(specs):
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.study.models import ANCHOR_COMPARISON, resolve_model

    specs = specs or list(ANCHOR_COMPARISON)
    models = {}
    for spec in specs:
        label, _, path = spec.partition("=") if "=" in spec else (spec, "", spec)
        models[label] = load_model(resolve_model(path))
    return models


def run(args: argparse.Namespace) -> int:
    """Run the study and write its outputs; return the exit code."""
    from LesionXAILib.cli.commands.train import parse_seeds
    from LesionXAILib.cli.common import progress_for
    from LesionXAILib.study import StudySettings, run_study
    from LesionXAILib.study.output import write_study
    from LesionXAILib.study.summary import markdown_table, summarise

    settings = StudySettings(
        seeds=parse_seeds(args.seeds),
        fov_mm=None if args.whole_brain else tuple(args.fov),
        n_lesions=args.lesions,
        mimics=args.mimics,
        lookalikes=args.lookalikes,
        method=args.method,
        samples=args.samples,
        max_radius_mm=args.max_radius,
        max_lesions=args.max_lesions,
        seed=args.seed,
        synthetic_positions=args.synthetic_positions,
    )
    from LesionXAILib.image_io import check_output_dir

    out = check_output_dir(args.out, [])
    models = _models(args.models)
    callback, close = progress_for(args, "study")
    try:
        result = run_study(models, settings, progress=callback)
    finally:
        close()
    paths = write_study(result, out)
    summary = summarise(result)
    print(markdown_table(summary), end="")
    log.info("study of %d model(s) on %d phantom(s): %d lesions in %.1f min -> %s", len(models), len(settings.seeds),
             len(result.lesions), result.seconds / 60, paths["html"])  # fmt: skip
    return 0
