"""Counterfactual benchmark: seconds per lesion on the demo phantom with the shipped demo model (target <= 10 s on 2 cores).

Generates the demo phantom (``lesionxai demo``'s seed 4242, whole brain, or ``--small``), segments it with
the shipped demo model, then searches the 'remove' counterfactual of up to ``--lesions`` predicted lesions
(median-sized first) with the default settings. Prints, per lesion: voxels, seconds, iterations, network
evaluations, flipped/confirmed, largest displacement, and the machine's load average before and after
(the machine may be shared: compare runs only under similar load).

    .venv/bin/python benchmarks/bench_counterfactual.py [--lesions 6] [--threads 2] [--small] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    """Run the benchmark and print its table; return 0."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--lesions", type=int, default=6, help="lesions to search (median-sized first)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--small", action="store_true", help="64 mm field of view with 8 lesions instead of the whole brain")
    p.add_argument("--check", choices=("crop", "whole"), default="crop")
    p.add_argument("--step-mm", type=float, default=None, help="override the search step (default: the library's)")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(args.threads)
    from LesionXAILib.counterfactual import CounterfactualSettings, lesion_counterfactual
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import segment

    load_before = os.getloadavg()
    settings = PhantomSettings(n_lesions=8, fov_mm=(64.0, 64.0, 64.0)) if args.small else PhantomSettings()
    phantom = generate_phantom(args.seed, settings)
    model = load_model()
    t = time.perf_counter()
    result = segment(phantom.pair(), model)
    seg_seconds = time.perf_counter() - t
    rows = sorted(result.instances.instances, key=lambda r: r.voxels)
    mid = len(rows) // 2
    order = sorted(rows, key=lambda r: (abs(rows.index(r) - mid), r.id))[: args.lesions]
    print(f"phantom seed {args.seed} {phantom.geometry.shape}, {len(rows)} lesions, segmentation {seg_seconds:.1f} s, "
          f"{args.threads} threads, load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")  # fmt: skip
    print(f"{'id':>4} {'voxels':>7} {'seconds':>8} {'cpu_s':>7} {'iter':>5} {'evals':>6} {'flipped':>8} {'disp_mm':>8} {'vol_change%':>12}")
    out = []
    cf_settings = CounterfactualSettings(check=args.check)
    if args.step_mm is not None:
        cf_settings = cf_settings.replace(step_mm=args.step_mm)
    for row in order:
        cpu = time.process_time()
        cf = lesion_counterfactual(model, result, row.id, "remove", cf_settings)
        cpu = time.process_time() - cpu  # CPU seconds of this process: what the lesion costs when the machine is shared
        s = cf.summary()
        out.append({"id": row.id, "voxels": row.voxels, "seconds": cf.seconds, "cpu_seconds": cpu, "iterations": cf.iterations,
                    "evaluations": cf.evaluations, "passed": cf.passed, "largest_displacement_mm": s["largest_displacement_mm"],
                    "volume_change_percent": s["lesion_volume"]["change_percent"]})  # fmt: skip
        print(f"{row.id:>4} {row.voxels:>7} {cf.seconds:>8.2f} {cpu:>7.2f} {cf.iterations:>5} {cf.evaluations:>6} {str(cf.passed):>8} "
              f"{s['largest_displacement_mm']:>8.2f} {s['lesion_volume']['change_percent']!s:>12}")  # fmt: skip
    secs = [r["seconds"] for r in out]
    cpus = [r["cpu_seconds"] for r in out]
    load_after = os.getloadavg()
    print(f"seconds per lesion: median {statistics.median(secs):.2f}, mean {statistics.mean(secs):.2f}, max {max(secs):.2f} "
          f"(CPU seconds: median {statistics.median(cpus):.2f}, max {max(cpus):.2f}); "
          f"flipped {sum(r['passed'] for r in out)}/{len(out)}; load average after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": out, "load_before": load_before, "load_after": load_after,
                                               "threads": args.threads, "segmentation_seconds": seg_seconds}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
