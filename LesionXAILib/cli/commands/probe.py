"""``lesionxai probe``: perilesional-context probe of every (or selected) lesion instance of one subject."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_input_arguments,
    add_model_arguments,
    add_output_arguments,
    add_segmentation_arguments,
    parse_instances,
    progress_for,
    segment_subject_from_args,
)

NAME = "probe"
PROBE_SUMMARIES = ("context_probe.json", "context_probe.csv")
HELP = "perilesional-context probe: how many mm of tissue around each lesion the model needs to segment it"
log = logging.getLogger("LesionXAILib.cli")



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    add_input_arguments(parser)
    add_output_arguments(parser)
    add_probe_arguments(parser)
    add_model_arguments(parser)
    add_segmentation_arguments(parser)


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the context-probe options (instances, radii, fill)."""
    g = parser.add_argument_group("context probe")
    g.add_argument("--instances", default="all", help="'all' (default) or instance ids, e.g. 3,7")
    g.add_argument("--max-radius", type=float, default=15.0, help="largest kept radius in mm (default 15)")
    g.add_argument("--radius-step", type=float, default=1.0, help="radius step in mm (default 1)")
    g.add_argument("--radii", type=float, nargs="+", default=None, metavar="MM", help="explicit radii in mm (overrides --max-radius/--radius-step)")
    g.add_argument("--fill", choices=("background", "zero", "mean", "noise"), default="background",
                   help="value outside the kept region (default: normalised background)")  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed of the noise fill")
    g.add_argument("--receptive-margin", type=float, default=None, metavar="MM",
                   help="least crop margin around the lesion for the network's receptive field (default 24)")  # fmt: skip
    g.add_argument("--batch-size", type=int, default=None, help="radii per network call (default: automatic)")


def context_settings_from_args(args: argparse.Namespace):
    """Return the ContextSettings selected by the probe options."""
    from LesionXAILib.probes import ContextSettings, default_radii
    from LesionXAILib.probes.context import DEFAULT_RECEPTIVE_MARGIN_MM

    radii = tuple(args.radii) if args.radii else default_radii(args.max_radius, args.radius_step)
    return ContextSettings(
        radii_mm=radii,
        fill=args.fill,
        threshold=args.threshold,
        seed=args.seed,
        receptive_margin_mm=DEFAULT_RECEPTIVE_MARGIN_MM if args.receptive_margin is None else args.receptive_margin,
        batch_size=args.batch_size,
    )


def run(args: argparse.Namespace) -> int:
    """Segment one subject, probe the selected instances and write curves, shells and a summary; return the exit code."""
    from LesionXAILib.probes import context_probe_instances
    from LesionXAILib.probes.output import write_instance_outputs, write_probe_summary

    ids = parse_instances(args.instances)
    settings = context_settings_from_args(args)
    def check_ids(result) -> None:  # unknown ids fail before anything is written
        for i in result.instances.ids if ids is None else ids:
            result.instances.get(i)

    subject = segment_subject_from_args(args, clears=PROBE_SUMMARIES, check_result=check_ids)
    model, result, out, protected = subject.model, subject.result, subject.out, subject.protected
    instances = result.instances
    chosen = instances.ids if ids is None else ids
    callback, close = progress_for(args, "probe")
    curves = {}
    try:
        for n, i in enumerate(chosen):
            def report(fraction: float, message: str, n: int = n, i: int = i) -> None:
                callback((n + fraction) / len(chosen), f"instance {i}: {message}")

            curve = context_probe_instances(model, result, [i], settings, progress=report)[i]
            write_instance_outputs(curve, out / f"instance_{i}", result.geometry, protected)
            curves[i] = curve
    finally:
        close()
    dist = write_probe_summary(out, curves, instances, settings, result.threshold)
    finite = dist["context_needed_mm"]
    log.info(
        "probed %d of %d instances: %s; context needed (mm) %s -> %s",
        len(chosen),
        len(instances.instances),
        ", ".join(f"{k} {v}" for k, v in sorted(dist["statuses"].items())) or "none",
        f"median {dist['median_context_needed_mm']:g}, range {finite[0]:g}-{finite[-1]:g}" if finite else "n/a",
        out,
    )
    return 0
