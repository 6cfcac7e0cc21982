"""Writing context-probe results: per-instance curve files and shells, and the per-subject summary."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

from LesionXAILib.probes.files import write_csv, write_json
from LesionXAILib.run_identity import run_ids

SUMMARY_COLUMNS = [
    "id", "instance_status", "voxels", "volume_mm3", "context_status", "context_needed_mm",
    "context_needed_beyond_max_radius", "full_context_detected", "full_context_mean_probability",
    "full_context_dice", "r0_mean_probability", "seconds",
]  # fmt: skip


def write_instance_outputs(curve, out_dir: Path, geometry, protected) -> dict[str, Path]:
    """Write one instance's curve (CSV, JSON, PNG) and shells volume into ``out_dir``; return the paths."""
    from LesionXAILib.image_io import write_volume

    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        "csv": curve.write_csv(out_dir / "context_curve.csv"),
        "json": curve.write_json(out_dir / "context_curve.json"),
        "png": curve.plot(out_dir / "context_curve.png"),
        "shells": write_volume(curve.shells(geometry), geometry, out_dir / "context_shells.nii.gz", protected),
    }


def summary_row(curve, instance) -> dict:
    """Return the summary CSV row of one probed instance."""
    d = curve.to_dict()
    return {
        "id": instance.id,
        "instance_status": instance.status,
        "voxels": instance.voxels,
        "volume_mm3": round(instance.volume_mm3, 3),
        "context_status": curve.status,
        "context_needed_mm": "" if d["context_needed_mm"] is None else d["context_needed_mm"],
        "context_needed_beyond_max_radius": int(d["context_needed_beyond_max_radius"]),
        "full_context_detected": int(curve.full_context.detected),
        "full_context_mean_probability": round(curve.full_context.mean_probability, 6),
        "full_context_dice": round(curve.full_context.dice, 6),
        "r0_mean_probability": round(float(curve.mean_probability[0]), 6),
        "seconds": round(curve.seconds, 3),
    }


def distribution(curves) -> dict:
    """Return counts per status and the finite context-needed values (sorted) with their median."""
    finite = sorted(c.context_needed_mm for c in curves if c.context_needed_mm is not None and math.isfinite(c.context_needed_mm))
    statuses = {}
    for c in curves:
        statuses[c.status] = statuses.get(c.status, 0) + 1
    beyond = sum(1 for c in curves if c.context_needed_mm is not None and math.isinf(c.context_needed_mm))
    median = None
    if finite:
        mid = len(finite) // 2
        median = finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
    return {"statuses": statuses, "beyond_max_radius": beyond, "context_needed_mm": finite, "median_context_needed_mm": median}


def write_probe_summary(out: Path, curves: Mapping[int, "ContextCurve"], instances, settings, threshold: float) -> dict:  # noqa: F821
    """Write context_probe.csv and context_probe.json for ``curves`` (by instance id); return the distribution."""
    dist = distribution(list(curves.values()))
    rows = [summary_row(curve, instances.get(i)) for i, curve in curves.items()]
    write_csv(out / "context_probe.csv", SUMMARY_COLUMNS, rows)
    write_json(
        out / "context_probe.json",
        {
            **run_ids(instances.labels),
            "settings": settings.to_dict(),
            "threshold": threshold,
            "min_size_voxels": instances.min_size_voxels,
            "distribution": dist,
            "instances": [{**curve.to_dict(), "instance_status": instances.get(i).status} for i, curve in curves.items()],
        },
    )
    return dist
