"""Phantom generation speed and memory: seconds per phantom (whole brain 1 mm, thick slices, small FOV) and peak RSS.

The baseline, measured in the same run, is writing one whole-brain phantom's three NIfTI files
(compressed), so the ratio says how generation compares with the I/O a user pays anyway.

    python benchmarks/bench_phantom.py [--n 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from LesionXAILib.phantom import PhantomSettings, generate_phantom  # noqa: E402
from LesionXAILib.phantom.anatomy import load_anatomy  # noqa: E402


def peak_rss_mb() -> float:
    """Return this process's peak resident memory in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_case(name: str, settings: PhantomSettings, seeds: range) -> float:
    """Return the median seconds per phantom for ``settings`` over ``seeds`` (and print them)."""
    times = []
    shape = None
    for seed in seeds:
        start = time.perf_counter()
        p = generate_phantom(seed, settings)
        times.append(time.perf_counter() - start)
        shape = p.geometry.size
    med = statistics.median(times)
    print(f"{name:<28s} size {str(shape):<16s} median {med:6.2f} s  (min {min(times):.2f}, max {max(times):.2f})")
    return med


def main() -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="phantoms per case (default 5)")
    args = parser.parse_args()
    seeds = range(9000, 9000 + args.n)

    start = time.perf_counter()
    load_anatomy()
    print(f"template load (once per process): {time.perf_counter() - start:.2f} s")

    whole = time_case("whole brain, 1 mm", PhantomSettings(), seeds)
    time_case("whole brain, 1x1x3 mm", PhantomSettings(spacing=(1.0, 1.0, 3.0)), seeds)
    time_case("FOV 96 mm, 1 mm", PhantomSettings(fov_mm=(96.0, 96.0, 96.0)), seeds)

    phantom = generate_phantom(seeds[0])
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        phantom.write(tmp)
        write = time.perf_counter() - start
    print(f"baseline: writing one whole-brain phantom (3 NIfTI + JSON): {write:.2f} s")
    print(f"ratio generation / write (whole brain, 1 mm): {whole / write:.2f}")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
