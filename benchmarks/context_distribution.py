"""Distribution of the context needed over the lesions of several phantoms (demo model by default).

For each phantom seed: generate a whole-brain 1 mm phantom, segment it against its ground truth,
run the context probe (radii 0..15 mm, background fill) on every instance, and tabulate the
context needed per instance status (TP / FP / FN). Prints a table and, with ``--out``, writes one
CSV row per instance.

    .venv/bin/python benchmarks/context_distribution.py [--seeds 1 2 3 4 5] [--model M] [--out rows.csv]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    """Probe every instance of the phantoms and print the distribution of context needed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped demo model)")
    ap.add_argument("--max-radius", type=float, default=15.0)
    ap.add_argument("--fov", type=float, nargs=3, default=None, help="phantom field of view in mm (default whole brain)")
    ap.add_argument("--out", default=None, help="write one CSV row per instance here")
    args = ap.parse_args()

    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.probes import ContextSettings, context_probe_instances
    from LesionXAILib.probes.files import write_csv
    from LesionXAILib.segmentation import SegmentationSettings, segment

    model = load_model(args.model)
    settings = ContextSettings.up_to(args.max_radius)
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        phantom = generate_phantom(seed, PhantomSettings(fov_mm=tuple(args.fov) if args.fov else None))
        result = segment(phantom.pair(), model, SegmentationSettings(), ground_truth=phantom.lesions)
        curves = context_probe_instances(model, result, None, settings)
        for i, curve in curves.items():
            row = result.instances.get(i)
            value = curve.context_needed_mm
            rows.append({
                "seed": seed, "id": i, "instance_status": row.status, "voxels": row.voxels,
                "volume_mm3": round(row.volume_mm3, 2), "context_status": curve.status,
                "context_needed_mm": "" if value is None else ("inf" if math.isinf(value) else value),
                "full_context_detected": int(curve.full_context.detected),
                "r0_mean_probability": round(float(curve.mean_probability[0]), 4),
                "full_mean_probability": round(curve.full_context.mean_probability, 4),
                "seconds": round(curve.seconds, 3),
            })  # fmt: skip
        m = result.instances.metrics
        print(f"seed {seed}: {phantom.flair.shape} voxels, TP {m.tp} FP {m.fp} FN {m.fn}, lesion Dice {m.dice:.3f}, "
              f"{len(curves)} probes, {time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
    if args.out:
        write_csv(args.out, list(rows[0]), rows)
    print(f"\nmodel {model.source}; radii 0..{args.max_radius:g} mm; {len(args.seeds)} phantoms; {len(rows)} instances")
    for status in ("TP", "FP", "FN"):
        group = [r for r in rows if r["instance_status"] == status]
        if not group:
            continue
        counts = Counter(r["context_status"] for r in group)
        finite = sorted(r["context_needed_mm"] for r in group if isinstance(r["context_needed_mm"], float))
        hist = Counter(finite)
        print(f"{status}: {len(group)} instances; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        beyond = sum(1 for r in group if r["context_needed_mm"] == "inf")
        if beyond:
            print(f"  needs more than {args.max_radius:g} mm: {beyond}")
        if finite:
            q = statistics.quantiles(finite, n=4) if len(finite) > 1 else [finite[0]] * 3
            print(f"  context needed (mm): median {statistics.median(finite):g}, quartiles {q[0]:g}-{q[2]:g}, "
                  f"range {finite[0]:g}-{finite[-1]:g}, mean {statistics.mean(finite):.2f}")  # fmt: skip
            print("  histogram: " + " ".join(f"{k:g}mm:{v}" for k, v in sorted(hist.items())))
    times = [r["seconds"] for r in rows]
    if times:
        print(f"probe time per instance: median {statistics.median(times):.2f} s, max {max(times):.2f} s")


if __name__ == "__main__":
    main()
