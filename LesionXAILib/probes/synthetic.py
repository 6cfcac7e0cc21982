"""Synthetic-lesion probe (docs/methods.md#synthetic-probe): insert lesions of known size and contrast into
normal-appearing white matter of a subject and record whether, and how well, the model segments them.

Each trial adds one lesion (``LesionXAILib.phantom.insert_lesion``) to the original subject. The
modified subject is z-scored exactly as the pipeline would (per-channel mean and standard deviation
over non-zero voxels, updated from the voxels the insertion changed rather than recomputed over the
whole volume), and the network runs on a stride-aligned crop around the inserted lesions of one
position (all sizes and contrasts at that position share the crop and are batched). Detection and
Dice follow ``probes.detection`` against the inserted lesion's mask. Every inserted lesion can be
re-created with :meth:`SyntheticResult.subject` and explained like any other instance; with
``SyntheticSettings.context`` the context probe runs on each one.

Over 400 lines on purpose: trial planning, the incremental z-score update and the batched crop run
share one trial record and must change together (an update rule that differs from the pipeline's
would silently change detection); the detection rule and the curve live in probes/detection.py and
probes/curve.py.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.eval_mode import eval_mode
from LesionXAILib.image_io import InputPair
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.context import (
    DEFAULT_RECEPTIVE_MARGIN_MM,
    MAX_BATCH_VOXELS,
    ContextSettings,
    _probabilities,
    context_probe,
)
from LesionXAILib.probes.curve import ContextCurve
from LesionXAILib.probes.detection import ProbePoint, score_prediction
from LesionXAILib.probes.files import write_csv, write_json
from LesionXAILib.probes.white_matter import check_positions, estimate_white_matter, nawm_candidates, pick_positions
from LesionXAILib.progress import CancelToken, ProgressCallback, ProgressReporter, as_reporter
from LesionXAILib.crop import CropBox, align_box, box_around, margin_voxels

DEFAULT_VOLUMES_MM3 = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
DEFAULT_FLAIR_CONTRASTS = (1.4, 1.8)
SHAPES = ("ovoid", "irregular", "sphere")

TRIAL_COLUMNS = [
    "trial", "position", "i", "j", "k", "volume_mm3", "flair_contrast", "t1_contrast", "seed",
    "lesion_voxels", "lesion_volume_mm3", "detected", "mean_probability", "max_probability", "dice",
    "predicted_voxels", "context_status", "context_needed_mm",
]  # fmt: skip
SUMMARY_COLUMNS = [
    "volume_mm3", "flair_contrast", "trials", "detected", "detection_rate", "mean_dice", "mean_probability",
    "median_context_needed_mm",
]  # fmt: skip


def _positive_tuple(values: Sequence[float], name: str) -> tuple[float, ...]:
    try:
        out = tuple(sorted(set(float(v) for v in values)))
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be numbers, got {values!r}") from None
    if not out:
        raise ParameterError(f"{name}: the list is empty")
    if not all(math.isfinite(v) and v > 0 for v in out):
        raise ParameterError(f"{name} must be positive, got {list(values)}")
    return out


@dataclass(frozen=True)
class SyntheticSettings:
    """What to insert where. Volumes in mm³; contrasts are lesion / normal-appearing-WM intensity ratios.

    ``positions_ijk=None`` draws ``n_positions`` random NAWM voxels (seeded), ``min_distance_mm`` away
    from the excluded lesions and from each other. ``threshold=None`` takes the model's.
    """

    volumes_mm3: tuple[float, ...] = DEFAULT_VOLUMES_MM3
    flair_contrasts: tuple[float, ...] = DEFAULT_FLAIR_CONTRASTS
    t1_contrast: float = 0.7
    positions_ijk: Optional[tuple[tuple[int, int, int], ...]] = None
    n_positions: int = 8
    seed: int = 0
    shape: str = "ovoid"
    min_wm: float = 0.9
    min_distance_mm: float = 10.0
    threshold: Optional[float] = None
    min_size_voxels: int = 1
    connectivity: int = 26
    receptive_margin_mm: float = DEFAULT_RECEPTIVE_MARGIN_MM
    batch_size: Optional[int] = None
    context: Optional[ContextSettings] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "volumes_mm3", _positive_tuple(self.volumes_mm3, "lesion volumes (mm3)"))
        object.__setattr__(self, "flair_contrasts", _positive_tuple(self.flair_contrasts, "FLAIR contrasts"))
        _positive_tuple((self.t1_contrast,), "MPRAGE contrast")
        if self.positions_ijk is not None:
            object.__setattr__(self, "positions_ijk", tuple(tuple(p) for p in self.positions_ijk))
            if not self.positions_ijk:
                raise ParameterError("positions_ijk is empty; give positions or None for random NAWM positions")
        if int(self.n_positions) < 1:
            raise ParameterError(f"n_positions must be >= 1, got {self.n_positions}")
        if self.shape not in SHAPES:
            raise ParameterError(f"lesion shape must be one of {SHAPES}, got '{self.shape}'")
        if not 0.0 < self.min_wm <= 1.0:
            raise ParameterError(f"min_wm must be in (0, 1], got {self.min_wm}")
        if not (math.isfinite(self.min_distance_mm) and self.min_distance_mm >= 0):
            raise ParameterError(f"min_distance_mm must be >= 0, got {self.min_distance_mm}")
        if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
            raise ParameterError(f"threshold must be in (0, 1), got {self.threshold}")
        if int(self.min_size_voxels) < 1:
            raise ParameterError(f"minimum component size must be >= 1 voxel, got {self.min_size_voxels}")
        if not (math.isfinite(self.receptive_margin_mm) and self.receptive_margin_mm >= 0):
            raise ParameterError(f"receptive margin must be >= 0 mm, got {self.receptive_margin_mm}")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ParameterError(f"batch size must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        d = asdict(self)
        d["positions_ijk"] = None if self.positions_ijk is None else [list(p) for p in self.positions_ijk]
        d["context"] = None if self.context is None else self.context.to_dict()
        return d


@dataclass
class SyntheticTrial:
    """One inserted lesion and the model's answer to it."""

    index: int
    position_index: int
    position_ijk: tuple[int, int, int]
    volume_mm3: float  # requested (continuum) volume
    flair_contrast: float
    t1_contrast: float
    seed: int
    lesion_voxels: int
    lesion_volume_mm3: float  # voxelised
    point: Optional[ProbePoint]  # None when the lesion got no voxel (e.g. outside the brain)
    context: Optional[ContextCurve] = None

    @property
    def detected(self) -> Optional[bool]:
        """Return whether the model segmented the lesion (None for an empty lesion)."""
        return None if self.point is None else self.point.detected

    def row(self) -> dict[str, Any]:
        """Return the CSV row of this trial."""
        p = self.point
        ctx = self.context.to_dict() if self.context is not None else None
        return {
            "trial": self.index,
            "position": self.position_index,
            "i": self.position_ijk[0],
            "j": self.position_ijk[1],
            "k": self.position_ijk[2],
            "volume_mm3": self.volume_mm3,
            "flair_contrast": self.flair_contrast,
            "t1_contrast": self.t1_contrast,
            "seed": self.seed,
            "lesion_voxels": self.lesion_voxels,
            "lesion_volume_mm3": round(self.lesion_volume_mm3, 4),
            "detected": "" if p is None else int(p.detected),
            "mean_probability": "" if p is None else round(p.mean_probability, 6),
            "max_probability": "" if p is None else round(p.max_probability, 6),
            "dice": "" if p is None else round(p.dice, 6),
            "predicted_voxels": "" if p is None else p.predicted_voxels,
            "context_status": "" if ctx is None else ctx["status"],
            "context_needed_mm": "" if ctx is None or ctx["context_needed_mm"] is None else ctx["context_needed_mm"],
        }


@dataclass
class SyntheticResult:
    """All trials of one synthetic-lesion probe, with per size/contrast summaries and files."""

    trials: list[SyntheticTrial]
    settings: SyntheticSettings
    threshold: float
    positions_ijk: list[tuple[int, int, int]]
    wm_source: str  # "given" or "estimated"
    seconds: float = 0.0
    wm: Optional[np.ndarray] = field(default=None, repr=False)  # the map the lesions were confined to

    @property
    def n_positions(self) -> int:
        """Return the number of insertion sites."""
        return len(self.positions_ijk)

    def rows(self) -> list[dict[str, Any]]:
        """Return one CSV row per trial."""
        return [t.row() for t in self.trials]

    def summary_rows(self) -> list[dict[str, Any]]:
        """Return detection rate, mean Dice and mean probability per (volume, FLAIR contrast); empty lesions excluded."""
        out = []
        for v in self.settings.volumes_mm3:
            for c in self.settings.flair_contrasts:
                group = [t for t in self.trials if t.volume_mm3 == v and t.flair_contrast == c and t.point is not None]
                n = len(group)
                det = sum(1 for t in group if t.point.detected)
                needed = sorted(
                    t.context.context_needed_mm
                    for t in group
                    if t.context is not None and t.context.context_needed_mm is not None
                    and math.isfinite(t.context.context_needed_mm)
                )  # fmt: skip
                out.append(
                    {
                        "volume_mm3": v,
                        "flair_contrast": c,
                        "trials": n,
                        "detected": det,
                        "detection_rate": round(det / n, 6) if n else float("nan"),
                        "mean_dice": round(float(np.mean([t.point.dice for t in group])), 6) if n else float("nan"),
                        "mean_probability": round(float(np.mean([t.point.mean_probability for t in group])), 6)
                        if n else float("nan"),
                        "median_context_needed_mm": float(np.median(needed)) if needed else "",
                    }
                )  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (NaN rates become null)."""

        def clean(row: dict) -> dict:
            return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}

        return {
            "settings": self.settings.to_dict(),
            "threshold": self.threshold,
            "positions_ijk": [list(p) for p in self.positions_ijk],
            "white_matter": self.wm_source,
            "seconds": round(self.seconds, 3),
            "summary": [clean(r) for r in self.summary_rows()],
            "trials": [clean(r) for r in self.rows()],
        }

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write one row per trial as CSV; return the path."""
        return write_csv(path, TRIAL_COLUMNS, self.rows())

    def write_summary_csv(self, path: str | os.PathLike) -> Path:
        """Write the per size/contrast summary as CSV; return the path."""
        return write_csv(path, SUMMARY_COLUMNS, self.summary_rows())

    def write_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON; return the path."""
        return write_json(path, self.to_dict())

    def plot(self, path: str | os.PathLike, title: Optional[str] = None) -> Path:
        """Write a PNG of detection rate and mean Dice vs lesion volume per contrast; return the path."""
        from LesionXAILib.probes.plots import plot_synthetic

        return plot_synthetic(self, path, title)

    def subject(self, pair: InputPair, index: int) -> tuple[InputPair, np.ndarray]:
        """Return (the subject with trial ``index``'s lesion inserted, that lesion's mask), to segment or explain it."""
        from LesionXAILib.phantom import insert_lesion

        if not 0 <= int(index) < len(self.trials):
            raise ParameterError(f"synthetic trial {index} does not exist (0..{len(self.trials) - 1})")
        t = self.trials[int(index)]
        flair, t1, mask = insert_lesion(
            pair.flair, pair.t1, pair.geometry, t.position_ijk, t.volume_mm3, flair_contrast=t.flair_contrast,
            t1_contrast=t.t1_contrast, seed=t.seed, shape=self.settings.shape, wm=self.wm,
        )  # fmt: skip
        note = f"synthetic lesion {t.index}: {t.volume_mm3:g} mm3 at i,j,k {t.position_ijk}, FLAIR x{t.flair_contrast:g}"
        return InputPair(flair, t1, pair.geometry, notes=list(pair.notes) + [note]), mask


class _NonzeroMoments:
    """Per-channel count, sum and sum of squares over non-zero voxels: z-score statistics that update cheaply."""

    def __init__(self, stack: np.ndarray) -> None:
        self.count = np.zeros(stack.shape[0])
        self.total = np.zeros(stack.shape[0])
        self.squares = np.zeros(stack.shape[0])
        for c in range(stack.shape[0]):
            v = stack[c][stack[c] != 0].astype(np.float64)
            self.count[c], self.total[c], self.squares[c] = v.size, v.sum(), (v * v).sum()

    def after_change(self, old: np.ndarray, new: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return per-channel (mean, std) once voxels holding ``old`` (C, n) hold ``new`` instead."""
        o, n = old.astype(np.float64), new.astype(np.float64)
        count = self.count - (o != 0).sum(axis=1) + (n != 0).sum(axis=1)
        total = self.total - o.sum(axis=1) + n.sum(axis=1)
        squares = self.squares - (o * o).sum(axis=1) + (n * n).sum(axis=1)
        mean = total / np.maximum(count, 1)
        std = np.sqrt(np.maximum(squares / np.maximum(count, 1) - mean * mean, 0.0))
        return mean, np.where(std == 0, 1.0, std)


def _zscore(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Return the float32 z-score of a (C, ...) raw stack with given statistics; zeros stay 0 (as zscore_nonzero)."""
    out = np.zeros(raw.shape, dtype=np.float32)
    for c in range(raw.shape[0]):
        inside = raw[c] != 0
        out[c][inside] = ((raw[c][inside].astype(np.float64) - mean[c]) / std[c]).astype(np.float32)
    return out


@dataclass
class _Inserted:
    trial: SyntheticTrial
    box: tuple[slice, slice, slice]  # bounding box of changed voxels and mask on the full grid
    patch: np.ndarray  # (C, box) new raw values
    mask: np.ndarray  # box-shaped lesion mask
    mean: np.ndarray
    std: np.ndarray


def _bounding_slices(region: np.ndarray) -> tuple[slice, slice, slice]:
    idx = np.nonzero(region)
    return tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)


def _paste(crop: np.ndarray, box: CropBox, region: tuple[slice, ...], values: np.ndarray) -> None:
    """Write ``values`` (..., region) into ``crop`` (..., box.shape) where the region and the box overlap."""
    src, dst = [], []
    for r, s, inner in zip(region, box.slices, box.inner):
        lo, hi = max(r.start, s.start), min(r.stop, s.stop)
        if hi <= lo:
            return
        src.append(slice(lo - r.start, hi - r.start))
        dst.append(slice(inner.start + lo - s.start, inner.start + hi - s.start))
    lead = (slice(None),) * (values.ndim - 3)
    crop[lead + tuple(dst)] = values[lead + tuple(src)]


def synthetic_lesion_probe(
    model: LesionModel,
    pair: InputPair,
    settings: SyntheticSettings = SyntheticSettings(),
    wm: Optional[np.ndarray] = None,
    exclude: Optional[np.ndarray] = None,
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> SyntheticResult:
    """Return the SyntheticResult of inserting every volume x contrast at each NAWM position of ``pair``.

    ``wm``: white-matter probability (k,j,i) confining positions and lesions (estimated from the
    MPRAGE if None). ``exclude``: existing lesions (e.g. the segmentation) to keep ``min_distance_mm`` from.
    """
    from LesionXAILib.phantom import insert_lesion

    reporter = as_reporter(progress, cancel)
    start = time.perf_counter()
    geometry = pair.geometry
    threshold = model.config.threshold if settings.threshold is None else float(settings.threshold)
    if model.config.in_channels != 2:
        raise ParameterError(f"the synthetic-lesion probe needs a FLAIR + MPRAGE model; '{model.config.name}' takes {model.config.in_channels} inputs")
    reporter(0.0, "white matter")
    wm_source = "given"
    if wm is None:
        wm, wm_source = estimate_white_matter(pair.flair, pair.t1), "estimated"
    elif np.shape(wm) != geometry.shape:
        raise ParameterError(f"white-matter map shape {np.shape(wm)} does not match the image grid {geometry.shape}")
    if settings.positions_ijk is not None:
        positions = check_positions(settings.positions_ijk, geometry)
    else:
        candidates = nawm_candidates(wm, geometry, exclude, settings.min_wm, settings.min_distance_mm)
        positions = pick_positions(candidates, geometry, int(settings.n_positions), settings.seed, settings.min_distance_mm)
    stack = pair.stacked()
    moments = _NonzeroMoments(stack)
    margin = np.array(margin_voxels(settings.receptive_margin_mm, geometry.spacing_kji))
    context = None
    if settings.context is not None:
        context = replace(
            settings.context,
            threshold=threshold if settings.context.threshold is None else settings.context.threshold,
            min_size_voxels=settings.min_size_voxels if settings.context.min_size_voxels is None
            else settings.context.min_size_voxels,
        )  # fmt: skip

    per_position = len(settings.volumes_mm3) * len(settings.flair_contrasts)
    total = per_position * len(positions)
    trials: list[SyntheticTrial] = []
    with eval_mode(model):
        for p_index, ijk in enumerate(positions):
            inserted: list[_Inserted] = []
            for contrast in settings.flair_contrasts:
                for volume in settings.volumes_mm3:
                    reporter.check()
                    # one shape per position: sizes and contrasts vary, the lesion's form does not
                    seed = int(settings.seed) * 100003 + p_index
                    flair, t1, mask = insert_lesion(
                        pair.flair, pair.t1, geometry, ijk, volume, flair_contrast=contrast,
                        t1_contrast=settings.t1_contrast, seed=seed, shape=settings.shape, wm=wm,
                    )  # fmt: skip
                    trial = SyntheticTrial(
                        index=len(trials), position_index=p_index, position_ijk=ijk, volume_mm3=volume,
                        flair_contrast=contrast, t1_contrast=settings.t1_contrast, seed=seed,
                        lesion_voxels=int(mask.sum()), lesion_volume_mm3=float(mask.sum() * geometry.voxel_volume),
                        point=None,
                    )  # fmt: skip
                    trials.append(trial)
                    if not mask.any():
                        continue
                    changed = (flair != pair.flair) | (t1 != pair.t1)
                    where = np.nonzero(changed)
                    mean, std = moments.after_change(stack[(slice(None),) + where], np.stack([flair[where], t1[where]]))
                    region = _bounding_slices(changed | mask)
                    inserted.append(
                        _Inserted(trial, region, np.stack([flair[region], t1[region]]), mask[region], mean, std)
                    )
            if inserted:
                lo = np.min([[s.start for s in item.box] for item in inserted], axis=0)
                hi = np.max([[s.stop for s in item.box] for item in inserted], axis=0)
                box = align_box(box_around(lo - margin, hi + margin, geometry.shape), model.size_divisor)
                base = box.extract(stack, 0.0)
                batch = settings.batch_size or max(1, MAX_BATCH_VOXELS // int(np.prod(box.shape)))
                for first in range(0, len(inserted), batch):
                    reporter.check()
                    chunk = inserted[first : first + batch]
                    crops, masks = [], []
                    for item in chunk:
                        raw = base.copy()
                        _paste(raw, box, item.box, item.patch)
                        crops.append(_zscore(raw, item.mean, item.std))
                        m = np.zeros(box.shape, dtype=bool)
                        _paste(m, box, item.box, item.mask)
                        masks.append(m)
                    probs = _probabilities(model, torch.from_numpy(np.stack(crops)))
                    for item, prob, m in zip(chunk, probs, masks):
                        item.trial.point = score_prediction(prob, m, threshold, int(settings.min_size_voxels), settings.connectivity)
                if context is not None:
                    for item in inserted:
                        full = stack.copy()
                        full[(slice(None),) + item.box] = item.patch
                        mask_full = np.zeros(geometry.shape, dtype=bool)
                        mask_full[item.box] = item.mask
                        item.trial.context = context_probe(
                            model, _zscore(full, item.mean, item.std), mask_full, geometry, context,
                            instance_id=item.trial.index,
                        )  # fmt: skip
            reporter((p_index + 1) * per_position / total, f"position {p_index + 1}/{len(positions)}")
    return SyntheticResult(
        trials=trials, settings=settings, threshold=threshold, positions_ijk=positions, wm_source=wm_source,
        seconds=time.perf_counter() - start, wm=np.asarray(wm),
    )  # fmt: skip
