"""Cohort benchmark: a 10-phantom cohort with the demo model, serial vs a local 2-worker Dask cluster.

Phantoms (seeds 8001.., evaluation range) are written once to WORK/phantoms in the `lesionxai phantom`
layout. The same cohort is then run twice from scratch with the same settings: serially in this process
(--workers 0) and on a local Dask cluster (--workers N processes, 1 torch thread each; cluster start-up
included in its wall time). The script checks that both runs wrote identical instances.csv (timing
columns aside), prints wall times and their ratio, and the group statistics of the serial run; the
HTML report is WORK/serial/report.html. Numbers on a machine shared with other jobs are slowed by them.

    .venv/bin/python benchmarks/bench_cohort.py [--work /tmp/lesionxai-bench-cohort] [--subjects 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def settings(args):
    """Return the benchmark's CohortSettings (every part on, counts kept small enough for 2 cores)."""
    from LesionXAILib.analysis import AnalysisSettings
    from LesionXAILib.cohort import CohortSettings
    from LesionXAILib.explain import ExplainSettings
    from LesionXAILib.metrics import MetricSettings
    from LesionXAILib.probes import ContextSettings

    return CohortSettings(
        analysis=AnalysisSettings(
            explain=ExplainSettings(methods=("smoothgrad", "gradcampp"), samples=args.samples),
            context=ContextSettings.up_to(args.max_radius, args.radius_step),
        ),
        metrics=MetricSettings(infidelity_perturbations=args.infidelity_perturbations,
                               sensitivity_samples=args.sensitivity_samples, deletion_steps=args.deletion_steps),  # fmt: skip
        lesion_files=args.lesion_files,
        threads=1,
    )


def make_phantoms(folder: Path, n: int, fov: float, lesions: int) -> None:
    """Write n phantoms (seeds 8001..) unless they are there already."""
    from LesionXAILib.phantom import PhantomSettings, generate_phantom

    for i in range(n):
        out = folder / f"phantom{8001 + i}"
        if (out / "lesions.json").exists():
            continue
        p = generate_phantom(8001 + i, PhantomSettings(n_lesions=lesions, fov_mm=None if fov <= 0 else (fov,) * 3))
        p.write(out)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def timed_run(phantoms: Path, out: Path, cohort_settings, workers: int, correction: str):
    from LesionXAILib.cohort import run_cohort

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_cohort(phantoms, out, cohort_settings, None, workers=workers, correction=correction)
    return time.perf_counter() - start, result


def print_statistics(stats: dict) -> None:
    groups = list(stats["groups"])
    print("\ngroup statistics (serial run): instances " + ", ".join(f"{g} {n}" for g, n in stats["groups"].items()))
    print(f"{'variable':<34}" + "".join(f"{g + ' median':>14}" for g in groups) + f"{'KW adj p':>10}  pairwise adj p")
    for v in stats["variables"]:
        med = "".join(f"{(v['groups'][g]['median'] if v['groups'][g]['n'] else float('nan')):>14.4g}" for g in groups)
        kw = v["kruskal"].get("p_adjusted")
        pairs = ", ".join(f"{p['a']}-{p['b']} {p['p_adjusted']:.3g}" if p.get("p_adjusted") is not None else f"{p['a']}-{p['b']} n/a"
                          for p in v["pairwise"])  # fmt: skip
        print(f"{v['variable']:<34}{med}{(kw if kw is not None else float('nan')):>10.3g}  {pairs}")
    print("context needed: " + "; ".join(f"{g}: {c['finite']} finite, {c['beyond_max_radius']} beyond, "
                                         f"{c['not_detected']} not detected" for g, c in stats["context"].items()))  # fmt: skip
    print("explanation quality (median over all lesions):")
    for m in stats["metrics"]:
        if m["all"]["n"]:
            print(f"  {m['variable']:<44}{m['all']['median']:>10.4f}  (n={m['all']['n']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "lesionxai-bench-cohort"), help="working folder")
    parser.add_argument("--subjects", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fov", type=float, default=96.0, help="phantom field of view in mm (0: whole brain)")
    parser.add_argument("--lesions", type=int, default=6, help="lesions per phantom")
    parser.add_argument("--samples", type=int, default=8, help="SmoothGrad samples")
    parser.add_argument("--max-radius", type=float, default=14.0)
    parser.add_argument("--radius-step", type=float, default=2.0)
    parser.add_argument("--infidelity-perturbations", type=int, default=8)
    parser.add_argument("--sensitivity-samples", type=int, default=2)
    parser.add_argument("--deletion-steps", type=int, default=8)
    parser.add_argument("--lesion-files", action="store_true", help="also write per-lesion maps, curves and shells")
    parser.add_argument("--correction", choices=("holm", "bh"), default="holm")
    parser.add_argument("--skip-serial", action="store_true", help="reuse WORK/serial (only the Dask run is timed)")
    args = parser.parse_args()

    from LesionXAILib.cohort.store import is_timing_column

    work = Path(args.work)
    phantoms = work / "phantoms"
    start = time.perf_counter()
    make_phantoms(phantoms, args.subjects, args.fov, args.lesions)
    print(f"{args.subjects} phantoms in {phantoms} ({time.perf_counter() - start:.1f} s, generated once)", flush=True)
    cfg = settings(args)

    if args.skip_serial:
        serial_seconds, serial = float("nan"), None
    else:
        serial_seconds, serial = timed_run(phantoms, work / "serial", cfg, 0, args.correction)
        print(f"serial:    {serial_seconds:8.1f} s  ({serial.count('finished')} subjects, {len(serial.rows)} instances, "
              f"{serial.count('failed')} failed)", flush=True)  # fmt: skip
    dask_seconds, parallel = timed_run(phantoms, work / f"dask{args.workers}", cfg, args.workers, args.correction)
    print(f"{args.workers} workers: {dask_seconds:8.1f} s  ({parallel.count('finished')} subjects, {len(parallel.rows)} "
          f"instances); speed-up x{serial_seconds / dask_seconds:.2f}", flush=True)  # fmt: skip

    a = read_rows(work / "serial" / "instances.csv")
    b = read_rows(work / f"dask{args.workers}" / "instances.csv")
    columns = [c for c in (a[0] if a else {}) if not is_timing_column(c)]
    same = len(a) == len(b) and all(x[c] == y.get(c) for x, y in zip(a, b) for c in columns)
    print(f"instances.csv identical (non-timing columns, {len(columns)} columns x {len(a)} rows): {same}")
    models = [json.loads((work / name / "cohort.json").read_text())["model"].get("sha256") for name in ("serial", f"dask{args.workers}")]
    print(f"model sha256 {models[0][:16] if models[0] else '?'}" + ("" if models[0] == models[1] else
          f" -- the model file changed between the runs (dask run: {str(models[1])[:16]}); rerun"))  # fmt: skip
    for name in ("serial", f"dask{args.workers}"):
        table = [r for r in read_rows(work / name / "subjects.csv") if r["seconds"]]
        wall = [float(r["seconds"]) for r in table]
        cpu = [float(r["cpu_seconds"]) for r in table]
        if wall:
            print(f"{name}: per subject wall {sum(wall) / len(wall):.1f} s (min {min(wall):.1f}, max {max(wall):.1f}), "
                  f"CPU {sum(cpu) / len(cpu):.1f} s; sum of subject CPU time {sum(cpu):.0f} s")  # fmt: skip
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: this process {me:.0f} MB, largest worker process {kids:.0f} MB")
    if serial is not None:
        print_statistics(serial.statistics)
        print(f"\nreport: {serial.paths['report']}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
