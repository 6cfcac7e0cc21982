"""Does one pass for two lesions pay? Separate crops vs one union crop with the summed target, measured.

For a U-Net in eval mode the gradient of S_a + S_b (two lesions' sum targets) is dS_a/dx + dS_b/dx, and
dS_a/dx is exactly zero beyond lesion a's receptive field. So for two lesions whose crops (margin = the
model's reach) do not overlap, one pass on a crop holding both gives both lesions' gradients, split by
crop. That saves a pass only if the union crop costs less than the two crops; a box holding two disjoint
boxes holds at least their volume, so the saving can only come from per-pass overhead. This script
measures it on every pair of lesions of one phantom whose grid-aligned crops are disjoint: time of the two
separate passes vs the one union pass (noise-free input gradients, each timed as the best of --repeats),
voxels of each, and how far the split gradients differ from the separate ones (Pearson r and the share
of |gradient| inside lesion a's crop that the union pass adds or misses).

    .venv/bin/python benchmarks/bench_shared_pass.py [--model M.pt | --config ies-unet --bn-stats phantom] --margin-mm 32
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explain_subject import add_subject_arguments, load_network, make_subject, pearson, set_phantom_bn_stats  # noqa: E402


def _timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    """Print per pair: separate vs shared seconds and voxels, and the split gradients' agreement."""
    import torch

    from LesionXAILib.crop import align_box, box_around, explain_box
    from LesionXAILib.explain.fidelity import _crop, batch_gradients
    from LesionXAILib.explain.model_state import explaining

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_subject_arguments(ap)
    ap.add_argument("--margin-mm", type=float, required=True, help="crop margin (the model's measured reach)")
    ap.add_argument("--bn-stats", choices=("default", "phantom"), default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-pairs", type=int, default=6)
    args = ap.parse_args()

    model, desc = load_network(args.model, args.config)
    if args.bn_stats == "phantom":
        desc += "; " + set_phantom_bn_stats(model)
    subject = make_subject(args.phantom_seed, args.lesions, args.fov)
    image, masks, spacing = subject["image"], subject["masks"], subject["geometry"].spacing_kji
    d = model.size_divisor
    boxes = [explain_box(m, spacing, args.margin_mm, d) for m in masks]
    print(f"network : {desc}")
    print(f"subject : {subject['source']}; {len(masks)} lesions; margin {args.margin_mm:g} mm; torch threads {torch.get_num_threads()}")
    print(f"load    : {' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    def disjoint(a, b) -> bool:
        return any(x.stop <= y.start or y.stop <= x.start for x, y in zip(a.slices, b.slices))

    def union_of(a, b):
        lo = [min(x.start, y.start) for x, y in zip(a.slices, b.slices)]
        hi = [max(x.stop, y.stop) for x, y in zip(a.slices, b.slices)]
        return align_box(box_around(lo, hi, masks[0].shape), d)

    def excess(i: int, j: int) -> float:
        return float(np.prod(union_of(boxes[i], boxes[j]).shape)) / float(np.prod(boxes[i].shape) + np.prod(boxes[j].shape))

    # the pairs most favourable to sharing first: the smallest union crop relative to the two crops
    pairs = sorted(((i, j) for i, j in itertools.combinations(range(len(masks)), 2) if disjoint(boxes[i], boxes[j])), key=lambda p: excess(*p))
    print(f"pairs   : {len(pairs)} of {len(masks) * (len(masks) - 1) // 2} have disjoint crops; timing the {args.max_pairs} with the smallest union crop")
    rows = []
    with explaining(model):
        for i, j in pairs[: args.max_pairs]:
            a, b = boxes[i], boxes[j]
            union = union_of(a, b)

            def separate():
                ga = batch_gradients(model, *(t[None] for t in _crop(model, image, masks[i], a)), None)[0][0]
                gb = batch_gradients(model, *(t[None] for t in _crop(model, image, masks[j], b)), None)[0][0]
                return ga, gb

            def shared():
                return batch_gradients(model, *(t[None] for t in _crop(model, image, masks[i] | masks[j], union)), None)[0][0]

            shared()  # warm-up: kernels for the union crop's shape are built on first use
            t_sep, (ga, gb) = _timed(separate, args.repeats)
            t_sh, g = _timed(shared, args.repeats)
            agree = []
            for box, own in ((a, ga), (b, gb)):
                sl = (slice(None),) + tuple(slice(x.start - u.start, x.stop - u.start) for x, u in zip(box.slices, union.slices))
                split = g[sl].double()
                mine = own[(slice(None),) + box.inner].double()
                agree.append((pearson(split.numpy(), mine.numpy()), float((split - mine).abs().sum() / mine.abs().sum())))
            vol_sep = int(np.prod(a.shape) + np.prod(b.shape))
            vol_sh = int(np.prod(union.shape))
            rows.append((t_sep, t_sh, vol_sep, vol_sh))
            print(f"   lesions {i + 1:2d}+{j + 1:2d}: separate {t_sep:.3f} s ({vol_sep} voxels)  shared {t_sh:.3f} s ({vol_sh} voxels)  "
                  f"shared/separate time {t_sh / t_sep:.2f}, voxels {vol_sh / vol_sep:.2f}; split vs own r {agree[0][0]:.6f}/{agree[1][0]:.6f}, "
                  f"|difference| share {agree[0][1]:.2e}/{agree[1][1]:.2e}")  # fmt: skip
    if rows:
        t = np.array(rows, dtype=float)
        print(f"-- median shared/separate: time {np.median(t[:, 1] / t[:, 0]):.2f}, voxels {np.median(t[:, 3] / t[:, 2]):.2f} "
              f"(< 1 would mean one pass for two lesions pays)")  # fmt: skip


if __name__ == "__main__":
    main()
