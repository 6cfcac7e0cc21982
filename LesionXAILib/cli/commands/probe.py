"""``lesionxai probe``: perilesional-context probe of every (or selected) lesion instance of one subject."""

from __future__ import annotations

import argparse
import logging

from LesionXAILib.cli.common import (
    add_subject_arguments,
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
    add_subject_arguments(parser)
    add_probe_arguments(parser)


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the context-probe options (instances, radii, fill)."""
    g = parser.add_argument_group("context probe")
    g.add_argument("--instances", default="all", help="'all' (default) or instance ids, e.g. 3,7")
    g.add_argument("--probe-element", choices=("ball", "anchor"), default=None,
                   help="ball: the lesion grown by Euclidean balls in mm (default); anchor: n-fold 18-connected dilation, "
                        "n = 1..34 voxel steps (radii count steps), detected = any lesion voxel above threshold")  # fmt: skip
    g.add_argument("--max-radius", type=float, default=None, help="largest kept radius in mm (default 15; anchor element: 34 steps)")
    g.add_argument("--radius-step", type=float, default=None, help="radius step in mm (default 1)")
    g.add_argument("--radii", type=float, nargs="+", default=None, metavar="MM", help="explicit radii in mm (overrides --max-radius/--radius-step)")
    g.add_argument("--fill", choices=("background", "zero", "mean", "noise"), default=None,
                   help="value outside the kept region (default: normalised background; --preset anchor: zero)")  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed of the noise fill")
    g.add_argument("--receptive-margin", type=float, default=None, metavar="MM",
                   help="least crop margin around the lesion for the network's receptive field (default 24)")  # fmt: skip
    g.add_argument("--batch-size", type=int, default=None, help="radii per network call (default: automatic)")


def context_settings_from_args(args: argparse.Namespace):
    """Return the ContextSettings selected by the probe options."""
    from LesionXAILib.presets import BUILTIN_DEFAULTS
    from LesionXAILib.probes import ContextSettings, default_radii
    from LesionXAILib.probes.context import ANCHOR_STEPS, DEFAULT_RECEPTIVE_MARGIN_MM

    def option(name: str):
        return option_or(args, name, BUILTIN_DEFAULTS[name])

    element = option("probe_element")
    if args.radii:
        radii = tuple(args.radii)
    elif element == "anchor":
        # the anchor's steps 1 ... 34 unless --max-radius / --radius-step say otherwise
        radii = tuple(r for r in default_radii(option_or(args, "max_radius", ANCHOR_STEPS[-1]), option_or(args, "radius_step", 1.0)) if r > 0)
    else:
        radii = default_radii(option_or(args, "max_radius", 15.0), option_or(args, "radius_step", 1.0))
    return ContextSettings(
        radii_mm=radii,
        fill=option("fill"),
        threshold=args.threshold,
        connectivity=option("connectivity"),
        element=element,
        detection="any" if element == "anchor" else "component",
        seed=args.seed,
        receptive_margin_mm=option_or(args, "receptive_margin", DEFAULT_RECEPTIVE_MARGIN_MM),
        batch_size=getattr(args, "batch_size", None),
    )


def option_or(args: argparse.Namespace, name: str, default):
    """Return ``args.<name>`` or ``default`` where the command has no such option or it was not given."""
    value = getattr(args, name, None)
    return default if value is None else value


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
    settings = context_settings_from_args(args)  # with the threshold a preset picks for this network
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
