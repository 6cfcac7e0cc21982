"""Sign of instance-level FLAIR/MPRAGE SmoothGrad inside lesions and in their 1-3 mm ring, per TP/FP/FN.

The anchor study (docs/methods.md#anchor-findings) found FLAIR saliency positive inside a lesion and negative in
its immediate neighbourhood. For each phantom seed: whole-brain 1 mm phantom, segmented by the demo
model (or --model) against its ground truth, every instance explained with sum-aggregated SmoothGrad;
prints, per status and sequence, the share of lesions whose mean inside / ring attribution is > 0 and
the medians. ``--out`` writes one CSV row per instance.

    .venv/bin/python benchmarks/explain_signs.py [--seeds 1 2 3 4 5] [--samples 16] [--out rows.csv]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    """Explain every instance of several phantoms and print the sign table."""
    from LesionXAILib.explain import ExplainSettings, explain_instances
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import generate_phantom
    from LesionXAILib.segmentation import segment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = load_model(args.model)
    settings = ExplainSettings(methods=("smoothgrad",), samples=args.samples, seed=0)
    rows = []
    start = time.perf_counter()
    for seed in args.seeds:
        phantom = generate_phantom(seed)
        result = segment(phantom.pair(), model, ground_truth=phantom.lesions)
        for i, e in explain_instances(model, result, None, settings).items():
            row = {"seed": seed, "id": i, "status": e.status, "voxels": e.voxels}
            for seq in ("flair", "mprage"):
                s = e.statistics[f"smoothgrad_{seq}"]
                row[f"{seq}_inside_mean"] = s["inside_mean"]
                row[f"{seq}_ring_mean"] = s["ring_mean"]
            rows.append(row)
        print(f"seed {seed}: {len(result.instances.ids)} instances ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{'status':6} {'n':>4}  {'sequence':8} {'inside>0':>9} {'median inside':>14} {'ring<0':>7} {'median ring':>12}")
    for status in ("TP", "FP", "FN"):
        group = [r for r in rows if r["status"] == status]
        if not group:
            continue
        for seq in ("flair", "mprage"):
            inside = [r[f"{seq}_inside_mean"] for r in group]
            ring = [r[f"{seq}_ring_mean"] for r in group if r[f"{seq}_ring_mean"] == r[f"{seq}_ring_mean"]]
            print(
                f"{status:6} {len(group):4d}  {seq:8} {sum(v > 0 for v in inside) / len(inside):9.2f} "
                f"{statistics.median(inside):14.4g} {sum(v < 0 for v in ring) / max(len(ring), 1):7.2f} "
                f"{statistics.median(ring) if ring else float('nan'):12.4g}"
            )
    if args.out:
        with open(args.out, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
