"""Writing explanation results: explanations.json (settings + per-instance statistics) and a per-map CSV."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Optional

from LesionXAILib.cam_methods import CAM_METHODS


def write_explanations(out: Path, rows: list[dict], settings, result, margin_source: Optional[str] = None) -> dict[str, Path]:
    """Write explanations.json (settings + one entry per instance) and explanations.csv (one row per map)."""
    doc = {
        "lesionxai_version": __import__("LesionXAILib").__version__,
        "settings": settings.to_dict(),
        **({"margin_source": margin_source} if margin_source else {}),
        "model": result.model_info,
        "geometry": result.geometry.to_dict(),
        "instances": rows,
    }
    json_path = out / "explanations.json"
    tmp = json_path.with_suffix(".json.partial")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=True))
    os.replace(tmp, json_path)
    csv_path = out / "explanations.csv"
    table = []
    for r in rows:
        shares = r["statistics"].get("flair_share", {})
        for key in r["maps"]:
            method = key if key in CAM_METHODS else key.rsplit("_", 1)[0]
            table.append({"id": r["instance_id"], "status": r["status"], "voxels": r["voxels"], "map": key,
                          "flair_share": shares.get(method, ""), **r["statistics"][key]})  # fmt: skip
    tmp = csv_path.with_suffix(".csv.partial")
    with open(tmp, "w", newline="") as fh:
        if table:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        else:
            fh.write("id,status,voxels,map,flair_share\n")
    os.replace(tmp, csv_path)
    return {"json": json_path, "csv": csv_path}
