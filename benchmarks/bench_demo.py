"""Demo benchmark: ``lesionxai demo`` wall time by stage, CPU time by stage, peak RSS, vs the 5-minute target.

Each repetition runs the demo in a fresh subprocess (peak RSS is per run; the command's own start-up and
imports are included in "process wall"). torch is limited to ``--threads`` threads (default 2, the target
machine). Baseline for the ratios, measured in the same run: the segmentation stage alone (one sliding-
window pass over the same phantom), i.e. what a plain segmentation of this subject costs.
On a machine shared with other jobs the wall times grow; the CPU times (all threads of the process)
are the steadier measure of the work done, and load averages before/after are printed.

    .venv/bin/python benchmarks/bench_demo.py [--repeats 1] [--threads 2] [-- extra demo options, e.g. --small]
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

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 300.0


def _worker(out: str, threads: int, extra: list[str]) -> dict:
    start = time.perf_counter()
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(threads)
    from LesionXAILib.cli.commands.demo import run_demo
    from LesionXAILib.cli.main import build_parser

    args = build_parser().parse_args(["-q", "demo", "--out", out, *extra])
    imported = time.perf_counter() - start
    res = run_demo(args)
    return {
        "stages": res.stages,
        "cpu": res.cpu_stages,
        "imports": imported,
        "summary": res.summary,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    """Run the demo ``--repeats`` times in subprocesses and print the breakdown."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("extra", nargs=argparse.REMAINDER, help="options passed to lesionxai demo (after --)")
    args = ap.parse_args()
    extra = [a for a in args.extra if a != "--"]
    if args.worker:
        print(json.dumps(_worker(args.worker, args.threads, extra)))
        return
    runs = []
    for n in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="lesionxai-bench-demo-") as tmp:
            load0 = os.getloadavg()
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--worker", str(Path(tmp) / "demo"), "--threads", str(args.threads),
                                   "--", *extra], capture_output=True, text=True, check=False)  # fmt: skip
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"demo run {n + 1} failed:\n{proc.stderr[-3000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run.update(process_wall=wall, load_before=load0, load_after=os.getloadavg())
            runs.append(run)
    for n, run in enumerate(runs, start=1):
        s = run["summary"]
        total = sum(run["stages"].values())
        base = run["stages"]["segment"]
        print(f"run {n}: demo {' '.join(extra) or '(defaults: whole brain, 1 mm)'}; grid {s['grid']}; torch threads {run['threads']}; "
              f"load average before {run['load_before'][0]:.1f}, after {run['load_after'][0]:.1f} ({os.cpu_count()} CPUs)")  # fmt: skip
        print(f"  lesions found {s['lesions_found']} (TP {s['tp']}, FP {s['fp']}, FN {s['fn']}), explained {s['explained']}, "
              f"probed {s['probed']}")  # fmt: skip
        print(f"  {'stage':16s} {'wall s':>8s} {'CPU s':>8s} {'share':>6s} {'x segment':>9s}")
        print(f"  {'imports':16s} {run['imports']:8.1f} {'':>8s}")
        for name, secs in run["stages"].items():
            print(f"  {name:16s} {secs:8.1f} {run['cpu'].get(name, 0.0):8.1f} {secs / total:6.1%} {secs / base:9.1f}")
        cpu = sum(run["cpu"].values())
        print(f"  {'all stages':16s} {total:8.1f} {cpu:8.1f}")
        print(f"  process wall {run['process_wall']:.1f} s (target <= {TARGET_S:.0f} s: {'met' if run['process_wall'] <= TARGET_S else 'NOT met'}); "
              f"ratio demo/segmentation {total / base:.1f}; peak RSS {run['peak_rss_mb'] / 1024:.2f} GB")  # fmt: skip
        print(f"  CPU time {cpu:.0f} s: on an unshared {args.threads}-core machine the stages' wall time would lie between "
              f"{cpu / args.threads:.0f} s (every thread busy) and {cpu:.0f} s (one thread at a time)")  # fmt: skip

if __name__ == "__main__":
    main()
