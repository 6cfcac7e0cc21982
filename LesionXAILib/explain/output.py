"""Writing explanation results: explanations.json (settings + per-instance statistics) and a per-map CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from LesionXAILib.atomic_write import write_csv, write_json
from LesionXAILib.run_identity import run_ids


def write_explanations(out: Path, rows: list[dict], settings, result, margin_source: Optional[str] = None) -> dict[str, Path]:
    """Write explanations.json (settings + one entry per instance) and explanations.csv (one row per map)."""
    doc = {
        "lesionxai_version": __import__("LesionXAILib").__version__,
        **run_ids(result.instances.labels),
        "settings": settings.to_dict(),
        **({"margin_source": margin_source} if margin_source else {}),
        "model": result.model_info,
        "geometry": result.geometry.to_dict(),
        "instances": rows,
    }
    json_path = out / "explanations.json"
    write_json(json_path, doc, allow_nan=True)
    csv_path = out / "explanations.csv"
    table = []
    for r in rows:
        shares = r["statistics"].get("flair_share", {})
        for key in r["maps"]:
            method = key if key in ("gradcam", "gradcampp") else key.rsplit("_", 1)[0]
            table.append({"id": r["instance_id"], "status": r["status"], "voxels": r["voxels"], "map": key,
                          "flair_share": shares.get(method, ""), **r["statistics"][key]})  # fmt: skip
    write_csv(csv_path, list(table[0]) if table else ["id", "status", "voxels", "map", "flair_share"], table)
    return {"json": json_path, "csv": csv_path}
