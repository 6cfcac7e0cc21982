"""Writing counterfactuals: one complete ``instance_<id>/`` folder per lesion (or none), and a run summary.

A lesion's folder is written under a temporary name and renamed into place only when all its files
are written, so an interrupted or failed run never leaves a half-written folder under the final name.
Every image carries the FLAIR's origin, spacing and direction.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from LesionXAILib.atomic_write import PARTIAL_TAG, write_image, write_json
from LesionXAILib.counterfactual.problem import ROLE_NAMES, ROLES
from LesionXAILib.counterfactual.result import Counterfactual
from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry
from LesionXAILib.image_io import write_volume

SUMMARY = "counterfactuals.json"
FILES = {
    "counterfactual_flair": "counterfactual_flair.nii.gz",
    "counterfactual_mprage": "counterfactual_mprage.nii.gz",
    "displacement": "displacement.nii.gz",
    "log_jacobian": "log_jacobian.nii.gz",
    "intensity_change": "intensity_change.nii.gz",
    "json": "counterfactual.json",
}
# determinants at or below zero (a folded warp) are written as log of this, so the map stays finite
LOG_FLOOR = 1e-6


def vector_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Return a vector SimpleITK image of a (k, j, i, C) float array on ``geometry``'s grid."""
    arr = np.ascontiguousarray(array, dtype=np.float32)
    if arr.shape[:3] != tuple(geometry.shape):
        raise ValueError(f"array shape {arr.shape[:3]} (k,j,i) does not match grid shape {geometry.shape}")
    return geometry.apply_to(sitk.GetImageFromArray(arr, isVector=True))


def original_raw(result: Any, counterfactual: Counterfactual) -> np.ndarray:
    """Return the (2, k, j, i) raw FLAIR/MPRAGE of the subject with the counterfactual's box pasted in."""
    raw = np.stack([result.pair.flair, result.pair.t1]).astype(np.float32, copy=True)
    raw[(slice(None),) + counterfactual.lattice.slices] = counterfactual.raw
    return raw


def write_counterfactual(
    out_dir: str | os.PathLike,
    counterfactual: Counterfactual,
    result: Any,
    protected: Iterable[Optional[str | os.PathLike]] = (),
) -> Path:
    """Write ``instance_<id>/`` with the counterfactual images, displacement, log-Jacobian, intensity change and JSON; return it."""
    out = Path(out_dir)
    final = out / f"instance_{counterfactual.instance_id}"
    guard = [Path(p) for p in protected if p is not None]
    for p in guard:
        if p.resolve().parent == final.resolve():
            raise InputImageError(f"refusing to replace the folder '{final}': it holds the input '{p}'")
    tmp = out / f"{final.name}{PARTIAL_TAG}{uuid.uuid4().hex[:10]}"
    tmp.mkdir(parents=True)
    try:
        _write_files(tmp, counterfactual, result, guard)
        _swap_in(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_files(folder: Path, cf: Counterfactual, result: Any, guard: Sequence[Path]) -> None:
    g = cf.geometry
    raw = original_raw(result, cf)
    write_volume(raw[0], g, folder / FILES["counterfactual_flair"], guard)
    write_volume(raw[1], g, folder / FILES["counterfactual_mprage"], guard)
    write_image(vector_image(cf.full(cf.displacement_mm()), g), folder / FILES["displacement"])
    write_volume(cf.full(cf.log_jacobian(LOG_FLOOR)), g, folder / FILES["log_jacobian"], guard)
    change = np.moveaxis(cf.intensity, 0, -1)  # (box, 2): FLAIR, MPRAGE in raw units
    write_image(vector_image(cf.full(change), g), folder / FILES["intensity_change"])
    summary = cf.summary()
    summary["files"] = {k: v for k, v in FILES.items() if k != "json"}
    summary["intensity_change_components"] = [ROLE_NAMES[r] for r in ROLES]
    summary["geometry"] = g.to_dict()
    write_json(folder / FILES["json"], summary)


def _swap_in(tmp: Path, final: Path) -> None:
    """Rename the complete folder ``tmp`` to ``final``, replacing an earlier run's folder only after that."""
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}{PARTIAL_TAG}old-{uuid.uuid4().hex[:10]}")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_summary(out_dir: str | os.PathLike, rows: Sequence[dict], settings: dict, extra: Optional[dict] = None) -> Path:
    """Write counterfactuals.json (one row per lesion searched, written or not) and return its path."""
    data = {"settings": settings, **(extra or {}), "lesions": list(rows)}
    return write_json(Path(out_dir) / SUMMARY, data)
