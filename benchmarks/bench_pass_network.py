"""One gradient pass, network as loaded vs its folded channels-last copy (explain/pass_network.py), in one run.

A pass = forward + backward of ``--batch`` copies of a random ``--side``^3 two-channel crop, the unit
SmoothGrad batches are made of. Prints per configuration the best process-CPU and wall time of
``--repeats`` passes (after one untimed pass: oneDNN builds kernels on first use of a shape), the
ratio, the Pearson r of the two input gradients and their largest difference relative to their largest
magnitude. That largest difference is not rounding-sized on every input: PReLU/ReLU gradients jump where a
pre-activation crosses 0, and any change of summation order (folding, layout, or just the batch size on the
network as loaded: measured 0.2 between batch 1 and batch 8 for one random 48^3 crop on the demo model,
against a float64 reference the batch-8 result was right) moves a few pre-activations across it.

    .venv/bin/python benchmarks/bench_pass_network.py [--config ies-unet] [--side 64] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from explain_subject import load_network  # noqa: E402


def main() -> None:
    """Time the two networks on the same inputs and print the comparison."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="checkpoint (default: the shipped demo model)")
    ap.add_argument("--config", default=None, help="randomly initialised config instead (e.g. ies-unet)")
    ap.add_argument("--side", type=int, nargs="+", default=[48, 64])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    from LesionXAILib.explain.pass_network import channels_last, pass_model

    torch.set_num_threads(args.threads)
    model, desc = load_network(args.model, args.config)
    if args.config is not None:  # realistic BN statistics: folding must be exact for non-trivial ones too
        from explain_subject import set_phantom_bn_stats

        desc += "; " + set_phantom_bn_stats(model.network)
    fast = pass_model(model)

    def grad(net, x):
        x = x.detach().clone().requires_grad_(True)
        z = net.lesion_logit(net(x))
        (g,) = torch.autograd.grad(z.sum(), x)
        return g

    print(f"command : {' '.join([Path(sys.executable).name, 'benchmarks/bench_pass_network.py'] + sys.argv[1:])}")
    print(f"network : {desc}; torch threads {torch.get_num_threads()}; load {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"{'side':>5s} {'batch':>5s} {'as loaded CPU s':>16s} {'copy CPU s':>11s} {'CPU ratio':>9s} {'wall ratio':>10s} {'max rel diff':>12s} {'r':>9s}")
    for side in args.side:
        for batch in args.batch:
            x = torch.randn(batch, model.config.in_channels, side, side, side, generator=torch.Generator().manual_seed(0))
            times = {}
            grads = {}
            for name, net, inp in (("plain", model, x), ("copy", fast, channels_last(x))):
                grads[name] = grad(net, inp)
                best = (float("inf"), float("inf"))
                for _ in range(args.repeats):
                    c0, w0 = time.process_time(), time.perf_counter()
                    grad(net, inp)
                    best = (min(best[0], time.process_time() - c0), min(best[1], time.perf_counter() - w0))
                times[name] = best
            diff = float((grads["plain"] - grads["copy"]).abs().max() / grads["plain"].abs().max())
            r = float(torch.corrcoef(torch.stack([grads["plain"].flatten(), grads["copy"].flatten()]).double())[0, 1])
            (pc, pw), (fc, fw) = times["plain"], times["copy"]
            print(f"{side:5d} {batch:5d} {pc:16.3f} {fc:11.3f} {pc / fc:9.2f} {pw / fw:10.2f} {diff:12.2e} {r:9.6f}", flush=True)
    # Two lesions whose crops do not overlap: their own passes (batch 1 each), one batch of both (what
    # explain/grouping.py does for the fidelity checks), or one pass over the smallest box holding both
    # crops side by side (the "shared backward pass" of a summed target; on the copy).
    side = args.side[0]
    two = torch.randn(2, model.config.in_channels, side, side, side, generator=torch.Generator().manual_seed(1))
    union = torch.randn(1, model.config.in_channels, side, side, 2 * side, generator=torch.Generator().manual_seed(2))
    runs = {"two passes of 1": lambda: [grad(fast, channels_last(two[i : i + 1])) for i in range(2)],
            "one batch of 2": lambda: grad(fast, channels_last(two)),
            f"one pass over {side}x{side}x{2 * side}": lambda: grad(fast, channels_last(union))}  # fmt: skip
    print(f"two lesions' {side}^3 crops, folded channels-last copy, best CPU s of {args.repeats}:")
    for name, fn in runs.items():
        fn()
        best = float("inf")
        for _ in range(args.repeats):
            c0 = time.process_time()
            fn()
            best = min(best, time.process_time() - c0)
        print(f"  {name:28s} {best:8.3f}", flush=True)
    print(f"load at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
