"""Whole-subject benchmark: segment a whole-brain phantom, then every lesion: SmoothGrad (the anchor's n = 50),
a Grad-CAM variant and the context probe, with the fidelity guard on. Per-stage wall and CPU time vs a 60 s target.

Stages: segmentation (sliding window), margin (the model's calibration, or its auto-calibration on first use;
cached per model), CAM layer activations (one whole-volume pass per subject), per lesion the fidelity checks,
the explainers (SmoothGrad + CAM on the checked crop) and the context probe. torch runs on ``--threads``
threads (default 2, the target machine). Phantom generation and imports are outside the timed total.
The baseline for the ratios, in the same run: the segmentation stage (one whole-volume sliding-window pass).

    .venv/bin/python benchmarks/bench_subject.py [--model M] [--lesions 12] [--samples 50] [--cam gradcam]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET_S = 60.0


class Stages:
    """Wall and process-CPU time per named stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def run(self, name: str, fn, *args, **kw):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn(*args, **kw)
        self.add(name, time.perf_counter() - t0, time.process_time() - c0)
        return out


def main() -> None:
    """Run the subject once and print the per-stage breakdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped demo model)")
    ap.add_argument("--phantom-seed", type=int, default=1)
    ap.add_argument("--lesions", type=int, default=12)
    ap.add_argument("--fov", type=float, nargs=3, default=(160.0, 192.0, 160.0))
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--cam", default="gradcam", help="CAM method (default gradcam)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-lesions", type=int, default=0, help="explain only the first N lesions (0: all)")
    ap.add_argument("--flow", choices=("all", "clicks"), default="all",
                    help="all: every lesion in one explain call (as `lesionxai explain`); clicks: one call per lesion (viewer, Slicer)")
    args = ap.parse_args()
    os.environ.setdefault("LESIONXAI_CACHE_DIR", tempfile.mkdtemp(prefix="bench-subject-cache-"))
    import torch

    torch.set_num_threads(args.threads)
    from LesionXAILib.analysis import SubjectAnalysis
    from LesionXAILib.explain import ExplainSettings
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.probes.context import ContextSettings
    from LesionXAILib.resources import default_model_path
    from LesionXAILib.segmentation import segment

    model = load_model(args.model or default_model_path())
    phantom = generate_phantom(args.phantom_seed, PhantomSettings(n_lesions=args.lesions, fov_mm=tuple(args.fov)))
    pair = phantom.pair()
    stages = Stages()
    load0 = os.getloadavg()
    start = time.perf_counter()
    result = stages.run("segment", segment, pair, model)
    subject = SubjectAnalysis(model, result)
    settings = ExplainSettings(methods=("smoothgrad", args.cam), samples=args.samples)
    settings = stages.run("margin", subject.margin_settings, settings)
    if not settings.full_volume:
        stages.run("cam activations", subject.cam_activations, settings.cam_layer)
    ids = result.instances.ids[: args.max_lesions] if args.max_lesions else result.instances.ids
    context = ContextSettings()
    rows = []
    if args.flow == "all":  # as `lesionxai explain` does: every lesion in one call (first fidelity checks batched)
        from LesionXAILib.explain.api import instance_targets, iter_explanations

        targets = instance_targets(result.instances, ids, settings.aggregation)
        activations = subject.cam_activations(settings.cam_layer) if not settings.full_volume else None
        t0, c0 = time.perf_counter(), time.process_time()
        explanations = list(iter_explanations(model, result.normalized, targets, result.geometry, settings, None, None, activations))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    else:  # as the viewer and Slicer do: one lesion per click
        explanations, wall, cpu = [], 0.0, 0.0
        for i in ids:
            t0, c0 = time.perf_counter(), time.process_time()
            explanations.append(subject.explain(i, settings))
            wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
    checks = sum(e.check_seconds for e in explanations)
    share = checks / max(wall, 1e-9)
    stages.add("fidelity checks", checks, cpu * share)  # CPU split in the wall-time proportion
    stages.add("explainers", wall - checks, cpu * (1 - share))
    for i, e in zip(ids, explanations):
        stages.run("context probe", subject.probe, i, context)
        f = e.fidelity
        rows.append((i, e.voxels, f.get("obtained"), f.get("margin_mm"), f.get("captured"), f.get("pearson_r"), f.get("cam_captured")))
    total = time.perf_counter() - start
    load1 = os.getloadavg()
    print(f"model   : {model.source}; margin {settings.roi_margin_mm} mm ({subject.margin_source}); torch threads {torch.get_num_threads()}")
    print(f"subject : phantom seed {args.phantom_seed}, fov {tuple(args.fov)} mm, grid {result.geometry.shape} (k,j,i); "
          f"{len(result.instances.ids)} lesion instances, {len(ids)} explained + probed; SmoothGrad n = {args.samples}, {args.cam}")  # fmt: skip
    print(f"command : {' '.join([Path(sys.executable).name, 'benchmarks/bench_subject.py'] + sys.argv[1:])}; flow {args.flow}; "
          f"pass network {os.environ.get('LESIONXAI_PASS_NETWORK', '1')}, grouped checks {os.environ.get('LESIONXAI_GROUPED_CHECKS', '1')}")
    print(f"load    : {load0[0]:.1f} before, {load1[0]:.1f} after ({os.cpu_count()} CPUs; shared machine)")
    print(f"  {'stage':16s} {'wall s':>8s} {'CPU s':>8s} {'share':>6s} {'x segment':>9s}")
    base = stages.wall["segment"]
    for name, secs in stages.wall.items():
        print(f"  {name:16s} {secs:8.1f} {stages.cpu[name]:8.1f} {secs / total:6.1%} {secs / base:9.1f}")
    cpu = sum(stages.cpu.values())
    print(f"  {'total':16s} {total:8.1f} {cpu:8.1f}   target <= {TARGET_S:.0f} s: {'met' if total <= TARGET_S else 'NOT met'}")
    print(f"  fidelity checks / explainers: {stages.wall.get('fidelity checks', 0) / max(stages.wall.get('explainers', 1e-9), 1e-9):.1%}")
    print("  per lesion: id, voxels, fidelity, margin mm, captured (est.), r (est.), CAM captured (est.)")
    for r in rows:
        fmt = ["-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v)) for v in r]
        print("   " + "  ".join(fmt))


if __name__ == "__main__":
    main()
