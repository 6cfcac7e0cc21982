"""``lesionxai phantom``: write a synthetic FLAIR + MPRAGE MS phantom and its ground-truth lesions."""

from __future__ import annotations

import argparse
import logging

NAME = "phantom"
HELP = "generate a synthetic FLAIR/MPRAGE MS phantom (flair.nii.gz, t1.nii.gz, lesions.nii.gz, mimics.nii.gz, lesions.json)"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    parser.add_argument("--seed", type=int, required=True, help="random seed (the same seed gives the same phantom)")
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--lesions", type=int, default=None, metavar="K", help="number of lesions (default: random 10-25)")
    parser.add_argument(
        "--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("I", "J", "K"),
        help="voxel spacing in mm, e.g. 1 1 3 for thick axial slices (default 1 1 1)",
    )  # fmt: skip
    parser.add_argument(
        "--fov", type=float, nargs=3, default=None, metavar=("I", "J", "K"),
        help="field of view in mm centred on the brain (default: the whole brain)",
    )  # fmt: skip
    parser.add_argument("--pad", type=int, default=0, help="pad each side by a random 0..N voxels (varies the shape)")
    parser.add_argument(
        "--no-mimics", dest="mimics", action="store_false",
        help="no lesion mimics (FLAIR-bright caps, cortex, septum, choroid plexus, flow ghosts, deep-grey-matter lookalikes): the pre-mimics phantom",
    )  # fmt: skip
    parser.add_argument(
        "--no-lookalikes", dest="lookalikes", action="store_false",
        help="mimics without the lesion-identical lookalikes in deep grey matter: the phantom made before they existed",
    )  # fmt: skip
    parser.add_argument(
        "--tissue", action="store_true", help="also write the tissue probabilities (wm.nii.gz, gm.nii.gz, csf.nii.gz)"
    )


def run(args: argparse.Namespace) -> int:
    """Generate one phantom and write it; return the exit code."""
    from LesionXAILib.cli.common import progress_for
    from LesionXAILib.image_io import check_output_dir
    from LesionXAILib.phantom import PhantomSettings, generate_phantom

    settings = PhantomSettings(
        n_lesions=args.lesions,
        spacing=tuple(args.spacing),
        fov_mm=tuple(args.fov) if args.fov else None,
        random_pad_voxels=args.pad,
        mimics=args.mimics,
        lookalikes=args.lookalikes,
    )
    out = check_output_dir(args.out, [])
    callback, close = progress_for(args, "phantom")
    try:
        phantom = generate_phantom(args.seed, settings, progress=callback)
    finally:
        close()
    paths = phantom.write(out, tissue=args.tissue)
    summary = phantom.summary()
    log.info(
        "phantom seed %d: %d lesions (%d components, %.0f mm^3), %d mimics, size %s, spacing %s, %.1f s -> %s",
        args.seed,
        len(phantom.lesion_params),
        summary["lesion_components"],
        summary["lesion_volume_mm3"],
        len(phantom.mimic_params),
        phantom.geometry.size,
        tuple(round(s, 3) for s in phantom.geometry.spacing),
        phantom.seconds,
        paths["flair"].parent,
    )
    return 0
