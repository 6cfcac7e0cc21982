"""Explainer benchmark: the naive full-volume per-lesion SmoothGrad loop vs LesionXAI, in one run.

Same network, subject (a phantom with >= 10 lesions), noise draws and settings for both:
  sum aggregation  naive = for each lesion, n full-volume forward+backward passes (K x n passes);
                   LesionXAI = explain instances on grid-aligned lesion crops, noise samples batched.
  max aggregation  naive = the anchor's loop: per sample one full-volume forward pass, then one
                   full-volume backward pass per lesion voxel; LesionXAI = one-hot VJPs, each on its
                   voxel's grid-aligned window (explain/windows.py), copies batched where it pays.
                   Run on a reduced case (the smallest lesion, --max-samples samples).
Each method runs in its own subprocess (peak RSS per method). The naive loop uses LesionXAI's
positional noise, so Pearson r between the maps measures the crop alone; its noise generation is
left out of its timing (in the baseline's favour), while LesionXAI's time is the whole explain call
(noise, crops, statistics, full-grid maps). Wall and process CPU time are both reported: on a
machine shared with other work the CPU-time ratio is the steadier one. Both workers first run one
untimed pass (convolution kernels are built on first use of a shape); LesionXAI's cold first call is
printed too.

    .venv/bin/python benchmarks/bench_explain.py [--config ies-unet] [--samples 16] [--naive-lesions 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_subject import add_subject_arguments, load_network, make_subject, pearson  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(work: Path):
    from LesionXAILib.geometry import Geometry

    data = np.load(work / "subject.npz")
    meta = json.loads((work / "subject.json").read_text())
    geometry = Geometry(**{k: tuple(v) for k, v in meta["geometry"].items()})
    labels = data["labels"]
    masks = [labels == i for i in range(1, int(labels.max()) + 1)]
    return data["image"], geometry, masks, meta


def _worker_ours(work: Path, args, aggregation: str) -> dict:
    import torch

    from LesionXAILib.explain import ExplainSettings, InstanceTarget
    from LesionXAILib.explain.api import iter_explanations

    image, geometry, masks, meta = _load(work)
    model, _ = load_network(args.model, args.config)
    ids = meta["sum_ids"] if aggregation == "sum" else meta["max_ids"]
    samples = args.samples if aggregation == "sum" else args.max_samples
    settings = ExplainSettings(methods=("smoothgrad",), aggregation=aggregation, samples=samples, seed=args.seed,
                               **({"roi_margin_mm": args.margin_mm} if args.margin_mm is not None else {}))  # fmt: skip
    targets = [InstanceTarget(masks[i - 1], aggregation, i) for i in ids]
    # untimed warm-up on the first lesion (oneDNN builds its kernels on first use of each shape); its time
    # is reported as the cold first call, the timed loop is the per-lesion cost of a session
    cold = time.perf_counter()
    next(iter_explanations(model, image, targets[:1], geometry, settings))
    cold = time.perf_counter() - cold
    start, cpu0 = time.perf_counter(), time.process_time()
    crops, per_lesion, previous = {}, {}, start
    for e in iter_explanations(model, image, targets, geometry, settings):
        now = time.perf_counter()  # the generator works between yields: this is the lesion's whole cost
        per_lesion[str(e.instance_id)], previous = now - previous, now
        sl = tuple(slice(a, b) for a, b in zip(e.box["start_kji"], e.box["stop_kji"]))
        crops[f"{e.instance_id}"] = np.stack([e.maps["smoothgrad_flair"][sl], e.maps["smoothgrad_mprage"][sl]])
        crops[f"{e.instance_id}_box"] = np.array([e.box["start_kji"], e.box["stop_kji"]])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    np.savez(work / f"ours_{aggregation}.npz", **crops)
    windows = {str(t.instance_id): _window_summary(image, t, geometry, settings, model) for t in targets} if aggregation == "max" else None
    return {"seconds": seconds, "lesions": len(ids), "per_lesion": seconds / len(ids), "peak_rss_mb": _peak_rss_mb(),
            "cpu_per_lesion": cpu / len(ids), "cold_first": cold, "windows": windows, "seconds_by_lesion": per_lesion,
            "margin_mm": settings.roi_margin_mm, "threads": torch.get_num_threads()}  # fmt: skip


def _window_summary(image, target, geometry, settings, model) -> str:
    """Return how max aggregation split the lesion's voxels into windows, e.g. '1 x (32, 32, 32): 12 voxels'."""
    from LesionXAILib.explain.region import explain_box, explain_crop

    box = explain_box(target.mask, geometry.spacing_kji, settings.roi_margin_mm, model.size_divisor)
    crop = explain_crop(model, image, [target.mask], box, "max", settings.roi_margin_mm, geometry.spacing_kji)
    parts = [f"{w.shape}: {len(w.voxels)} voxels" for w in crop.windows]
    return f"crop {box.shape}; {len(parts)} window(s): " + ", ".join(parts)


def _worker_naive(work: Path, args, aggregation: str) -> dict:
    import torch

    from LesionXAILib.explain.noise import positional_noise
    from LesionXAILib.explain.smoothgrad import noise_sigma
    from LesionXAILib.roi import full_box

    image, geometry, masks, meta = _load(work)
    model, _ = load_network(args.model, args.config)
    ours = np.load(work / f"ours_{aggregation}.npz")
    ids = meta["naive_ids"] if aggregation == "sum" else meta["max_ids"]
    samples = args.samples if aggregation == "sum" else args.max_samples
    box = full_box(image.shape[1:], model.size_divisor)
    x_full = torch.from_numpy(box.extract(image, 0.0).copy())
    sigma = torch.as_tensor(noise_sigma(image, 0.05), dtype=torch.float32).view(-1, 1, 1, 1)
    # untimed warm-up pass, as for LesionXAILib (first use of each convolution shape)
    xw = x_full[None].clone().requires_grad_(True)
    torch.autograd.grad(model.lesion_logit(model(xw))[0, 0, 0, 0, 0], xw)
    del xw
    compute, cpu, results = 0.0, 0.0, []
    for i in ids:
        lesion_compute = compute
        mask_t = torch.from_numpy(box.extract(masks[i - 1], False).copy())
        voxels = torch.nonzero(mask_t.flatten()).squeeze(1).tolist()
        acc = torch.zeros_like(x_full)
        for s in range(samples):
            noisy = x_full + sigma * torch.from_numpy(positional_noise(args.seed, s, box, 2))
            t0, c0 = time.perf_counter(), time.process_time()
            x = noisy[None].clone().requires_grad_(True)
            z = model.lesion_logit(model(x))[0, 0]
            if aggregation == "sum":
                (g,) = torch.autograd.grad(z[mask_t].sum(), x)
                acc += g[0]
            else:  # the anchor's loop: one backward pass per lesion voxel, keep the largest magnitude
                best = torch.zeros_like(x_full)
                flat = z.flatten()
                for v in voxels:
                    (g,) = torch.autograd.grad(flat[v], x, retain_graph=True)
                    best = torch.where(g[0].abs() > best.abs(), g[0], best)
                acc += best
            del z, x
            compute += time.perf_counter() - t0
            cpu += time.process_time() - c0
        naive = box.insert(acc / samples)  # full grid (2, k, j, i)
        start, stop = ours[f"{i}_box"]
        sl = tuple(slice(a, b) for a, b in zip(start, stop))
        mine = np.zeros_like(naive)
        mine[(slice(None),) + sl] = ours[f"{i}"]
        captured = float(np.abs(naive[(slice(None),) + sl]).sum() / np.abs(naive).sum())
        results.append({"id": i, "voxels": len(voxels), "r": pearson(naive, mine), "r_flair": pearson(naive[0], mine[0]),
                        "captured_mass": captured, "seconds": compute - lesion_compute})  # fmt: skip
    return {"seconds": compute, "lesions": len(ids), "per_lesion": compute / len(ids), "peak_rss_mb": _peak_rss_mb(),
            "cpu_per_lesion": cpu / len(ids), "results": results, "threads": torch.get_num_threads()}  # fmt: skip


def _run(work: Path, role: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", role, "--work", str(work)] + argv,
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"worker {role} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(title: str, ours: dict, naive: dict) -> None:
    rs = [r["r"] for r in naive["results"]]
    ratio = naive["per_lesion"] / ours["per_lesion"]
    print(f"\n== {title}")
    print(f"naive full-volume loop : {naive['per_lesion']:9.2f} s/lesion  ({naive['lesions']} lesions, peak RSS {naive['peak_rss_mb']:.0f} MB)")
    print(f"LesionXAI (ROI {ours['margin_mm']:g} mm) : {ours['per_lesion']:9.3f} s/lesion  ({ours['lesions']} lesions, peak RSS {ours['peak_rss_mb']:.0f} MB)")
    print(f"LesionXAI first call   : {ours['cold_first']:9.3f} s (cold: kernels built for new shapes; untimed above)")
    print(f"speed-up (wall time)   : {ratio:9.1f} x")
    print(f"speed-up (CPU time)    : {naive['cpu_per_lesion'] / ours['cpu_per_lesion']:9.1f} x   "
          f"(CPU s/lesion: naive {naive['cpu_per_lesion']:.2f}, LesionXAI {ours['cpu_per_lesion']:.3f})")
    print(f"Pearson r (both seqs)  : min {min(rs):.4f}, median {float(np.median(rs)):.4f} over {len(rs)} lesions")
    print(f"Pearson r (FLAIR)      : min {min(r['r_flair'] for r in naive['results']):.4f}")
    print(f"captured |attribution| : min {min(r['captured_mass'] for r in naive['results']):.4f}")
    for r in naive["results"]:
        mine = ours["seconds_by_lesion"].get(str(r["id"]))
        timing = f"  naive {r['seconds']:.2f} s / LesionXAI {mine:.3f} s = {r['seconds'] / mine:.1f} x" if mine else ""
        print(f"   lesion {r['id']:3d}: {r['voxels']:5d} voxels  r={r['r']:.4f}  r_flair={r['r_flair']:.4f}  mass={r['captured_mass']:.4f}{timing}")
        if ours.get("windows"):
            print(f"              {ours['windows'][str(r['id'])]}")


def main() -> None:
    """Build the subject once, run the four timed workers, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(ap)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--max-samples", type=int, default=2)
    ap.add_argument("--max-lesions", type=int, default=1, help="max aggregation: time the N smallest lesions (default: the smallest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--margin-mm", type=float, default=None, help="ROI margin (default: ExplainSettings' measured default)")
    ap.add_argument("--naive-lesions", type=int, default=0, help="time the naive sum loop on this many lesions (0: all)")
    ap.add_argument("--skip", choices=("sum", "max"), default=None)
    ap.add_argument("--worker", default=None)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    if args.worker:
        role, aggregation = args.worker.split("-")
        fn = _worker_ours if role == "ours" else _worker_naive
        print(json.dumps(fn(Path(args.work), args, aggregation)))
        return
    import torch

    model, model_desc = load_network(args.model, args.config)
    subject = make_subject(args.phantom_seed, args.lesions, args.fov)
    masks = subject["masks"]
    sizes = [int(m.sum()) for m in masks]
    ids = list(range(1, len(masks) + 1))
    naive_ids = ids if args.naive_lesions <= 0 else ids[:: max(1, len(ids) // args.naive_lesions)][: args.naive_lesions]
    max_ids = sorted(ids, key=lambda i: (sizes[i - 1], i))[: max(1, args.max_lesions)]
    max_id = max_ids[0]
    print(f"network : {model_desc}")
    print(f"subject : {subject['source']}; grid {subject['image'].shape[1:]} (k,j,i); {len(masks)} lesions, sizes {sorted(sizes)} voxels")
    print(f"threads : torch {torch.get_num_threads()}; samples {args.samples} (sum), {args.max_samples} (max, lesion {max_id}: {sizes[max_id - 1]} voxels)")
    passthrough = [a for a in sys.argv[1:]]
    with tempfile.TemporaryDirectory(prefix="bench_explain_") as tmp:
        work = Path(tmp)
        labels = np.zeros(masks[0].shape, np.int32)
        for i, m in enumerate(masks, start=1):
            labels[m] = i
        np.savez(work / "subject.npz", image=subject["image"], labels=labels)
        g = subject["geometry"]
        meta = {"geometry": {"size": g.size, "origin": g.origin, "spacing": g.spacing, "direction": g.direction},
                "sum_ids": ids, "naive_ids": naive_ids, "max_ids": max_ids}  # fmt: skip
        (work / "subject.json").write_text(json.dumps(meta))
        if args.skip != "sum":
            ours = _run(work, "ours-sum", passthrough)
            naive = _run(work, "naive-sum", passthrough)
            _report(f"SmoothGrad, sum aggregation, n = {args.samples}", ours, naive)
        if args.skip != "max":
            ours = _run(work, "ours-max", passthrough)
            naive = _run(work, "naive-max", passthrough)
            which = ", ".join(f"{i} ({sizes[i - 1]} voxels)" for i in max_ids)
            _report(f"SmoothGrad, max aggregation, n = {args.max_samples}, lesion(s) {which}", ours, naive)


if __name__ == "__main__":
    main()
