"""Context-probe benchmark: one lesion, 16 radii (0..15 mm), LesionXAI (lesion-centred crop, radii
batched) vs the naive way (whole-volume sliding-window re-run per radius), in the same invocation.

Each method runs in a fresh subprocess (peak RSS per method, model and input loading included) with
2 torch threads. Input: a whole-brain 1 mm phantom (``--seed``, generated once by the parent),
the instance is its ground-truth lesion of median size, the
model is the shipped demo model (or ``--model``; ``--random-model`` uses a randomly initialised
network of LesionXAI's default config: the weights do not change the cost). Prints wall time per
method, their ratio and peak RSS.

    .venv/bin/python benchmarks/bench_context_probe.py [--repeats 3] [--seed 1] [--fov 96 96 96]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _prepare(args: argparse.Namespace, path: Path) -> None:
    """Generate the phantom once, pick the lesion and save (normalised input, mask, geometry) to ``path``."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from LesionXAILib.instances import label_components
    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import prepare_input

    phantom = generate_phantom(args.seed, PhantomSettings(fov_mm=tuple(args.fov) if args.fov else None))
    labels, _ = label_components(phantom.lesions, 26)
    sizes = np.bincount(labels.ravel())[1:]
    lesion_id = int(np.argsort(sizes, kind="stable")[len(sizes) // 2]) + 1  # the median-sized ground-truth lesion
    g = phantom.geometry
    np.savez(path, normalized=prepare_input(phantom.pair()), mask=labels == lesion_id, size=g.size, origin=g.origin,
             spacing=g.spacing, direction=g.direction)  # fmt: skip


def _setup(args: argparse.Namespace):
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from LesionXAILib.geometry import Geometry

    if args.random_model:
        from LesionXAILib.lesion_model import LesionModel, build_network
        from LesionXAILib.model_config import ModelConfig

        torch.manual_seed(0)
        cfg = ModelConfig()
        model = LesionModel(build_network(cfg), cfg, source="random default config").eval()
    else:
        from LesionXAILib.model_loading import load_model

        model = load_model(args.model)
    data = np.load(args.data)
    geometry = Geometry(*(tuple(data[k].tolist()) for k in ("size", "origin", "spacing", "direction")))
    return model, data["normalized"], data["mask"], geometry


def _worker(args: argparse.Namespace) -> dict:
    import numpy as np

    model, normalized, mask, geometry = _setup(args)
    radii = tuple(float(r) for r in range(16))
    start, cpu_start = time.perf_counter(), time.process_time()
    if args.worker == "lesionxai":
        from LesionXAILib.probes import ContextSettings, context_probe

        curve = context_probe(model, normalized, mask, geometry, ContextSettings(radii_mm=radii))
        detected = [bool(d) for d in curve.detected]
        extra = {"crop_kji": list(curve.box.shape), "context_needed_mm": curve.context_needed_mm}
    else:
        from LesionXAILib.inference import predict_probability
        from LesionXAILib.probes.detection import score_prediction
        from LesionXAILib.probes.structuring import distance_from_mask_mm, within_radius

        distance = distance_from_mask_mm(mask, geometry.spacing_kji)
        detected = []
        for r in radii:
            kept = within_radius(distance, r)
            prob = predict_probability(model, np.where(kept[None], normalized, 0.0).astype(np.float32))
            detected.append(score_prediction(prob, mask, model.config.threshold).detected)
        extra = {}
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    import torch

    return {
        "method": args.worker, "seconds": seconds, "cpu_seconds": cpu, "detected": detected, "shape_kji": list(mask.shape),
        "lesion_voxels": int(mask.sum()), "threads": torch.get_num_threads(), "model": model.source,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra,
    }  # fmt: skip


def main() -> None:
    """Run both methods alternately in subprocesses and print a comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1, help="phantom seed")
    ap.add_argument("--fov", type=float, nargs=3, default=None, help="phantom field of view in mm (default whole brain)")
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped demo model)")
    ap.add_argument("--random-model", action="store_true", help="randomly initialised default-config network")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--naive-repeats", type=int, default=1, help="repeats of the (slow) naive method")
    ap.add_argument("--worker", choices=("prepare", "lesionxai", "naive"))
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "prepare":
        _prepare(args, Path(args.data))
        return
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    import tempfile

    tmp = tempfile.TemporaryDirectory()
    data = Path(tmp.name) / "subject.npz"
    # in a subprocess too: Linux carries a parent's peak RSS into the children it forks
    prepare = ["--worker", "prepare", "--data", str(data), "--seed", str(args.seed)]
    if args.fov:
        prepare += ["--fov", *map(str, args.fov)]
    subprocess.run([sys.executable, __file__, *prepare], check=True)
    common = ["--data", str(data), "--threads", str(args.threads)]
    if args.model:
        common += ["--model", args.model]
    if args.random_model:
        common += ["--random-model"]
    runs: dict[str, list[dict]] = {"naive": [], "lesionxai": []}
    for rep in range(max(args.repeats, args.naive_repeats)):
        for method in ("naive", "lesionxai"):
            if method == "naive" and rep >= args.naive_repeats or method == "lesionxai" and rep >= args.repeats:
                continue
            out = subprocess.run([sys.executable, __file__, "--worker", method, *common], capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"{method} worker failed:\n{out.stderr[-3000:]}")
            runs[method].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs["lesionxai"][0]
    print(f"phantom seed {args.seed}, volume {first['shape_kji']} (k,j,i), lesion {first['lesion_voxels']} voxels, "
          f"crop {first['crop_kji']}, 16 radii + full context, model {first['model']}, torch threads {first['threads']}")
    for m in ("naive", "lesionxai"):
        secs = [round(r["seconds"], 3) for r in runs[m]]
        rss = max(r["peak_rss_mb"] for r in runs[m])
        cpu = statistics.median(r["cpu_seconds"] for r in runs[m])
        print(f"  {m:10s} median {statistics.median(secs):8.3f} s wall, {cpu:8.3f} s CPU  runs {secs}  peak RSS {rss:7.0f} MB")
    naive = statistics.median(r["seconds"] for r in runs["naive"])
    ours = statistics.median(r["seconds"] for r in runs["lesionxai"])
    agree = runs["naive"][0]["detected"] == first["detected"]
    print(f"speed-up naive/lesionxai = {naive / ours:.1f}x; lesionxai {ours:.2f} s per lesion (target <= 2 s); "
          f"detection per radius identical: {agree}; context needed {first['context_needed_mm']} mm")


if __name__ == "__main__":
    main()
