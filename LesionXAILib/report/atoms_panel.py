"""The report's "ML-CSC atoms" section, drawn from ``atoms.json`` / ``atoms.npz`` (written by ``explain --methods atoms``).

Per lesion: a table of the atoms carrying most of its sparse code (layer, sequence, share of code energy) and
a figure: the lesion's FLAIR crop, its reconstruction from its top layer-1 atoms per sequence (axial slice
through the lesion's centre), then each top atom as a small 3D patch shown by three orthogonal slices
through its centre (axial | coronal | sagittal): layer-1 atoms of each sequence and the deepest joint layer's
atoms (their FLAIR and MPRAGE parts). Runs without these files get no section.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from LesionXAILib.report import html as H
from LesionXAILib.report.style import render

JSON_NAME, NPZ_NAME = "atoms.json", "atoms.npz"
SHOWN_ROWS = 3  # table rows per (layer, sequence)


def orthogonal_tile(patch: np.ndarray) -> np.ndarray:
    """Return the central axial, coronal and sagittal slices of a (k, j, i) patch side by side (NaN gaps between)."""
    k, j, i = (s // 2 for s in patch.shape)
    views = [patch[k], patch[:, j], patch[:, :, i]]
    height = max(v.shape[0] for v in views)
    parts = []
    for v in views:
        padded = np.full((height, v.shape[1]), np.nan)
        padded[: v.shape[0]] = v
        parts += [padded, np.full((height, 1), np.nan)]
    return np.concatenate(parts[:-1], axis=1)


def _lesion_figure(arrays: dict[str, np.ndarray], iid: int, modalities: list[str]):
    from LesionXAILib.figures import new_figure

    mask = arrays[f"{iid}_mask"]
    centre = int(np.argwhere(mask)[:, 0].mean().round()) if mask.any() else mask.shape[0] // 2
    deep = sorted(k for k in arrays if k.startswith(f"{iid}_L") and k.endswith("_ids") and not k.startswith(f"{iid}_L1_"))
    rows = [("lesion", None)] + [(f"layer 1 {m}", f"{iid}_L1_{m}") for m in modalities]
    if deep:
        key = deep[-1][: -len("_ids")]
        rows += [(f"{key.split('_')[1]} joint, {m}", (key, n)) for n, m in enumerate(modalities)]
    columns = max(len(modalities) + 1, max((len(arrays.get(f"{iid}_L1_{m}_ids", [])) for m in modalities), default=0))
    fig = new_figure(1.9 * columns, 1.35 * len(rows))
    grid = fig.subplots(len(rows), columns, squeeze=False)
    for ax in grid.ravel():
        ax.set_axis_off()
    flair = arrays[f"{iid}_flair"][centre]
    grid[0, 0].imshow(flair, cmap="gray")
    grid[0, 0].contour(mask[centre].astype(float), levels=[0.5], colors=["cyan"], linewidths=0.8)
    grid[0, 0].set_title("FLAIR", fontsize=7)
    recon = arrays[f"{iid}_recon"]
    limit = float(np.abs(recon).max()) or 1.0
    for n, m in enumerate(modalities):
        ax = grid[0, n + 1]
        ax.imshow(recon[n][centre], cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.contour(mask[centre].astype(float), levels=[0.5], colors=["black"], linewidths=0.6)
        ax.set_title(f"rebuilt {m} (top atoms)", fontsize=7)
    for r, (label, key) in enumerate(rows[1:], start=1):
        if isinstance(key, tuple):
            patches, ids = arrays[key[0]][:, key[1]], arrays[f"{key[0]}_ids"]
        else:
            patches, ids = arrays[key], arrays[f"{key}_ids"]
        for c, (patch, atom) in enumerate(zip(patches, ids)):
            if c >= columns:
                break
            tile = orthogonal_tile(patch)
            lim = float(np.nanmax(np.abs(tile))) or 1.0
            grid[r, c].imshow(tile, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            grid[r, c].set_title(f"{label} #{int(atom)}", fontsize=6)
    fig.tight_layout()
    return fig


def atoms_section(run_dir: Path, dpi: float = 100.0) -> str:
    """Return the HTML section of the run's ML-CSC atoms ('' when the run has no atoms.json/atoms.npz or they are unreadable)."""
    try:
        data = json.loads((Path(run_dir) / JSON_NAME).read_text(encoding="utf-8"))
        with np.load(io.BytesIO((Path(run_dir) / NPZ_NAME).read_bytes())) as npz:
            arrays = {k: npz[k] for k in npz.files}
        rows: list[dict[str, Any]] = list(data.get("rows") or [])
        modalities = [str(m) for m in data.get("modalities") or ["FLAIR", "MPRAGE"]]
    except (OSError, ValueError, KeyError, AttributeError):
        return ""
    if not rows:
        return ""
    body = ['<section id="atoms"><h2>ML-CSC atoms</h2>',
            "<p>The ML-CSC segmenter's features are sparse codes over learned dictionaries. For each lesion: the atoms "
            "carrying the largest share of its code energy (sum of squared code values over the lesion's cells, divided by "
            "that of every atom of the same layer and sequence), the lesion rebuilt from its top layer-1 atoms (red = "
            "brighter than background, blue = darker, normalised intensity), and each top atom as a 3D patch "
            "(axial | coronal | sagittal slices through its centre).</p>"]  # fmt: skip
    for iid in sorted({int(r["instance_id"]) for r in rows}):
        mine = [r for r in rows if int(r["instance_id"]) == iid and int(r["rank"]) <= SHOWN_ROWS]
        cells = [[H.esc(r["layer"]), H.esc(r["modality"]), H.esc(r["atom"]), H.esc(r["rank"]),
                  f"{100 * float(r['share']):.1f} %"] for r in mine]  # fmt: skip
        body.append(f'<section class="atoms-lesion" id="atoms-{iid}"><h3>Lesion {iid}</h3>')
        if f"{iid}_mask" in arrays:
            fig = _lesion_figure(arrays, iid, modalities)
            body.append(H.image(render(fig, dpi), f"lesion {iid}: top ML-CSC atoms and reconstruction", f"atoms-plot-{iid}"))
        body.append(H.table(["layer", "sequence", "atom", "rank", "share of code energy"], cells, f"atoms-table-{iid}"))
        body.append("</section>")
    body.append("</section>")
    return "\n".join(body)
