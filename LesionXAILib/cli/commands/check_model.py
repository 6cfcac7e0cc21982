"""``lesionxai check-model``: does a model load right? Its contract, one window, the probability range, the lesions found."""

from __future__ import annotations

import argparse
import json

from LesionXAILib.cli.common import add_input_arguments, add_model_arguments, load_model_from_args

NAME = "check-model"
HELP = "check that a model loads right: print its input contract, run one window, report the probabilities and lesions found"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    add_input_arguments(parser, gt=False)
    add_model_arguments(parser)
    parser.add_argument("--threshold", type=float, default=None, help="probability threshold (default: the model's)")
    parser.add_argument("--top", type=int, default=3, help="how many of the largest lesions to list (default 3)")
    parser.add_argument("--json", default=None, help="also write the check as JSON to this file")


def run(args: argparse.Namespace) -> int:
    """Load the model and the subject, run one window and print the report; return the exit code."""
    from dataclasses import asdict
    from pathlib import Path

    from LesionXAILib.atomic_write import write_text
    from LesionXAILib.errors import ParameterError
    from LesionXAILib.image_io import load_pair
    from LesionXAILib.models.check import check_model

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ParameterError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.top < 0:
        raise ParameterError(f"--top must be >= 0, got {args.top}")
    pair = load_pair(args.flair, args.t1)
    json_path = Path(args.json) if args.json else None
    if json_path is not None and json_path.resolve() in {Path(args.flair).resolve(), Path(args.t1).resolve()}:
        raise ParameterError(f"--json '{json_path}' would overwrite an input file")
    model = load_model_from_args(args)
    result = check_model(model, pair, args.threshold)
    print("\n".join(result.lines(args.top)))
    if json_path is not None:
        write_text(json_path, json.dumps(asdict(result), indent=2))
    return 0
