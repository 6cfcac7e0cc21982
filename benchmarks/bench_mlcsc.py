"""ML-CSC atom explanations vs the U-Net demo model's SmoothGrad on held-out phantoms, on LesionXAI's own metrics.

Each model segments the same held-out phantoms (seeds < 10000, never trained on); up to --lesions true-positive
lesions per phantom and model (smallest first) are explained, the ML-CSC model by ``atoms`` (its lesion rebuilt
from its top layer-1 atoms), the U-Net by SmoothGrad, and scored by LesionXAI's metrics: deletion and insertion
AUC (of the model's lesion target as the highest-ranked voxels are removed / restored; the random-order control
of the same lesion beside it), the randomisation check (Spearman rank correlation between the map and the map
of a re-initialised copy of the network; near 0 = the map depends on the learned weights) and activation
precision (share of the map's top 1 % that lies inside the lesion). Printed: the median over lesions per model,
method, metric and sequence, plus seconds per explanation. Lesions differ between models (each explains what
it found), so compare medians, not lesions. Numbers on a shared machine are slowed by other jobs.

    nice -n 15 .venv/bin/python benchmarks/bench_mlcsc.py [--seeds 9001,9002] [--fov 96] [--lesions 3] [--samples 16]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MLCSC_MODEL = ROOT / "Resources" / "models" / "lesionxai-demo-mlcsc.pt"
METRICS = ("deletion_insertion", "randomisation", "activation_precision")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="9001,9002", help="held-out phantom seeds (< 10000)")
    parser.add_argument("--fov", type=float, default=96.0, help="phantom field of view in mm (0: whole brain)")
    parser.add_argument("--lesions", type=int, default=3, help="TP lesions per phantom and model (default 3)")
    parser.add_argument("--samples", type=int, default=16, help="SmoothGrad samples (default 16)")
    parser.add_argument("--deletion-steps", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--mlcsc", default=str(MLCSC_MODEL), help="ML-CSC checkpoint (default: the shipped demo)")
    parser.add_argument("--unet", default=None, help="U-Net checkpoint (default: the shipped demo U-Net)")
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    args = parser.parse_args()

    import torch

    from LesionXAILib.cli.commands.train import parse_seeds
    from LesionXAILib.explain import ExplainSettings, explain_instance
    from LesionXAILib.explain.targets import instance_target
    from LesionXAILib.metrics import MetricSettings, evaluate_explanation, randomised_model
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import SegmentationSettings, segment

    torch.set_num_threads(args.threads)
    fov = None if args.fov <= 0 else (args.fov,) * 3
    seeds = parse_seeds(args.seeds)
    metrics = MetricSettings(metrics=METRICS, deletion_steps=args.deletion_steps)
    runs = [("ML-CSC", load_model(args.mlcsc), "atoms"), ("U-Net", load_model(args.unet), "smoothgrad")]
    values: dict[tuple[str, str], dict[str, list[float]]] = {}
    seconds: dict[tuple[str, str], list[float]] = {}
    for name, model, method in runs:
        random_model = randomised_model(model, metrics.randomisation_seed)
        explain = ExplainSettings(methods=(method,), samples=args.samples)
        for seed in seeds:
            phantom = generate_phantom(seed, PhantomSettings(fov_mm=fov))
            result = segment(phantom.pair(), model, SegmentationSettings(), ground_truth=phantom.lesions)
            rows = sorted((r for r in result.instances.instances if r.status == "TP"), key=lambda r: r.voxels)[: args.lesions]
            for row in rows:
                target = instance_target(result.instances, row.id, explain.aggregation)
                t0 = time.perf_counter()
                e = explain_instance(model, result.normalized, target, result.geometry, explain)
                seconds.setdefault((name, method), []).append(time.perf_counter() - t0)
                m = evaluate_explanation(model, result.normalized, e, target, result.geometry, metrics, random_model)
                for k, v in m.values.items():
                    if v is not None and np.isfinite(v):
                        values.setdefault((name, method), {}).setdefault(k, []).append(float(v))
                print(f"  {name} seed {seed} lesion {row.id} ({row.voxels} vox): explain {seconds[(name, method)][-1]:.2f} s", flush=True)

    print(f"\nheld-out phantoms {list(seeds)} (fov {args.fov:g} mm), up to {args.lesions} TP lesions each; torch threads {args.threads}")
    print(f"{'model':<8}{'method':<12}{'metric':<52}{'median':>9}{'n':>4}")
    table = []
    for (name, method), per in values.items():
        for key in sorted(per):
            med = float(np.median(per[key]))
            table.append({"model": name, "method": method, "metric": key, "median": med, "n": len(per[key])})
            print(f"{name:<8}{method:<12}{key:<52}{med:>9.4f}{len(per[key]):>4}")
    for (name, method), secs in seconds.items():
        print(f"{name:<8}{method:<12}{'seconds per explanation':<52}{float(np.median(secs)):>9.3f}{len(secs):>4}")
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, "seconds": {f"{a}/{b}": s for (a, b), s in seconds.items()},
                                               "args": vars(args)}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
