"""Explainer benchmark: the naive full-volume per-lesion SmoothGrad loop vs LesionXAI, in one run.

Same network, subject (a phantom with >= 10 lesions), noise draws and settings for both:
  sum aggregation  naive = for each lesion, n full-volume forward+backward passes (K x n passes);
                   LesionXAI = explain instances on grid-aligned lesion crops, noise samples batched.
  max aggregation  naive = the anchor's loop: per sample one full-volume forward pass, then one
                   full-volume backward pass per lesion voxel; LesionXAI = one-hot VJPs, each on its
                   voxel's grid-aligned window (explain/windows.py), copies batched where it pays.
                   Run on a reduced case (the smallest lesion(s), --max-samples samples).
The crop margin is the network's own: before timing, the network is calibrated as `lesionxai
calibrate` does (explain/margin_calibration.py: margin -> fidelity against whole-volume maps on a
*different* phantom, --calibration-seed; smallest margin with r >= 0.995 and captured >= 0.98 on
every lesion), untimed and reported. LesionXAI is then timed in up to three variants (--variants):
'guarded' (calibrated model, the per-lesion fidelity guard on: what users get), 'unchecked' (the
same, guard off: the guard's cost is the difference, same run) and 'auto' (the uncalibrated model,
calibrated automatically on the timed subject first; that one-time cost is printed separately); a
'_plain' suffix (e.g. 'guarded_plain') runs the variant with LESIONXAI_PASS_NETWORK=0 and
LESIONXAI_GROUPED_CHECKS=0: on the network as loaded instead of its folded channels-last copy
(explain/pass_network.py) and with one fidelity check per pass (explain/grouping.py).
Per lesion the maps are compared with the naive full-volume maps (Pearson r and captured |attribution|:
*measured*), next to the guard's own figures (captured and r against its wider reference crop:
*estimated*). --margin-mm skips the calibration and times that margin. --bn-stats phantom gives a
randomly initialised network realistic batch-norm statistics (train-mode passes on phantom crops,
explain_subject.set_phantom_bn_stats), whose reach is far longer than with BN defaults. Each worker
runs in its own subprocess (peak RSS per method). The naive loop uses LesionXAI's positional noise,
so Pearson r between the maps measures the crop alone; its noise generation is left out of its
timing (in the baseline's favour), while LesionXAI's time is the whole explain call (fidelity
checks, noise, crops, statistics, full-grid maps). Wall and process CPU time are both reported: on
a machine shared with other work the CPU-time ratio is the steadier one. Both workers first run one
untimed pass (convolution kernels are built on first use of a shape); LesionXAI's cold first call
is printed too.

    .venv/bin/python benchmarks/bench_explain.py [--config ies-unet --bn-stats phantom] [--samples 16] [--naive-lesions 3]
"""

from __future__ import annotations

import argparse
import json
import os
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
    # VmHWM is this process image's own peak; ru_maxrss would also count the parent's pages the worker
    # was forked with (Linux keeps the larger across exec), so every worker showed the parent's size
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load(work: Path):
    from LesionXAILib.geometry import Geometry

    data = np.load(work / "subject.npz")
    meta = json.loads((work / "subject.json").read_text())
    geometry = Geometry(**{k: tuple(v) for k, v in meta["geometry"].items()})
    labels = data["labels"]
    masks = [labels == i for i in range(1, int(labels.max()) + 1)]
    return data["image"], geometry, masks, meta


def _network(args, work: Path):
    """Return (model, description): the benchmark network, with the main process's BN statistics if it set them."""
    import torch

    model, desc = load_network(args.model, args.config)
    state = work / "network_state.pt"
    if state.exists():  # set once in the main process (--bn-stats phantom), identical in every worker
        model.network.load_state_dict(torch.load(state, weights_only=True))
        model.eval()
    return model, desc


def _calibrated(model, work: Path):
    """Return ``model`` with the calibrated config the calibration worker wrote (as a calibrated checkpoint loads)."""
    from LesionXAILib.lesion_model import LesionModel
    from LesionXAILib.model_config import ModelConfig

    path = work / "calibrated_config.json"
    if not path.exists():
        return model
    return LesionModel(model.network, ModelConfig.from_dict(json.loads(path.read_text())), source=model.source).eval()


def _worker_calibrate(work: Path, args, aggregation: str) -> dict:
    """Calibrate the network's margin for ``aggregation`` on another phantom; write the calibrated config."""
    from LesionXAILib.explain.margin_calibration import calibrate_margin, calibrated_config, pick_lesions

    model = _calibrated(_network(args, work)[0], work)  # keeps a margin calibrated before
    subject = make_subject(args.calibration_seed, args.lesions, args.fov)
    masks = subject["masks"]
    limit = args.calibration_max_voxels if aggregation == "max" else None
    picked = pick_lesions(masks, args.calibration_lesions, limit)
    samples = args.samples_calibration if aggregation == "sum" else args.max_samples
    t0 = time.perf_counter()
    cal = calibrate_margin(model, subject["image"], [masks[i] for i in picked], subject["geometry"], aggregation,
                           args.calibration_margins, samples, args.seed)  # fmt: skip
    seconds = time.perf_counter() - t0
    config = calibrated_config(model.config, [cal])
    (work / "calibrated_config.json").write_text(json.dumps(config.to_dict()))
    return {"margin_mm": cal.margin_mm, "curve": cal.curve(), "seconds": seconds, "subject": subject["source"],
            "lesions": [int(masks[i].sum()) for i in picked], "samples": samples,
            "criterion": [cal.min_r, cal.min_captured]}  # fmt: skip


def _worker_ours(work: Path, args, aggregation: str, variant: str = "guarded") -> dict:
    """Time LesionXAI: 'guarded' (calibrated margin, fidelity guard on), 'unchecked' (guard off), 'auto' (uncalibrated: measured on first use)."""
    import os

    import torch

    from LesionXAILib.explain import ExplainSettings, InstanceTarget
    from LesionXAILib.explain.api import iter_explanations

    os.environ["LESIONXAI_CACHE_DIR"] = str(work / f"cache_{aggregation}")  # the auto-calibration starts from nothing
    if variant.endswith("_plain"):  # the same run without this stop's speed-ups: network as loaded, one check per pass
        os.environ["LESIONXAI_PASS_NETWORK"] = "0"
        os.environ["LESIONXAI_GROUPED_CHECKS"] = "0"
        variant = variant[: -len("_plain")]
    image, geometry, masks, meta = _load(work)
    model, _ = _network(args, work)
    if variant != "auto":
        model = _calibrated(model, work)
    ids = meta["sum_ids"] if aggregation == "sum" else meta["max_ids"]
    samples = args.samples if aggregation == "sum" else args.max_samples
    settings = ExplainSettings(methods=("smoothgrad",), aggregation=aggregation, samples=samples, seed=args.seed,
                               roi_margin_mm=args.margin_mm, fidelity_check=variant != "unchecked")  # fmt: skip
    auto = None
    if variant == "auto":  # first use of an uncalibrated model: its margin is measured on this subject's lesions
        from LesionXAILib.explain.fidelity import ensure_margin
        from LesionXAILib.explain.model_state import explaining

        t0 = time.perf_counter()
        with explaining(model):
            margin, _ = ensure_margin(model, image, masks, geometry, aggregation)
        auto = {"seconds": time.perf_counter() - t0, "margin_mm": margin}
    settings = settings.resolved(model)
    targets = [InstanceTarget(masks[i - 1], aggregation, i) for i in ids]
    # untimed warm-up on the first lesion (oneDNN builds its kernels on first use of each shape); its time
    # is reported as the cold first call, the timed loop is the per-lesion cost of a session
    cold = time.perf_counter()
    next(iter_explanations(model, image, targets[:1], geometry, settings))
    cold = time.perf_counter() - cold
    start, cpu0 = time.perf_counter(), time.process_time()
    crops, per_lesion, previous, fidelity = {}, {}, start, {}
    for e in iter_explanations(model, image, targets, geometry, settings):
        now = time.perf_counter()  # the generator works between yields: this is the lesion's whole cost
        per_lesion[str(e.instance_id)], previous = now - previous, now
        sl = tuple(slice(a, b) for a, b in zip(e.box["start_kji"], e.box["stop_kji"]))
        crops[f"{e.instance_id}"] = np.stack([e.maps["smoothgrad_flair"][sl], e.maps["smoothgrad_mprage"][sl]])
        crops[f"{e.instance_id}_box"] = np.array([e.box["start_kji"], e.box["stop_kji"]])
        f = e.fidelity
        fidelity[str(e.instance_id)] = {"obtained": f.get("obtained"), "margin_mm": f.get("margin_mm"), "captured": f.get("captured"),
                                        "pearson_r": f.get("pearson_r"), "reference": f.get("reference"),
                                        "check_seconds": e.check_seconds, "checks": len(f.get("checks", []))}  # fmt: skip
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    np.savez(work / f"ours_{variant}_{aggregation}.npz", **crops)
    windows = {str(t.instance_id): _window_summary(image, t, geometry, settings, model) for t in targets} if aggregation == "max" else None
    return {"seconds": seconds, "lesions": len(ids), "per_lesion": seconds / len(ids), "peak_rss_mb": _peak_rss_mb(),
            "cpu_per_lesion": cpu / len(ids), "cold_first": cold, "windows": windows, "seconds_by_lesion": per_lesion,
            "margin_mm": settings.roi_margin_mm if not settings.full_volume else None, "threads": torch.get_num_threads(),
            "fidelity": fidelity, "check_seconds": sum(v["check_seconds"] for v in fidelity.values()), "auto": auto}  # fmt: skip


def _window_summary(image, target, geometry, settings, model) -> str:
    """Return how max aggregation split the lesion's voxels into windows, e.g. '1 x (32, 32, 32): 12 voxels'."""
    from LesionXAILib.explain.region import explain_box, explain_crop

    if settings.full_volume:
        return "whole volume"
    box = explain_box(target.mask, geometry.spacing_kji, settings.roi_margin_mm, model.size_divisor)
    crop = explain_crop(model, image, [target.mask], box, "max", settings.roi_margin_mm, geometry.spacing_kji)
    parts = [f"{w.shape}: {len(w.voxels)} voxels" for w in crop.windows]
    return f"crop {box.shape}; {len(parts)} window(s): " + ", ".join(parts)


def _worker_naive(work: Path, args, aggregation: str) -> dict:
    import torch

    from LesionXAILib.explain.noise import positional_noise
    from LesionXAILib.explain.smoothgrad import noise_sigma
    from LesionXAILib.crop import full_box

    image, geometry, masks, meta = _load(work)
    model, _ = _network(args, work)
    ids = meta["naive_ids"] if aggregation == "sum" else meta["max_ids"]
    samples = args.samples if aggregation == "sum" else args.max_samples
    box = full_box(image.shape[1:], model.size_divisor)
    x_full = torch.from_numpy(box.extract(image, 0.0).copy())
    sigma = torch.as_tensor(noise_sigma(image, 0.05), dtype=torch.float32).view(-1, 1, 1, 1)
    # untimed warm-up pass, as for LesionXAILib (first use of each convolution shape)
    xw = x_full[None].clone().requires_grad_(True)
    torch.autograd.grad(model.lesion_logit(model(xw))[0, 0, 0, 0, 0], xw)
    del xw
    compute, cpu, results, maps = 0.0, 0.0, [], {}
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
        maps[str(i)] = box.insert(acc / samples)  # full grid (2, k, j, i)
        results.append({"id": i, "voxels": len(voxels), "seconds": compute - lesion_compute})
    np.savez(work / f"naive_{aggregation}.npz", **maps)
    return {"seconds": compute, "lesions": len(ids), "per_lesion": compute / len(ids), "peak_rss_mb": _peak_rss_mb(),
            "cpu_per_lesion": cpu / len(ids), "results": results, "threads": torch.get_num_threads()}  # fmt: skip


def _compare(work: Path, aggregation: str, variant: str, naive: dict) -> list[dict]:
    """Return per lesion Pearson r and captured mass of LesionXAI's maps (``variant``) against the naive ones."""
    ours = np.load(work / f"ours_{variant}_{aggregation}.npz")
    full = np.load(work / f"naive_{aggregation}.npz")
    rows = []
    for r in naive["results"]:
        ref = full[str(r["id"])]
        start, stop = ours[f"{r['id']}_box"]
        sl = (slice(None),) + tuple(slice(a, b) for a, b in zip(start, stop))
        mine = np.zeros_like(ref)
        mine[sl] = ours[str(r["id"])]
        rows.append({**r, "r": pearson(ref, mine), "r_flair": pearson(ref[0], mine[0]),
                     "captured_mass": float(np.abs(ref[sl]).sum() / np.abs(ref).sum())})  # fmt: skip
    return rows


def _run(work: Path, role: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", role, "--work", str(work)] + argv,
                         capture_output=True, text=True)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"worker {role} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(title: str, variants: dict[str, tuple[dict, list[dict]]], naive: dict) -> None:
    """Print naive vs each LesionXAI variant: time per lesion, ratios, r, captured mass (measured and the guard's estimate)."""
    print(f"\n== {title}")
    print(f"naive full-volume loop : {naive['per_lesion']:9.2f} s/lesion  ({naive['lesions']} lesions, peak RSS {naive['peak_rss_mb']:.0f} MB)")
    for name, (ours, rows) in variants.items():
        rs = [r["r"] for r in rows]
        margin = "whole volume" if ours["margin_mm"] is None else f"margin {ours['margin_mm']:g} mm"
        print(f"-- LesionXAI, {name}: {margin}" + (f" (auto-calibrated on this subject in {ours['auto']['seconds']:.1f} s, once per model)" if ours.get("auto") else ""))
        print(f"   time                : {ours['per_lesion']:9.3f} s/lesion  ({ours['lesions']} lesions, peak RSS {ours['peak_rss_mb']:.0f} MB); "
              f"first call {ours['cold_first']:.3f} s (cold, untimed above)")  # fmt: skip
        if ours["check_seconds"]:
            print(f"   fidelity checks     : {ours['check_seconds'] / ours['lesions']:9.3f} s/lesion = "
                  f"{100 * ours['check_seconds'] / max(ours['seconds'] - ours['check_seconds'], 1e-9):.1f} % of the rest of the explanation time")
        print(f"   speed-up (wall)     : {naive['per_lesion'] / ours['per_lesion']:9.1f} x")
        print(f"   speed-up (CPU)      : {naive['cpu_per_lesion'] / ours['cpu_per_lesion']:9.1f} x   "
              f"(CPU s/lesion: naive {naive['cpu_per_lesion']:.2f}, LesionXAI {ours['cpu_per_lesion']:.3f})")
        print(f"   Pearson r (both)    : min {min(rs):.4f}, median {float(np.median(rs)):.4f} over {len(rs)} lesions; "
              f"FLAIR min {min(r['r_flair'] for r in rows):.4f}; captured |attribution| min {min(r['captured_mass'] for r in rows):.4f}")
        for r in rows:
            mine = ours["seconds_by_lesion"].get(str(r["id"]))
            timing = f"  naive {r['seconds']:.2f} s / LesionXAI {mine:.3f} s = {r['seconds'] / mine:.1f} x" if mine else ""
            f = ours["fidelity"].get(str(r["id"]), {})
            guard = ""
            if f.get("captured") is not None and f.get("obtained") != "whole-volume":
                guard = (f"  guard: {f['obtained']} at {f['margin_mm']} mm, est. captured {f['captured']:.4f} r {f['pearson_r']:.4f} "
                         f"vs {f['reference']} ({f['checks']} check(s), {f['check_seconds']:.3f} s)")  # fmt: skip
            elif f.get("obtained"):
                guard = f"  guard: {f['obtained']}"
            print(f"   lesion {r['id']:3d}: {r['voxels']:5d} voxels  r={r['r']:.4f}  r_flair={r['r_flair']:.4f}  mass={r['captured_mass']:.4f}{timing}{guard}")
            if ours.get("windows"):
                print(f"              {ours['windows'][str(r['id'])]}")
    for suffix in ("", "_plain"):
        if f"guarded{suffix}" in variants and f"unchecked{suffix}" in variants:
            g, u = variants[f"guarded{suffix}"][0], variants[f"unchecked{suffix}"][0]
            print(f"-- guard cost{suffix} (same run): guarded {g['per_lesion']:.3f} vs unchecked {u['per_lesion']:.3f} s/lesion wall "
                  f"(+{100 * (g['per_lesion'] / u['per_lesion'] - 1):.1f} %), CPU +{100 * (g['cpu_per_lesion'] / u['cpu_per_lesion'] - 1):.1f} %")
    print(f"-- load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())} (1, 5, 15 min)")


def _report_calibration(aggregation: str, cal: dict) -> None:
    print(f"\n== margin calibration, {aggregation} aggregation (untimed; {cal['seconds']:.0f} s): {cal['subject']}, "
          f"lesions of {cal['lesions']} voxels, SmoothGrad n = {cal['samples']}")  # fmt: skip
    for c in cal["curve"]:
        print(f"   {c['margin_mm']:5g} mm: min r {c['min_r']:.4f}  min captured {c['min_captured']:.4f}  "
              f"inside/ring error {c['max_inside_error']:.4f}/{c['max_ring_error']:.4f}  grid {c['mean_grid_voxels']} voxels")  # fmt: skip
    print(f"   -> calibrated margin {cal['margin_mm']} mm (r >= {cal['criterion'][0]}, captured >= {cal['criterion'][1]} on every lesion)")


def main() -> None:
    """Build the subject once, calibrate the network, run the timed workers, print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(ap)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--max-samples", type=int, default=2)
    ap.add_argument("--max-lesions", type=int, default=1, help="max aggregation: time the N smallest lesions (default: the smallest)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--margin-mm", type=float, default=None, help="time this ROI margin (no calibration)")
    ap.add_argument("--calibration-seed", type=int, default=None, help="phantom the margin is calibrated on (default: --phantom-seed + 1)")
    ap.add_argument("--calibration-lesions", type=int, default=3, help="lesions measured by the calibration (default 3)")
    ap.add_argument("--calibration-max-voxels", type=int, default=40, help="max aggregation: calibrate on lesions up to this size (default 40)")
    ap.add_argument("--calibration-margins", type=float, nargs="+", default=[6.0, 8.0, 10.0, 12.0, 16.0, 24.0, 32.0, 48.0])
    ap.add_argument("--bn-stats", choices=("default", "phantom"), default="default",
                    help="random-init networks: keep BN defaults, or set realistic statistics from phantom crops (explain_subject.set_phantom_bn_stats)")
    ap.add_argument("--variants", default="guarded,unchecked,auto",
                    help="LesionXAI runs to time (guarded, unchecked, auto; a '_plain' suffix: without the pass network and grouped checks)")
    ap.add_argument("--samples-calibration", type=int, default=2, help="SmoothGrad samples of the sum calibration (default 2)")
    ap.add_argument("--naive-lesions", type=int, default=0, help="time the naive sum loop on this many lesions (0: all)")
    ap.add_argument("--skip", choices=("sum", "max"), default=None)
    ap.add_argument("--worker", default=None)
    ap.add_argument("--work", default=None)
    args = ap.parse_args()
    if args.calibration_seed is None:
        args.calibration_seed = args.phantom_seed + 1
    if args.worker:
        role, aggregation = args.worker.split("-")
        if role == "calibrate":
            out = _worker_calibrate(Path(args.work), args, aggregation)
        elif role.startswith("ours"):
            out = _worker_ours(Path(args.work), args, aggregation, role.split("_", 1)[1])
        else:
            out = _worker_naive(Path(args.work), args, aggregation)
        print(json.dumps(out))
        return
    import torch

    model, model_desc = load_network(args.model, args.config)
    bn = None
    if args.bn_stats == "phantom":
        from explain_subject import set_phantom_bn_stats

        bn = set_phantom_bn_stats(model.network)
    subject = make_subject(args.phantom_seed, args.lesions, args.fov)
    masks = subject["masks"]
    sizes = [int(m.sum()) for m in masks]
    ids = list(range(1, len(masks) + 1))
    naive_ids = ids if args.naive_lesions <= 0 else ids[:: max(1, len(ids) // args.naive_lesions)][: args.naive_lesions]
    max_ids = sorted(ids, key=lambda i: (sizes[i - 1], i))[: max(1, args.max_lesions)]
    max_id = max_ids[0]
    print(f"network : {model_desc}" + (f"; {bn}" if bn else ""))
    print(f"subject : {subject['source']}; grid {subject['image'].shape[1:]} (k,j,i); {len(masks)} lesions, sizes {sorted(sizes)} voxels")
    print(f"command : {' '.join([Path(sys.executable).name, 'benchmarks/bench_explain.py'] + sys.argv[1:])}")
    print(f"load    : {' '.join(f'{v:.1f}' for v in os.getloadavg())} (1, 5, 15 min average at the start; 2 cores)")
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
        if bn:
            torch.save(model.network.state_dict(), work / "network_state.pt")
        chosen = [a for a in ("sum", "max") if a != args.skip]
        if args.margin_mm is None:
            for aggregation in chosen:
                _report_calibration(aggregation, _run(work, f"calibrate-{aggregation}", passthrough))
        for aggregation in chosen:
            names = [v for v in args.variants.split(",") if v and not (v == "auto" and args.margin_mm is not None)]
            runs = {name: _run(work, f"ours_{name}-{aggregation}", passthrough) for name in names}
            naive = _run(work, f"naive-{aggregation}", passthrough)
            variants = {name: (ours, _compare(work, aggregation, name, naive)) for name, ours in runs.items()}
            if aggregation == "sum":
                title = f"SmoothGrad, sum aggregation, n = {args.samples}"
            else:
                which = ", ".join(f"{i} ({sizes[i - 1]} voxels)" for i in max_ids)
                title = f"SmoothGrad, max aggregation, n = {args.max_samples}, lesion(s) {which}"
            _report(title, variants, naive)


if __name__ == "__main__":
    main()
