"""Reading a run directory (``segment`` / ``explain`` / ``probe`` / ``demo`` outputs) for the report.

Only ``instances.json`` and ``instances.nii.gz`` are required; every other part (explanations, context
probe, input images, single maps) may be missing, and each missing part is recorded as a note that the
report shows instead of failing. Volumes are read lazily, one at a time, so a whole-brain run with many
lesions never holds more than a few full volumes in memory.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from LesionXAILib.cam_methods import CAM_METHODS
from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry
from LesionXAILib.run_identity import RUN_ID, SEGMENTATION_ID
from LesionXAILib.vocabulary import STATUSES, finite_or_none, parse_map_key

# preference order when several methods of a kind were computed
GRADIENT_PREFERENCE = ("smoothgrad", "gradient", "integrated_gradients", "smoothgrad_squared", "smoothgrad_abs")
CAM_PREFERENCE = CAM_METHODS[1:2] + CAM_METHODS[:1] + CAM_METHODS[2:]  # gradcampp, gradcam, then the other variants
STATUS_ORDER = STATUSES


@dataclass
class LesionData:
    """One lesion instance of the run: its table row plus whatever explanation/probe results exist."""

    row: dict
    maps: dict[str, Path] = field(default_factory=dict)
    explanation: Optional[dict] = None
    curve: Optional[dict] = None
    notes: list[str] = field(default_factory=list)

    @property
    def id(self) -> int:
        """Return the instance id."""
        return int(self.row["id"])

    @property
    def status(self) -> str:
        """Return TP, FP, FN or 'predicted' (no ground truth)."""
        return str(self.row.get("status", "predicted"))

    @property
    def centroid_ras(self) -> np.ndarray:
        """Return the lesion centroid in RAS mm."""
        return np.asarray(self.row["centroid_ras"], dtype=float)

    def statistic(self, key: str, name: str) -> Optional[float]:
        """Return statistic ``name`` of map ``key`` (e.g. 'smoothgrad_flair', 'inside_peak'), None if absent."""
        if self.explanation is None:
            return None
        value = self.explanation.get("statistics", {}).get(key, {}).get(name)
        return finite_or_none(value)

    def flair_share(self, method: str) -> Optional[float]:
        """Return the FLAIR share of ``method``'s total absolute attribution, None if absent."""
        if self.explanation is None:
            return None
        return finite_or_none(self.explanation.get("statistics", {}).get("flair_share", {}).get(method))

    @property
    def context_needed_mm(self) -> Optional[float]:
        """Return the context needed in mm; inf when beyond the largest radius; None when not probed/detected."""
        if self.curve is None:
            return None
        if self.curve.get("context_needed_beyond_max_radius"):
            return math.inf
        return finite_or_none(self.curve.get("context_needed_mm"))


def _read_json(path: Path) -> Any:
    try:
        # explanations.json may hold NaN (allow_nan=True); json.loads accepts it
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputImageError(f"run file '{path}' cannot be read as JSON ({exc})") from None


def geometry_from_dict(d: dict) -> Geometry:
    """Return the Geometry described by ``Geometry.to_dict()`` output."""
    return Geometry(
        size=tuple(int(v) for v in d["size_ijk"]),
        origin=tuple(float(v) for v in d["origin_lps"]),
        spacing=tuple(float(v) for v in d["spacing"]),
        direction=tuple(float(v) for v in d["direction"]),
    )


def read_volume(path: Path, geometry: Geometry, role: str) -> np.ndarray:
    """Return the k,j,i array of a NIfTI in the run, checking it lies on the run's grid."""
    from LesionXAILib.image_io import read_checked

    image = read_checked(path, role)  # declared size and stored data length checked, as for every input
    g = Geometry.from_image(image)
    if not g.almost_equal(geometry):
        raise InputImageError(f"{role} '{path}' is not on the run's grid (size {g.size} vs {geometry.size})")
    return sitk.GetArrayFromImage(image)


@dataclass
class RunData:
    """Everything the report needs from one run directory; volumes load on demand."""

    run_dir: Path
    summary: dict
    geometry: Geometry
    lesions: list[LesionData]
    explanations: Optional[dict] = None
    probe: Optional[dict] = None
    flair_path: Optional[Path] = None
    t1_path: Optional[Path] = None
    notes: list[str] = field(default_factory=list)
    demo: Optional[dict] = None
    _labels: Optional[np.ndarray] = field(default=None, repr=False)
    _flair: Optional[np.ndarray] = field(default=None, repr=False)

    @property
    def metrics(self) -> Optional[dict]:
        """Return the lesion-wise metrics (TP/FP/FN, F1, Dice) when a ground truth was given."""
        return self.summary.get("metrics")

    @property
    def gradient_method(self) -> Optional[str]:
        """Return the per-sequence attribution method shown in the panels (SmoothGrad when present)."""
        return _pick(GRADIENT_PREFERENCE, self._method_names())

    @property
    def cam_method(self) -> Optional[str]:
        """Return the class-activation-map method shown in the panels (Grad-CAM++ when present)."""
        return _pick(CAM_PREFERENCE, self._method_names())

    @property
    def sequences(self) -> list[str]:
        """Return the sequence names of the gradient maps, FLAIR first (e.g. ['flair', 'mprage'])."""
        method = self.gradient_method
        if method is None:
            return []
        found: list[str] = []
        for lesion in self.lesions:
            for key in lesion.maps:
                parsed = parse_map_key(key)
                if parsed.method == method and parsed.sequence is not None and parsed.sequence not in found:
                    found.append(parsed.sequence)
        return sorted(found, key=lambda s: (s != "flair", s))

    def _method_names(self) -> set[str]:
        return {parse_map_key(k).method for lesion in self.lesions for k in lesion.maps}

    def labels(self) -> np.ndarray:
        """Return the instance label map (k,j,i int32; FN lesions carry their own ids)."""
        if self._labels is None:
            self._labels = read_volume(self.run_dir / "instances.nii.gz", self.geometry, "instance label map").astype(np.int32)
        return self._labels

    def flair(self) -> Optional[np.ndarray]:
        """Return the FLAIR (k,j,i float32) or None when it cannot be found."""
        if self._flair is None and self.flair_path is not None:
            self._flair = read_volume(self.flair_path, self.geometry, "FLAIR").astype(np.float32)
        return self._flair

    def load_map(self, lesion: LesionData, key: str) -> Optional[np.ndarray]:
        """Return map ``key`` of ``lesion`` (k,j,i float32) or None if it was not written."""
        path = lesion.maps.get(key)
        if path is None:
            return None
        return read_volume(path, self.geometry, f"map {key} of lesion {lesion.id}").astype(np.float32)


def _pick(preference: tuple[str, ...], available: set[str]) -> Optional[str]:
    for method in preference:
        if method in available:
            return method
    return None


def _resolve_input(recorded: Optional[str], override: Optional[str], run_dir: Path, role: str, notes: Optional[list[str]]) -> Optional[Path]:
    """Return the path of an input image: the override, else the recorded path (as is, then relative to the run).

    A missing image is noted in ``notes`` (None: the report does not display this image, so it is not worth a note).
    """
    if override:
        p = Path(override)
        if not p.exists():
            raise InputImageError(f"{role} '{p}': file not found")
        return p
    option = "--flair" if role == "FLAIR" else "--t1"
    if not recorded:
        if notes is not None:
            notes.append(f"the run does not record the {role} path; pass {option} to show it")
        return None
    for candidate in (Path(recorded), run_dir / recorded):
        if candidate.exists():
            return candidate
    if notes is not None:
        notes.append(f"{role} '{recorded}' recorded by the run was not found; pass {option} to show it")
    return None


def _consistent(row: dict, entry: dict) -> bool:
    """Return True if an explanation/probe entry was computed on this instance (same size and status)."""
    voxels = entry.get("voxels", entry.get("lesion_voxels"))
    if voxels is not None and int(voxels) != int(row["voxels"]):
        return False
    status = entry.get("status") if "voxels" in entry else entry.get("instance_status")
    return status is None or status == row.get("status")


def check_same_run(run: Path, summary: dict, name: str, doc: dict, notes: list[str]) -> None:
    """Refuse (InputImageError) a run file computed on another segmentation than instances.json's; note unverifiable ones."""
    expected, found = summary.get(SEGMENTATION_ID), doc.get(SEGMENTATION_ID)
    if expected is None or found is None:
        notes.append(f"{name} or instances.json records no segmentation id (written by an older LesionXAI): "
                     "not checked to belong to the same run")  # fmt: skip
        return
    if expected != found:
        raise InputImageError(
            f"'{run}' mixes runs: {name} (run {doc.get(RUN_ID, '?')}) was computed on another segmentation than "
            f"instances.json (run {summary.get(RUN_ID, '?')}); rerun that command with this --out, or use a fresh --out"
        )


def load_run(run_dir: str | Path, flair: Optional[str] = None, t1: Optional[str] = None) -> RunData:
    """Return the RunData of ``run_dir``; missing optional parts become notes, a missing segmentation an error."""
    run = Path(run_dir)
    if not run.is_dir():
        raise InputImageError(f"run directory '{run}' does not exist")
    inst_json = run / "instances.json"
    if not inst_json.exists() or not (run / "instances.nii.gz").exists():
        raise InputImageError(
            f"'{run}' is not a LesionXAI run directory: instances.json and instances.nii.gz are missing "
            "(run 'lesionxai segment', 'explain', 'probe' or 'demo' with --out there first)"
        )
    summary = _read_json(inst_json)
    geometry = geometry_from_dict(summary["geometry"])
    notes: list[str] = []
    inputs = summary.get("inputs") or {}
    flair_path = _resolve_input(inputs.get("flair"), flair, run, "FLAIR", notes)
    t1_path = _resolve_input(inputs.get("t1"), t1, run, "MPRAGE", None)  # listed in the summary, not displayed
    explanations = _read_json(run / "explanations.json") if (run / "explanations.json").exists() else None
    probe = _read_json(run / "context_probe.json") if (run / "context_probe.json").exists() else None
    for name, doc in (("explanations.json", explanations), ("context_probe.json", probe)):
        if doc is not None:
            check_same_run(run, summary, name, doc, notes)
    if explanations is None:
        notes.append("no explanations in this run (explanations.json missing): run 'lesionxai explain' for saliency maps")
    if probe is None:
        notes.append("no context probe in this run (context_probe.json missing): run 'lesionxai probe' for context curves")
    by_id_expl = {int(e["instance_id"]): e for e in (explanations or {}).get("instances", []) if e.get("instance_id") is not None}
    by_id_curve = {int(c["instance_id"]): c for c in (probe or {}).get("instances", []) if c.get("instance_id") is not None}
    lesions = []
    for row in summary.get("instances", []):
        lesion = LesionData(row=row)
        folder = run / f"instance_{lesion.id}"
        entry = by_id_expl.get(lesion.id)
        if entry is not None:
            if _consistent(row, entry):
                lesion.explanation = entry
                # an analysis that released its arrays before writing the JSON lists no keys: use the files
                keys = entry.get("maps") or sorted(
                    p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz") if not p.name.startswith("context_")
                )
                for key in keys:
                    if (folder / f"{key}.nii.gz").exists():
                        lesion.maps[key] = folder / f"{key}.nii.gz"
                    else:
                        lesion.notes.append(f"map {key}.nii.gz is missing")
            else:
                lesion.notes.append("explanations.json describes a different segmentation for this id; ignored")
        curve_path = folder / "context_curve.json"
        curve = None
        if lesion.id in by_id_curve:  # a curve file of an instance the summary does not list is another run's
            curve = _read_json(curve_path) if curve_path.exists() else by_id_curve[lesion.id]
        if curve is not None and "points" in curve:
            if _consistent(row, {"lesion_voxels": curve.get("lesion_voxels")}):
                lesion.curve = curve
            else:
                lesion.notes.append("the context curve was computed on a different segmentation for this id; ignored")
        lesions.append(lesion)
    demo = _read_json(run / "demo.json") if (run / "demo.json").exists() else None
    return RunData(run, summary, geometry, lesions, explanations, probe, flair_path, t1_path, notes, demo)
