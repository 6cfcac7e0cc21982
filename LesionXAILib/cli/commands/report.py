"""``lesionxai report``: the single-subject HTML report from an earlier segment/explain/probe/demo run."""

from __future__ import annotations

import argparse
import logging

NAME = "report"
HELP = "build the self-contained HTML report (and PNG/PDF panels) from a segment/explain/probe/demo output directory"
log = logging.getLogger("LesionXAILib.cli")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.report.build import EXPORT_FORMATS
    from LesionXAILib.report.panels import DEFAULT_HALF_WIDTH_MM

    parser.add_argument("--run", required=True, metavar="DIR", help="directory written by lesionxai segment/explain/probe/demo")
    parser.add_argument("--out", default=None, metavar="FILE", help="report file (default: DIR/report.html; figures go beside it)")
    parser.add_argument("--flair", default=None, help="FLAIR volume (default: the path recorded in DIR/instances.json)")
    parser.add_argument("--t1", default=None, help="MPRAGE volume (default: the path recorded in DIR/instances.json)")
    parser.add_argument("--export", choices=EXPORT_FORMATS, default="png", help="panels for papers: png (default), pdf, both or none")
    parser.add_argument("--half-width", type=float, default=DEFAULT_HALF_WIDTH_MM, metavar="MM",
                        help=f"half width of the lesion views in mm (default {DEFAULT_HALF_WIDTH_MM:g})")  # fmt: skip
    parser.add_argument("--title", default=None, help="report title")


def run(args: argparse.Namespace) -> int:
    """Build the report; return the exit code."""
    from LesionXAILib.cli.common import progress_for
    from LesionXAILib.report import ReportSettings, build_report

    settings = ReportSettings(half_width_mm=args.half_width, export=args.export, title=args.title)
    callback, close = progress_for(args, "report")
    try:
        report = build_report(args.run, args.out, args.flair, args.t1, settings, progress=callback)
    finally:
        close()
    for note in report.notes:
        log.warning("%s", note)
    log.info("report with %d lesion panels in %.1f s -> %s", report.lesions, report.seconds, report.html)
    return 0
