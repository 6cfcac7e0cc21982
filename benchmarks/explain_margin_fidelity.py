"""Margin -> fidelity curve of lesion-centred ROI explanations against the full-volume reference.

For lesions of a phantom (spread over the size range), SmoothGrad is computed once on the whole
volume and then on grid-aligned crops with growing margins, with identical noise draws (positional
noise), so the difference is the crop alone. Per margin it prints Pearson r (FLAIR and MPRAGE maps
together, whole grid), the captured attribution mass (share of the reference's absolute attribution
inside the crop; for max aggregation inside the union of the per-voxel windows), the relative L2
error, the largest error of the inside and 1-3 mm ring sums (relative to the region's absolute
attribution, per sequence), the grid size the network runs on (the crop; for max the mean window per voxel) and the time. ExplainSettings' default margin
is the smallest one with r >= 0.99 on every lesion measured here.

    .venv/bin/python benchmarks/explain_margin_fidelity.py [--config custom] [--aggregation max --max-voxels 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_subject import add_subject_arguments, load_network, make_subject, pearson  # noqa: E402


def main() -> None:
    """Compute and print the margin -> fidelity table (optionally write it as JSON)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(ap)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aggregation", choices=("sum", "mean", "max"), default="sum")
    ap.add_argument("--margins", type=float, nargs="+", default=[0, 4, 8, 12, 16, 20, 24, 32, 40])
    ap.add_argument("--ref-lesions", type=int, default=6, help="lesions measured, spread over the size range")
    ap.add_argument("--max-voxels", type=int, default=None, help="only lesions up to this size (for max aggregation)")
    ap.add_argument("--json", default=None, help="write the per-lesion results here")
    args = ap.parse_args()

    import torch

    from LesionXAILib.explain import SmoothGrad
    from LesionXAILib.explain.region import explain_box, explain_crop
    from LesionXAILib.explain.statistics import lesion_regions

    model, desc = load_network(args.model, args.config)
    subject = make_subject(args.phantom_seed, args.lesions, args.fov)
    image, geometry, masks = subject["image"], subject["geometry"], subject["masks"]
    order = sorted(range(len(masks)), key=lambda i: int(masks[i].sum()))
    if args.max_voxels:
        order = [i for i in order if masks[i].sum() <= args.max_voxels]
    pick = sorted(set(order[int(round(q))] for q in np.linspace(0, len(order) - 1, min(args.ref_lesions, len(order)))))
    print(f"network : {desc}")
    print(f"subject : {subject['source']}; grid {image.shape[1:]}; lesions measured: "
          f"{[(i + 1, int(masks[i].sum())) for i in pick]} (id, voxels)")  # fmt: skip
    print(f"SmoothGrad n={args.samples}, aggregation {args.aggregation}, torch threads {torch.get_num_threads()}")
    sg = SmoothGrad(model)
    kw = dict(samples=args.samples, seed=args.seed, aggregation=args.aggregation, spacing=geometry)
    rows = []
    for i in pick:
        t0 = time.perf_counter()
        ref = sg.attribute(image, masks[i], full_volume=True, **kw).numpy()
        t_ref = time.perf_counter() - t0
        total = np.abs(ref).sum()
        regions = lesion_regions(masks[i], geometry.spacing_kji)

        def stat_error(roi: np.ndarray, region: np.ndarray) -> float:
            """Largest per-sequence |sum over region (ROI - reference)| / sum over region |reference|."""
            return float(max(abs((roi[c][region] - ref[c][region]).sum()) / np.abs(ref[c][region]).sum() for c in range(ref.shape[0])))

        for m in args.margins:
            t0 = time.perf_counter()
            roi = sg.attribute(image, masks[i], margin_mm=m, **kw).numpy()
            seconds = time.perf_counter() - t0
            box = explain_box(masks[i], geometry.spacing_kji, m, model.size_divisor)
            inside = np.zeros(ref.shape, bool)
            computed = int(np.prod(box.shape))
            if args.aggregation != "max":
                inside[(slice(None),) + box.slices] = True
            else:  # max: each voxel's gradient lives on its own window; mass counts their union
                crop = explain_crop(model, image, [masks[i]], box, "max", m, geometry.spacing_kji)
                covered = np.zeros(box.shape, bool)
                for w in crop.windows:
                    covered[w.slices] = True
                inside[(slice(None),) + box.slices] = covered[box.inner]
                computed = int(round(np.mean([w.size for w in crop.windows for _ in w.voxels])))
            rows.append({
                "lesion": i + 1, "voxels": int(masks[i].sum()), "margin_mm": m, "r": pearson(ref, roi),
                "r_flair": pearson(ref[0], roi[0]), "captured_mass": float(np.abs(ref[inside]).sum() / total),
                "rel_l2": float(np.linalg.norm(roi - ref) / np.linalg.norm(ref)), "crop_voxels": computed,
                "inside_error": stat_error(roi, regions.inside), "ring_error": stat_error(roi, regions.ring),
                "seconds": seconds, "reference_seconds": t_ref,
            })  # fmt: skip
        print(f"  lesion {i + 1}: reference {t_ref:.1f} s", flush=True)
    print(f"\n{'margin mm':>9} {'min r':>8} {'median r':>9} {'min r FLAIR':>11} {'min mass':>9} {'median mass':>11} "
          f"{'max relL2':>9} {'inside err':>10} {'ring err':>8} {'crop voxels':>11} {'s/lesion':>8}")  # fmt: skip
    for m in args.margins:
        sel = [r for r in rows if r["margin_mm"] == m]
        print(f"{m:9g} {min(r['r'] for r in sel):8.4f} {np.median([r['r'] for r in sel]):9.4f} "
              f"{min(r['r_flair'] for r in sel):11.4f} {min(r['captured_mass'] for r in sel):9.4f} "
              f"{np.median([r['captured_mass'] for r in sel]):11.4f} {max(r['rel_l2'] for r in sel):9.4f} "
              f"{max(r['inside_error'] for r in sel):10.4f} {max(r['ring_error'] for r in sel):8.4f} "
              f"{int(np.mean([r['crop_voxels'] for r in sel])):11d} {np.mean([r['seconds'] for r in sel]):8.3f}")  # fmt: skip
    ok = [m for m in args.margins if all(r["r"] >= 0.99 for r in rows if r["margin_mm"] == m)]
    print(f"\nsmallest margin with r >= 0.99 on every lesion: {min(ok) if ok else 'none'} mm")
    if args.json:
        Path(args.json).write_text(json.dumps({"network": desc, "subject": subject["source"], "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
