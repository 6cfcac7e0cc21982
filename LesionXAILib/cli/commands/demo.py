"""``lesionxai demo``: the whole idea on a synthetic subject, in a few minutes on a laptop.

Phantom (fixed seed) -> segmentation with the shipped demo model -> TP/FP/FN against the phantom's
ground truth -> every lesion explained (SmoothGrad, sum aggregation, + Grad-CAM++) and probed for the
context it needs -> the single-subject HTML report. Everything goes to one directory (default
``demo-output``), laid out like ``segment`` + ``explain`` + ``probe`` outputs, so ``lesionxai report
--run`` rebuilds the report from it. Rerunning into the same directory replaces the previous demo.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from LesionXAILib.cli.common import (
    add_model_arguments,
    add_segmentation_arguments,
    load_model_from_args,
    progress_for,
    segmentation_settings_from_args,
)
from LesionXAILib.errors import Cancelled, ParameterError

NAME = "demo"
HELP = "run the whole pipeline on a synthetic phantom with the demo model and write an HTML report"
log = logging.getLogger("LesionXAILib.cli")

# The demo subject: phantom seed 4242 (evaluation range, < 10000; the demo model trains on seeds >= 10000).
DEMO_SEED = 4242
# SmoothGrad samples of the demo (the anchor used 50; 16 keeps the whole demo within minutes on 2 cores)
DEMO_SAMPLES = 16
DEMO_MAX_RADIUS_MM = 15.0
SMALL_FOV_MM = (64.0, 64.0, 64.0)
SMALL_LESIONS = 8
MARKER = "demo.json"
# what a demo writes into its directory (removed when a later demo reuses the directory)
OWNED_FILES = (
    "instances.json", "instances.csv", "instances.nii.gz", "probability.nii.gz", "explanations.json",
    "explanations.csv", "context_probe.json", "context_probe.csv", "lesions.csv", "report.html", MARKER,
)  # fmt: skip
OWNED_DIRS = ("phantom", "figures")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this subcommand's options."""
    from LesionXAILib.explain.settings import AGGREGATIONS
    from LesionXAILib.report.build import EXPORT_FORMATS

    parser.add_argument("--out", default="demo-output", help="output directory (default demo-output; a previous demo there is replaced)")
    g = parser.add_argument_group("phantom")
    g.add_argument("--seed", type=int, default=DEMO_SEED, help=f"phantom seed (default {DEMO_SEED})")
    g.add_argument("--lesions", type=int, default=None, metavar="K", help="number of lesions (default: the seed's 10-25)")
    g.add_argument("--fov", type=float, nargs=3, default=None, metavar=("I", "J", "K"), help="field of view in mm (default: whole brain)")
    g.add_argument("--small", action="store_true", help=f"a {SMALL_FOV_MM[0]:g} mm cube with {SMALL_LESIONS} lesions (quick look, tests)")
    g.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("I", "J", "K"), help="voxel spacing in mm (default 1 1 1)")
    g.add_argument("--no-mimics", dest="mimics", action="store_false", help="a phantom without lesion mimics (the pre-mimics demo subject)")
    g.add_argument("--no-lookalikes", dest="lookalikes", action="store_false", help="mimics without the lesion-identical lookalikes in deep grey matter")
    add_model_arguments(parser)
    add_segmentation_arguments(parser)
    g = parser.add_argument_group("explanations and probe")
    g.add_argument("--aggregation", choices=AGGREGATIONS, default="sum", help="instance target: sum (default, the anchor's) or max")
    g.add_argument("--samples", type=int, default=DEMO_SAMPLES, help=f"SmoothGrad samples (default {DEMO_SAMPLES}; the anchor used 50)")
    g.add_argument("--max-radius", type=float, default=DEMO_MAX_RADIUS_MM, help=f"largest context radius in mm (default {DEMO_MAX_RADIUS_MM:g})")
    g.add_argument("--radius-step", type=float, default=1.0, help="context radius step in mm (default 1)")
    g.add_argument("--export", choices=EXPORT_FORMATS, default="png", help="panels for papers: png (default), pdf, both or none")


@dataclass
class DemoResult:
    """What a demo run produced: directory, report, metrics, lesion counts, stage times (s)."""

    out: Path
    report: Path
    stages: dict[str, float] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    cpu_stages: dict[str, float] = field(default_factory=dict)  # process CPU time (all threads) per stage

    @property
    def total_seconds(self) -> float:
        """Return the wall time of all stages."""
        return float(sum(self.stages.values()))


class _Stages:
    """Wall and process-CPU seconds per named stage (CPU time shows the cost on a machine shared with other jobs)."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._open: Optional[tuple[str, float, float]] = None

    def start(self, name: str) -> None:
        self.stop()
        self._open = (name, time.perf_counter(), time.process_time())

    def stop(self) -> None:
        if self._open is not None:
            name, wall, cpu = self._open
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self._open = None


def prepare_output(out: Path) -> Path:
    """Return ``out`` ready for a demo: created, or emptied of a previous demo's files; refuse foreign content."""
    if out.exists() and not out.is_dir():
        raise ParameterError(f"demo output '{out}' exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    entries = list(out.iterdir())
    if entries and not (out / MARKER).exists():
        raise ParameterError(
            f"demo output directory '{out}' is not empty and holds no earlier demo; choose a new or empty --out"
        )
    for entry in entries:
        owned = entry.name in OWNED_FILES or entry.name in OWNED_DIRS or entry.name.startswith("instance_")
        if not owned:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return out


def phantom_settings_from_args(args: argparse.Namespace):
    """Return the PhantomSettings of the demo options (whole brain at 1 mm by default)."""
    from LesionXAILib.phantom import PhantomSettings

    fov = tuple(args.fov) if args.fov else (SMALL_FOV_MM if args.small else None)
    lesions = args.lesions if args.lesions is not None else (SMALL_LESIONS if args.small else None)
    return PhantomSettings(n_lesions=lesions, spacing=tuple(args.spacing), fov_mm=fov, mimics=getattr(args, "mimics", True), lookalikes=getattr(args, "lookalikes", True))


def analysis_settings_from_args(args: argparse.Namespace):
    """Return the AnalysisSettings of the demo: SmoothGrad + Grad-CAM++ and the context probe."""
    from LesionXAILib.analysis import AnalysisSettings
    from LesionXAILib.explain import ExplainSettings
    from LesionXAILib.probes import ContextSettings, default_radii

    return AnalysisSettings(
        explain=ExplainSettings(methods=("smoothgrad", "gradcampp"), aggregation=args.aggregation, samples=args.samples),
        context=ContextSettings(radii_mm=default_radii(args.max_radius, args.radius_step)),
    )


def _write_marker(out: Path, doc: dict) -> None:
    from LesionXAILib.atomic_write import write_json

    write_json(out / MARKER, doc, allow_nan=True)


def run_demo(args: argparse.Namespace, cancel=None) -> DemoResult:
    """Run the demo described by ``args`` (see :func:`add_arguments`); return the result with stage times."""
    from tqdm import tqdm

    from LesionXAILib.phantom import generate_phantom
    from LesionXAILib.progress import as_reporter
    from LesionXAILib.report import ReportSettings, build_report
    from LesionXAILib.segmentation import segment
    from LesionXAILib.subject_pipeline import analyse_and_write_subject

    quiet = bool(getattr(args, "quiet", False))
    phantom_settings = phantom_settings_from_args(args)
    analysis = analysis_settings_from_args(args)
    report_settings = ReportSettings(export=args.export)
    out = prepare_output(Path(args.out))
    stages = _Stages()
    marker = {"status": "running", "seed": args.seed, "phantom": _describe_phantom(phantom_settings),
              "settings": {"phantom": phantom_settings.to_dict(), "analysis": analysis.to_dict()}}  # fmt: skip
    _write_marker(out, marker)

    stages.start("load model")
    from LesionXAILib.study.models import is_shipped_name, resolve_model

    if args.model and is_shipped_name(args.model):
        # --model NAME picks a shipped demo model: unet (default), unet-anchor, dynunet, swinunetr
        args.model = str(resolve_model(args.model))
    model = load_model_from_args(args)

    stages.start("phantom")
    callback, close = progress_for(args, "phantom")
    try:
        phantom = generate_phantom(args.seed, phantom_settings, progress=as_reporter(callback, cancel))
    finally:
        close()
    paths = phantom.write(out / "phantom")
    pair = phantom.pair()
    # the run records where its inputs are, so 'lesionxai report --run' finds them again
    pair.flair_path, pair.t1_path = paths["flair"].resolve(), paths["t1"].resolve()

    stages.start("segment")
    callback, close = progress_for(args, "segment")
    try:
        result = segment(pair, model, segmentation_settings_from_args(args), phantom.lesions, progress=callback, cancel=cancel)
    finally:
        close()
    result.write(out)

    n = len(result.instances.ids)
    bar = tqdm(total=n, desc="explain + probe", unit="lesion", disable=quiet, leave=False, dynamic_ncols=True)

    def step(fraction: float, message: str) -> None:
        done = min(int(fraction * n + 1e-9), n)
        if done > bar.n:
            bar.update(done - bar.n)
        if message:
            bar.set_postfix_str(message, refresh=False)

    try:
        analyses = analyse_and_write_subject(model, result, out, analysis, step, cancel, on_stage=stages.start)
    finally:
        bar.close()

    stages.start("report")
    marker["status"] = "reporting"
    _write_marker(out, marker)
    callback, close = progress_for(args, "report")
    try:
        report = build_report(out, settings=report_settings, progress=callback, cancel=cancel)
    finally:
        close()
    stages.stop()

    summary = _summary(result, analyses, report, phantom, model)
    marker.update(status="complete", stages={k: round(v, 2) for k, v in stages.wall.items()},
                  cpu_seconds={k: round(v, 2) for k, v in stages.cpu.items()}, summary=summary)  # fmt: skip
    _write_marker(out, marker)
    return DemoResult(out, report.html, dict(stages.wall), summary, dict(stages.cpu))


def _describe_phantom(settings) -> str:
    fov = "whole brain" if settings.fov_mm is None else f"{' x '.join(f'{v:g}' for v in settings.fov_mm)} mm field of view"
    return f"{fov}, {' x '.join(f'{v:g}' for v in settings.spacing)} mm voxels"


def _median(values: list[float]) -> Optional[float]:
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _summary(result, analyses, report, phantom, model) -> dict:
    m = result.instances.metrics
    context = [a.curve.context_needed_mm for a in analyses if a.curve is not None and a.curve.context_needed_mm is not None]
    finite = [c for c in context if math.isfinite(c)]
    predicted = sum(1 for r in result.instances.instances if r.source == "prediction")
    return {
        "grid": list(result.geometry.size),
        "spacing": list(result.geometry.spacing),
        "true_lesions": m.gt_lesions if m else None,
        "lesions_found": predicted,
        "tp": m.tp if m else None,
        "fp": m.fp if m else None,
        "fn": m.fn if m else None,
        "lesion_f1": m.f1 if m else None,
        "dice": m.dice if m else None,
        "explained": sum(1 for a in analyses if a.explanation is not None),
        "probed": len(context),
        "median_context_needed_mm": _median(finite),
        "beyond_max_radius": len(context) - len(finite),
        "model": model.config.name,
    }


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:04.1f} s"


def format_summary(res: DemoResult, args: argparse.Namespace) -> str:
    """Return the one-screen summary printed at the end of the demo."""
    s = res.summary
    grid = " x ".join(str(v) for v in s["grid"])
    lines = [
        "",
        f"LesionXAI demo: phantom seed {args.seed} ({grid} voxels), model '{s['model']}'",
        f"  true lesions     {s['true_lesions']}",
        f"  lesions found    {s['lesions_found']}   TP {s['tp']}  FP {s['fp']}  FN {s['fn']} (missed)",
        f"  lesion F1        {s['lesion_f1']:.3f}    voxel Dice {s['dice']:.3f}",
        f"  explained        {s['explained']} lesions (SmoothGrad, {args.aggregation} aggregation, {args.samples} samples + Grad-CAM++)",
    ]
    median = s["median_context_needed_mm"]
    ctx = "n/a" if median is None else f"median {median:g} mm"
    if s["beyond_max_radius"]:
        ctx += f" ({s['beyond_max_radius']} need more than {args.max_radius:g} mm)"
    lines.append(f"  context needed   {ctx} over {s['probed']} lesions detected with full context")
    lines.append(f"  report           {res.report}")
    if args.export != "none":
        lines.append(f"  figures          {res.report.parent / 'figures'}{os.sep}")
    stages = ", ".join(f"{k} {_duration(v)}" for k, v in res.stages.items())
    lines.append(f"  total time       {_duration(res.total_seconds)} ({stages})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its summary; return the exit code."""
    try:
        res = run_demo(args)
    except (KeyboardInterrupt, Cancelled):
        print(f"lesionxai: demo interrupted; partial outputs stay in '{args.out}' (rerun to start over)", file=sys.stderr)
        raise
    print(format_summary(res, args))
    return 0
