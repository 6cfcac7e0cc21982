"""Which Grad-CAM for one lesion? Every CAM variant x layer on one phantom, scored as docs/methods.md#metrics describes.

For each layer and variant (explain/cam_variants.py), every ground-truth lesion of a phantom is
explained (sum target, lesion-centred crop with --margin-mm, whole-volume layer activations) and scored:
  enrichment    share of the positive map within --within-mm of the lesion / that region's share of the
                brain (voxels where any input channel is non-zero); 1 = no localisation
                (and the same within the lesion's crop instead of the brain: concentration where the
                lesion's output can look; a map uniform over the crop scores 1 there)
  r between     Pearson r between the maps of two different lesions (over the brain), every pair;
                near 1 = the map does not depend on which lesion is explained
  deletion / insertion AUC  (metrics/deletion.py, the CAM ranks the voxels within 8 mm of the lesion;
                the random ranking is the control)
  randomisation Spearman rho between the map of the network and that of a fully re-initialised copy
                (metrics/randomisation.py), over the brain voxels where either map is non-zero (the rule's
                value) and over the lesion's crop likewise; near 0 = the map depends on the weights
Medians over lesions (pairs for r) are printed as a table. The rule the default `gradcampp` must pass:
median enrichment >= 3, median r between <= 0.8, randomisation median |rho| <= 0.5.

Networks: the shipped demo model (default), or ``--config ies-unet`` (the anchor's architecture) with
random weights and realistic batch-norm statistics: running means and variances accumulated by
train-mode forward passes over 96^3 patches of other phantoms (``--bn-phantoms``), as a trained
network's are, instead of the default 0 / 1 (which make a random network unrealistically local).

    .venv/bin/python benchmarks/bench_cam_variants.py [--config ies-unet] [--layers model.1 model.1.submodule.2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_subject import add_subject_arguments, load_network, make_subject, pearson  # noqa: E402

RULE = {"enrichment": 3.0, "r_between": 0.8, "randomisation": 0.5}


def realistic_batch_norm(model, seeds, fov_mm, patches: int = 2, patch: int = 96) -> None:
    """Give every batch-norm layer the running statistics of phantom data (cumulative average of train-mode passes)."""
    import torch

    from LesionXAILib.phantom import PhantomSettings, generate_phantom
    from LesionXAILib.segmentation import prepare_input

    norms = [m for m in model.network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over all passes
    rng = np.random.default_rng(0)
    model.train()
    with torch.no_grad():
        for seed in seeds:
            image = prepare_input(generate_phantom(seed, PhantomSettings(fov_mm=tuple(fov_mm))).pair())
            brain = np.argwhere(image[0] != 0)
            for _ in range(patches):
                c = brain[rng.integers(len(brain))]
                lo = [int(np.clip(v - patch // 2, 0, s - patch)) for v, s in zip(c, image.shape[1:])]
                x = image[(slice(None),) + tuple(slice(a, a + patch) for a in lo)]
                model(torch.from_numpy(np.ascontiguousarray(x))[None].float())
    for m in norms:
        m.momentum = 0.1
    model.eval()


def enrichment(cam: np.ndarray, near: np.ndarray, brain: np.ndarray) -> float:
    """Return (share of the positive map within ``near``) / (share of the brain within ``near``)."""
    pos = np.where(brain, np.maximum(cam, 0.0), 0.0)
    total = pos.sum()
    if total <= 0:
        return float("nan")
    return float(pos[near].sum() / total) / float(near.sum() / brain.sum())


def crop_region(box: dict, brain: np.ndarray) -> np.ndarray:
    """Return the brain voxels inside an explanation's crop (its ``box`` record)."""
    region = np.zeros_like(brain)
    region[tuple(slice(a, b) for a, b in zip(box["start_kji"], box["stop_kji"]))] = True
    return region & brain


def support_spearman(a: np.ndarray, b: np.ndarray, region: np.ndarray) -> float:
    """Return Spearman's rho of two maps over ``region`` where either is non-zero (shared zeros are no agreement)."""
    from LesionXAILib.metrics.randomisation import spearman

    x, y = a[region], b[region]
    keep = (x != 0) | (y != 0)
    return spearman(x[keep], y[keep])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_subject_arguments(ap)
    ap.add_argument("--layers", nargs="+", default=None, help="CAM layers (default: model.1, model.1.submodule.2 and its first sub-layer)")
    ap.add_argument("--variants", nargs="+", default=None, help="CAM methods (default: every variant)")
    ap.add_argument("--margin-mm", type=float, default=None, help="crop margin (default: 12 mm demo, 24 mm ies-unet)")
    ap.add_argument("--within-mm", type=float, default=5.0, help="enrichment distance from the lesion (default 5 mm)")
    ap.add_argument("--deletion-steps", type=int, default=16)
    ap.add_argument("--max-lesions", type=int, default=10, help="explain at most this many lesions (largest first)")
    ap.add_argument("--bn-phantoms", type=int, nargs="+", default=[101, 102], help="phantom seeds for the batch-norm statistics")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the per-lesion values here")
    args = ap.parse_args()

    import torch

    from LesionXAILib.explain.api import iter_explanations
    from LesionXAILib.explain.cam import resolve_layer
    from LesionXAILib.explain.cam_variants import CAM_METHODS, variant_of
    from LesionXAILib.explain.settings import ExplainSettings
    from LesionXAILib.explain.targets import InstanceTarget
    from LesionXAILib.metrics.evaluate import evaluate_explanation
    from LesionXAILib.metrics.randomisation import randomised_model
    from LesionXAILib.metrics.settings import MetricSettings
    from LesionXAILib.probes.structuring import dilate_mm

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, desc = load_network(args.model, args.config)
    model.network.float()
    if args.config is not None:
        realistic_batch_norm(model, args.bn_phantoms, args.fov)
        desc += f", batch-norm statistics from phantoms {args.bn_phantoms}"
    subject = make_subject(args.phantom_seed, args.lesions, args.fov)
    image, geometry = subject["image"], subject["geometry"]
    masks = sorted(subject["masks"], key=lambda m: -int(m.sum()))[: args.max_lesions]
    targets = [InstanceTarget(m, "sum", i + 1, "TP") for i, m in enumerate(masks)]
    brain = np.any(image != 0, axis=0)
    near = [dilate_mm(m, args.within_mm, geometry.spacing_kji) & brain for m in masks]
    variants = args.variants or [m for m in CAM_METHODS if m != "gradcampp"]
    margin = args.margin_mm if args.margin_mm is not None else (24.0 if args.config else 12.0)
    if args.layers:
        layers = args.layers
    else:
        up = resolve_layer(model, "model.1.submodule.2")[1]
        first = next(n for n, _ in up.named_children())
        layers = ["model.1", "model.1.submodule.2", f"model.1.submodule.2.{first}"]
    random_model = randomised_model(model, 0)
    metric_settings = MetricSettings(metrics=("deletion_insertion",), deletion_steps=args.deletion_steps)
    print(f"network: {desc}\nsubject: {subject['source']}, {len(masks)} lesions of {[int(m.sum()) for m in masks]} voxels")
    print(f"crop margin {margin:g} mm, enrichment within {args.within_mm:g} mm, deletion steps {args.deletion_steps}")

    rows = []
    for layer in layers:
        settings = ExplainSettings(methods=tuple(variants), cam_layer=layer, roi_margin_mm=margin, samples=1)
        t = time.perf_counter()
        expl = list(iter_explanations(model, image, targets, geometry, settings))
        rand = list(iter_explanations(random_model, image, targets, geometry, settings))
        dels = [evaluate_explanation(model, image, e, tg, geometry, metric_settings).values for e, tg in zip(expl, targets)]
        for v in variants:
            maps = [e.maps[v] for e in expl]
            enrich = [enrichment(m, n, brain) for m, n in zip(maps, near)]
            # the same within the lesion's crop: how concentrated the map is where the lesion's output can look
            crops = [crop_region(e.box, brain) for e in expl]
            enrich_crop = [enrichment(m, n & c, c) for m, n, c in zip(maps, near, crops)]
            between = [pearson(a[brain], b[brain]) for a, b in itertools.combinations(maps, 2)]
            rho = [support_spearman(a, r.maps[v], brain) for a, r in zip(maps, rand)]
            rho_crop = [support_spearman(a, r.maps[v], crop_region(e.box, brain)) for a, r, e in zip(maps, rand, expl)]
            row = {
                "layer": layer, "variant": v,
                "enrichment": enrich, "enrichment_crop": enrich_crop, "r_between": between, "randomisation": rho, "randomisation_crop": rho_crop,
                "deletion_auc": [d[f"{v}_deletion_auc"] for d in dels],
                "insertion_auc": [d[f"{v}_insertion_auc"] for d in dels],
                "random_deletion_auc": [d["random_deletion_auc"] for d in dels],
                "random_insertion_auc": [d["random_insertion_auc"] for d in dels],
            }  # fmt: skip
            rows.append(row)
        print(f"  layer {layer}: {time.perf_counter() - t:.0f} s", flush=True)

    def med(values) -> float:
        vals = [x for x in values if x is not None and np.isfinite(x)]
        return float(np.median(vals)) if vals else float("nan")

    print("\n| layer | variant | enrichment (median, min-max) | enrichment in crop | r between lesions (median, max) | deletion AUC | insertion AUC |"
          " randomisation rho brain (median) | rho crop | passes |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        e, rb, rho = med(row["enrichment"]), med(row["r_between"]), med(row["randomisation"])
        ok = e >= RULE["enrichment"] and rb <= RULE["r_between"] and abs(rho) <= RULE["randomisation"]
        finite = [x for x in row["enrichment"] if np.isfinite(x)]
        print(f"| `{row['layer']}` | `{row['variant']}` | {e:.2f} ({min(finite, default=float('nan')):.2f}-{max(finite, default=float('nan')):.2f}) | {med(row['enrichment_crop']):.2f} "
              f"| {rb:.2f} ({max(row['r_between'], default=float('nan')):.2f}) | {med(row['deletion_auc']):.2f} "
              f"| {med(row['insertion_auc']):.2f} | {rho:.2f} | {med(row['randomisation_crop']):.2f} | {'yes' if ok else 'no'} |")  # fmt: skip
    d0 = med([x for r in rows[:1] for x in r["random_deletion_auc"]])
    i0 = med([x for r in rows[:1] for x in r["random_insertion_auc"]])
    print(f"\nrandom ranking: deletion AUC {d0:.2f}, insertion AUC {i0:.2f}; `gradcampp` = `{variant_of('gradcampp')}`")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"network": desc, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
