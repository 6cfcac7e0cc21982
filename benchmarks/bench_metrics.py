"""Explanation-metric cost per lesion on the demo model: network passes and seconds, per metric and method.

One phantom is segmented with the demo model; up to --lesions instances (TP first, smallest first) are
explained (the baseline: the explanation's own seconds per lesion, measured in the same run) and every
metric is computed with the settings below. Passes are counted by hooks on the model (forward = images
through the network, backward = vector-Jacobian products). Printed per metric and method: passes and
seconds per lesion, and seconds relative to the explanation of the same lesion; then the metric values
(median over lesions) and the peak RSS. Numbers on a shared machine are slowed by other jobs.

    .venv/bin/python benchmarks/bench_metrics.py [--lesions 4] [--threads 1] [--fov 96] [--samples 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the demo model)")
    parser.add_argument("--config", default=None)
    parser.add_argument("--seed", type=int, default=7, help="phantom seed (< 10000: evaluation seeds)")
    parser.add_argument("--fov", type=float, default=96.0, help="phantom field of view in mm (0: whole brain)")
    parser.add_argument("--lesions", type=int, default=4, help="lesions measured (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a cohort worker)")
    parser.add_argument("--methods", default="gradient,smoothgrad,gradcampp")
    parser.add_argument("--samples", type=int, default=16, help="SmoothGrad samples (default 16)")
    parser.add_argument("--infidelity-perturbations", type=int, default=16)
    parser.add_argument("--sensitivity-samples", type=int, default=8)
    parser.add_argument("--deletion-steps", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    import torch

    from LesionXAILib.explain import ExplainSettings, explain_instance
    from LesionXAILib.explain.targets import instance_target
    from LesionXAILib.metrics import MetricSettings, evaluate_explanation, randomised_model
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import SegmentationSettings, segment

    torch.set_num_threads(args.threads)
    model = load_model(args.model, args.config)
    fov = None if args.fov <= 0 else (args.fov,) * 3
    phantom = generate_phantom(args.seed, PhantomSettings(n_lesions=10, fov_mm=fov))
    start = time.perf_counter()
    result = segment(phantom.pair(), model, SegmentationSettings(), ground_truth=phantom.lesions)
    seg_seconds = time.perf_counter() - start
    rows = sorted(result.instances.instances, key=lambda r: (r.status != "TP", r.voxels))[: args.lesions]
    print(f"phantom seed {args.seed}: grid {result.geometry.shape} (k,j,i), segmentation {seg_seconds:.1f} s, "
          f"{len(result.instances.instances)} instances; measuring {len(rows)}: "
          + ", ".join(f"{r.id} {r.status} {r.voxels} vox" for r in rows) + f"; torch threads {torch.get_num_threads()}")  # fmt: skip
    explain = ExplainSettings(methods=tuple(args.methods.split(",")), samples=args.samples)
    metrics = MetricSettings(infidelity_perturbations=args.infidelity_perturbations,
                             sensitivity_samples=args.sensitivity_samples, deletion_steps=args.deletion_steps)  # fmt: skip
    start = time.perf_counter()
    random_model = randomised_model(model, metrics.randomisation_seed)
    random_seconds = time.perf_counter() - start

    per: dict[tuple[str, str], list[dict]] = {}
    values: dict[str, list[float]] = {}
    explain_seconds = []
    for row in rows:
        target = instance_target(result.instances, row.id, explain.aggregation)
        t0 = time.perf_counter()
        e = explain_instance(model, result.normalized, target, result.geometry, explain)
        explain_seconds.append(time.perf_counter() - t0)
        m = evaluate_explanation(model, result.normalized, e, target, result.geometry, metrics, random_model)
        for metric, methods in m.method_costs.items():
            for method, cost in methods.items():
                per.setdefault((metric, method), []).append(cost.to_dict())
        for k, v in m.values.items():
            if v is not None and np.isfinite(v):
                values.setdefault(k, []).append(float(v))
        print(f"  lesion {row.id}: explain {explain_seconds[-1]:.2f} s, metrics "
              + ", ".join(f"{k} {c.seconds:.2f} s" for k, c in m.costs.items()), flush=True)  # fmt: skip

    base = float(np.mean(explain_seconds))
    print(f"\nexplanation ({args.methods}, SmoothGrad n={args.samples}): {base:.2f} s per lesion (the baseline)")
    print(f"randomised copy of the network (once per process): {random_seconds:.2f} s")
    print(f"{'metric':<22}{'method':<14}{'forward/lesion':>15}{'backward/lesion':>16}{'s/lesion':>10}{'x explain':>10}")
    table = []
    for (metric, method), costs in per.items():
        fwd = np.mean([c["forward_passes"] for c in costs])
        bwd = np.mean([c["backward_passes"] for c in costs])
        sec = np.mean([c["seconds"] for c in costs])
        table.append({"metric": metric, "method": method, "forward": fwd, "backward": bwd, "seconds": sec, "ratio": sec / base})
        print(f"{metric:<22}{method:<14}{fwd:>15.1f}{bwd:>16.1f}{sec:>10.2f}{sec / base:>10.2f}")
    total = sum(t["seconds"] for t in table)
    print(f"{'all metrics':<36}{'':>15}{'':>16}{total:>10.2f}{total / base:>10.2f}")
    print("\nmetric values (median over lesions):")
    for k in sorted(values):
        print(f"  {k:<48}{np.median(values[k]):>10.4f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"explain_seconds": base, "segmentation_seconds": seg_seconds, "costs": table,
                                               "values": {k: float(np.median(v)) for k, v in values.items()},
                                               "peak_rss_mb": peak, "args": vars(args)}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
