"""``lesionxai evaluate``: Dice and lesion-wise precision/recall/F1 of a model on unseen phantoms."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from LesionXAILib.cli.common import add_model_arguments, add_segmentation_arguments, command_line, load_model_from_args, progress_for, segmentation_settings_from_args

NAME = "evaluate"
HELP = "evaluate a segmenter on fresh phantoms (seeds < 10000): voxel Dice, lesion precision/recall/F1"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--seeds", default="100-109", help="evaluation phantom seeds, < 10000 (default %(default)s)")
    parser.add_argument("--fov", type=float, nargs=3, default=None, metavar=("I", "J", "K"), help="phantom field of view in mm (default: whole brain)")
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("I", "J", "K"), help="phantom voxel size in mm")
    parser.add_argument("--no-mimics", dest="mimics", action="store_false", help="phantoms without lesion mimics (as models trained before mimics were measured)")
    parser.add_argument("--no-lookalikes", dest="lookalikes", action="store_false", help="mimics without the lesion-identical lookalikes in deep grey matter (as models trained before lookalikes were measured)")
    parser.add_argument("--out", default=None, help="write the evaluation JSON here")
    parser.add_argument("--update-card", action="store_true", help="record the evaluation in the model's card (model.json/.md beside it)")
    add_model_arguments(parser)
    add_segmentation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the summary; return the exit code."""
    from LesionXAILib.cli.commands.train import parse_seeds
    from LesionXAILib.phantom import PhantomSettings
    from LesionXAILib.training import evaluate_model

    seeds = parse_seeds(args.seeds)
    model = load_model_from_args(args)
    phantom_settings = PhantomSettings(fov_mm=tuple(args.fov) if args.fov else None, spacing=tuple(args.spacing), mimics=args.mimics, lookalikes=args.lookalikes)
    callback, close = progress_for(args, "evaluate")
    try:
        result = evaluate_model(model, seeds, phantom_settings, segmentation_settings_from_args(args), progress=callback)
    finally:
        close()

    summary = {**result.summary(), "command": command_line(args), "phantom_settings": phantom_settings.to_dict(), "threshold": args.threshold or model.config.threshold}
    text = json.dumps(summary, indent=2)
    if args.out:
        from LesionXAILib.atomic_write import write_text

        write_text(args.out, text + "\n")
    if args.update_card:
        from LesionXAILib.training.model_card import record_evaluation

        record_evaluation(Path(model.source), summary)
    log.info(
        "%d phantoms: Dice %.3f (min %.3f), lesion precision %.3f recall %.3f F1 %.3f",
        summary["subjects"], summary["dice_mean"], summary["dice_min"],
        summary["lesion_precision"], summary["lesion_recall"], summary["lesion_f1"],
    )  # fmt: skip
    print(json.dumps({k: v for k, v in summary.items() if k not in ("rows", "phantom_settings")}))
    return 0
