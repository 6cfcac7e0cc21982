"""``lesionxai synth-probe``: insert synthetic lesions of known size and contrast into normal-appearing
white matter of one subject and report detection rate and Dice vs size and contrast."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_segmentation_arguments,
    segment_subject_from_args,
    progress_for,
)

NAME = "synth-probe"
HELP = "synthetic-lesion probe: detection rate and Dice of inserted lesions vs size and FLAIR contrast"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.probes.synthetic import DEFAULT_FLAIR_CONTRASTS, DEFAULT_VOLUMES_MM3, SHAPES

    add_input_arguments(parser)
    add_output_arguments(parser)
    g = parser.add_argument_group("synthetic lesions")
    g.add_argument("--sizes", type=float, nargs="+", default=list(DEFAULT_VOLUMES_MM3), metavar="MM3",
                   help=f"lesion volumes in mm^3 (default {' '.join(f'{v:g}' for v in DEFAULT_VOLUMES_MM3)})")
    g.add_argument("--contrasts", type=float, nargs="+", default=list(DEFAULT_FLAIR_CONTRASTS), metavar="RATIO",
                   help="FLAIR lesion/white-matter intensity ratios (default "
                        f"{' '.join(f'{c:g}' for c in DEFAULT_FLAIR_CONTRASTS)})")
    g.add_argument("--t1-contrast", type=float, default=0.7, help="MPRAGE lesion/white-matter ratio (default 0.7)")
    g.add_argument("--positions", type=int, default=8, help="number of random white-matter positions (default 8)")
    g.add_argument("--at", type=float, nargs=3, action="append", default=None, metavar=("I", "J", "K"),
                   help="insert at this voxel (repeatable; replaces the random positions)")
    g.add_argument("--wm", default=None, help="white-matter probability map (default: estimated from the MPRAGE)")
    g.add_argument("--shape", choices=SHAPES, default="ovoid", help="lesion shape (default ovoid)")
    g.add_argument("--min-distance", type=float, default=10.0, metavar="MM",
                   help="keep positions this far from segmented lesions and from each other (default 10)")
    g.add_argument("--seed", type=int, default=0, help="seed for positions and lesion shapes")
    g.add_argument("--context", action="store_true", help="also run the context probe on every inserted lesion")
    g.add_argument("--max-radius", type=float, default=15.0, help="context probe: largest radius in mm (default 15)")
    add_model_arguments(parser)
    add_segmentation_arguments(parser)  # fmt: skip


def read_wm(path: str, geometry):
    """Return a white-matter probability map from ``path`` on ``geometry``'s grid (linear resampling if needed)."""
    import SimpleITK as sitk

    from LesionXAILib.geometry import Geometry, boxes_overlap, resample_to
    from LesionXAILib.image_io import read_image
    from LesionXAILib.errors import InputImageError

    image = read_image(path, "white-matter map")
    g = Geometry.from_image(image)
    if not g.almost_equal(geometry):
        if not boxes_overlap(g, geometry):
            raise InputImageError(f"white-matter map '{path}': does not overlap the FLAIR field of view")
        image = resample_to(image, geometry, sitk.sitkLinear)
    return sitk.GetArrayFromImage(image)


def run(args: argparse.Namespace) -> int:
    """Segment the subject, run the synthetic-lesion probe and write CSV, JSON and PNG; return the exit code."""
    from LesionXAILib.probes import ContextSettings, SyntheticSettings, synthetic_lesion_probe

    settings = SyntheticSettings(
        volumes_mm3=tuple(args.sizes),
        flair_contrasts=tuple(args.contrasts),
        t1_contrast=args.t1_contrast,
        positions_ijk=tuple(tuple(p) for p in args.at) if args.at else None,
        n_positions=args.positions,
        seed=args.seed,
        shape=args.shape,
        min_distance_mm=args.min_distance,
        threshold=args.threshold,
        context=ContextSettings.up_to(args.max_radius) if args.context else None,
    )
    subject = segment_subject_from_args(args, extra_inputs=[args.wm])
    pair, gt, model, result, out = subject.pair, subject.ground_truth, subject.model, subject.result, subject.out
    wm = read_wm(args.wm, pair.geometry) if args.wm else None
    exclude = result.instances.labels > 0
    if gt is not None:
        exclude |= gt
    from dataclasses import replace

    settings = replace(settings, threshold=result.threshold, min_size_voxels=result.instances.min_size_voxels)
    callback, close = progress_for(args, "synth-probe")
    try:
        probe = synthetic_lesion_probe(model, pair, settings, wm=wm, exclude=exclude, progress=callback)
    finally:
        close()
    probe.write_csv(out / "synthetic_trials.csv")
    probe.write_summary_csv(out / "synthetic_summary.csv")
    probe.plot(out / "synthetic_probe.png")
    probe.write_json(out / "synthetic_probe.json")
    for row in probe.summary_rows():
        log.info(
            "volume %6g mm3, FLAIR x%g: detected %d/%d, mean Dice %.3f",
            row["volume_mm3"], row["flair_contrast"], row["detected"], row["trials"], row["mean_dice"],
        )  # fmt: skip
    log.info("%d trials at %d positions (%s white matter) in %.1f s -> %s", len(probe.trials), probe.n_positions,
             probe.wm_source, probe.seconds, out)  # fmt: skip
    return 0
