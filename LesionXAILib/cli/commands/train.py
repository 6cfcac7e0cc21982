"""``lesionxai train``: train a segmentation U-Net on phantoms (how the shipped demo model was made)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from LesionXAILib.errors import ParameterError

NAME = "train"
HELP = "train a lesion segmenter on phantoms (seeds >= 10000); writes a LesionXAI checkpoint"
log = logging.getLogger("LesionXAILib.cli")


def parse_seeds(text: str) -> tuple[int, ...]:
    """Return the seeds in '10000-10047' or '3,5,8' (ranges inclusive, may be mixed: '1-3,7')."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ParameterError(f"seeds: '{part}' is not a seed or an increasing range like 10000-10047") from None
    if not seeds:
        raise ParameterError("seeds: none given")
    return tuple(dict.fromkeys(seeds))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.training import TrainSettings

    d = TrainSettings()
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt); a model card (.json) is written beside it")
    parser.add_argument("--config", default=d.config, help=f"network preset, JSON file or a config in training/configs (demo-unet-anchor, demo-dynunet, demo-swinunetr); default {d.config}; 'tiny' for a smoke run")
    parser.add_argument("--seeds", default=f"{d.train_seeds[0]}-{d.train_seeds[-1]}", help="training phantom seeds, >= 10000 (default %(default)s)")
    parser.add_argument("--fov", type=float, nargs=3, default=None, metavar=("I", "J", "K"), help="phantom field of view in mm (default: whole brain)")
    parser.add_argument("--anisotropic-every", type=int, default=d.anisotropic_every, help="every N-th phantom at 1x1x3 mm (0: none; default %(default)s)")
    parser.add_argument("--patch", type=int, nargs=3, default=list(d.patch_size), metavar=("K", "J", "I"))
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this many minutes of training")
    parser.add_argument("--lr", type=float, default=d.learning_rate)
    parser.add_argument("--lesion-fraction", type=float, default=d.lesion_fraction, help="share of patches centred near a lesion (default %(default)s)")
    parser.add_argument("--mimic-fraction", type=float, default=d.mimic_fraction, help="share of patches centred on a lesion mimic, as hard negatives (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="initialisation / sampling seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-mimics", dest="mimics", action="store_false", help="train on phantoms without lesion mimics")
    parser.add_argument("--no-lookalikes", dest="lookalikes", action="store_false", help="mimics without the lesion-identical lookalikes in deep grey matter")
    parser.add_argument("--init", default=None, metavar="CHECKPOINT", help="start from this LesionXAI checkpoint's weights (same network) instead of a fresh initialisation; the card records it")
    parser.add_argument("--float16", action="store_true", help="store the weights at half precision (half the file; loaded back as float32)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing checkpoint")


def run(args: argparse.Namespace) -> int:
    """Train, write the checkpoint and its model card; return the exit code."""
    from LesionXAILib.cli.common import command_line, progress_for
    from LesionXAILib.training import TrainSettings, train_model
    from LesionXAILib.training.model_card import write_model_card

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ParameterError(f"'{out}' exists; pass --force to overwrite it")
    settings = TrainSettings(
        config=args.config,
        train_seeds=parse_seeds(args.seeds),
        fov_mm=tuple(args.fov) if args.fov else None,
        anisotropic_every=args.anisotropic_every,
        patch_size=tuple(args.patch),
        batch_size=args.batch_size,
        steps=args.steps,
        max_minutes=args.minutes,
        learning_rate=args.lr,
        lesion_fraction=args.lesion_fraction,
        mimic_fraction=args.mimic_fraction,
        seed=args.seed,
        threads=args.threads,
        mimics=args.mimics,
        lookalikes=args.lookalikes,
        float16=args.float16,
        init=args.init,
    )
    callback, close = progress_for(args, "train")
    try:
        result = train_model(settings, checkpoint=out, progress=callback, command=command_line(args))
    finally:
        close()
    card = write_model_card(out, result.model, result.metadata)
    log.info("trained %d steps in %.1f min (phantoms %.0f s) -> %s (card %s)", result.steps, result.seconds / 60, result.data_seconds, out, card)
    print(json.dumps({"steps": result.steps, "train_seconds": round(result.seconds, 1), "final_loss": result.losses[-1] if result.losses else None}))
    return 0
