"""Writing explanation results: explanations.json (settings + per-instance statistics) and a per-map CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from LesionXAILib.atomic_write import write_csv, write_json
from LesionXAILib.run_identity import run_ids
from LesionXAILib.vocabulary import parse_map_key


FIDELITY_COLUMNS = ("fidelity", "margin_mm", "captured", "cam_captured", "pearson_r", "fidelity_passes", "fidelity_flag")


def fidelity_columns(fidelity: dict) -> dict:
    """Return the flat fidelity figures of one explanation (empty strings where not measured)."""

    def value(key: str):
        v = fidelity.get(key)
        return "" if v is None else (round(v, 6) if isinstance(v, float) else v)

    return {
        "fidelity": value("obtained"),
        "margin_mm": value("margin_mm"),
        "captured": value("captured"),
        "cam_captured": value("cam_captured"),
        "pearson_r": value("pearson_r"),
        "fidelity_passes": value("passes"),
        "fidelity_flag": value("flag"),
    }


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
        fid = fidelity_columns(r.get("fidelity") or {})
        for key in r["maps"]:
            parsed = parse_map_key(key, shares)  # per-sequence maps are <method>_<sequence>
            cam, method = parsed.sequence is None, parsed.method
            figures = {**fid, "captured": fid["cam_captured"] if cam else fid["captured"]}
            figures.pop("cam_captured")
            table.append({"id": r["instance_id"], "status": r["status"], "voxels": r["voxels"], "map": key,
                          "flair_share": shares.get(method, ""), **figures, **r["statistics"][key]})  # fmt: skip
    empty_header = ["id", "status", "voxels", "map", "flair_share"] + [f for f in FIDELITY_COLUMNS if f != "cam_captured"]
    write_csv(csv_path, list(table[0]) if table else empty_header, table)
    return {"json": json_path, "csv": csv_path}
