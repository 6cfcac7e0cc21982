"""One lesion's result (LesionResult) and its statistics row, as every front end shows them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from LesionXAILib.session.overlays import SHELLS_OVERLAY
from LesionXAILib.vocabulary import STATUS_PREDICTED, finite_or_none

STATISTIC_KEYS = ("id", "status", "voxels", "volume_mm3", "mean_probability", "flair_share", "context_needed_mm",
                  "context_status", "centroid_ras")  # fmt: skip


@dataclass
class LesionResult:
    """One lesion's statistics, context curve and analysis (maps in ``analysis.explanation.maps``).

    ``complete`` is False for a stage delivered before the whole analysis is done (``compute_lesion``
    with ``on_partial``): it holds the maps computed so far, and ``curve`` is None until the probe ran.
    """

    lesion_id: int
    statistics: dict
    curve: Any  # LesionXAILib.probes.curve.ContextCurve
    analysis: Any  # LesionXAILib.analysis.LesionAnalysis
    from_cache: bool
    centroid_ras: tuple[float, float, float]
    key: str = ""  # the session key it was computed under
    complete: bool = True

    def has_overlay(self, overlay: str) -> bool:
        """Return True if this result holds what ``overlay`` shows (a map, or the context curve for the shells)."""
        if overlay == SHELLS_OVERLAY:
            return self.curve is not None
        return overlay in self.maps

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """Return the explanation maps by name (empty when no explainer ran)."""
        explanation = self.analysis.explanation if self.analysis is not None else None
        return dict(explanation.maps) if explanation is not None else {}


def lesion_name(row: Any) -> str:
    """Return the display name of an instance, e.g. 'Lesion 7 · TP · 42 mm³' (status omitted without ground truth)."""
    parts = [f"Lesion {row.id}"]
    if row.status != STATUS_PREDICTED:
        parts.append(row.status)
    parts.append(f"{row.volume_mm3:.0f} mm³" if row.volume_mm3 >= 10 else f"{row.volume_mm3:.1f} mm³")
    return " · ".join(parts)


def base_statistics(row: Any) -> dict:
    """Return the statistics of an instance row before its analysis (the computed ones are None)."""
    return {
        "id": int(row.id),
        "status": row.status,
        "voxels": int(row.voxels),
        "volume_mm3": float(row.volume_mm3),
        "mean_probability": finite_or_none(row.mean_probability, keep_inf=True),
        "max_probability": finite_or_none(row.max_probability, keep_inf=True),
        "flair_share": None,
        "flair_share_method": None,
        "context_needed_mm": None,
        "context_needed_beyond_max_radius": None,
        "context_status": None,
        "context_description": None,
        "centroid_ras": tuple(float(v) for v in row.centroid_ras),
        "name": lesion_name(row),
        "computed": False,
    }


def computed_statistics(analysis: Any, complete: bool = True) -> dict:
    """Return the statistics of an analysed lesion: FLAIR share of the first gradient method, context needed."""
    stats = base_statistics(analysis.instance)
    explanation = analysis.explanation
    if explanation is not None:
        shares = explanation.statistics.get("flair_share", {})
        method = next((m for m in explanation.settings.gradient_methods if m in shares), None)
        if method is not None:
            stats["flair_share"] = finite_or_none(shares[method], keep_inf=True)
            stats["flair_share_method"] = method
    if analysis.curve is not None:
        stats["context_needed_mm"] = analysis.curve.context_needed_mm
        stats["context_needed_beyond_max_radius"] = bool(
            analysis.curve.context_needed_mm is not None and np.isinf(analysis.curve.context_needed_mm)
        )
        stats["context_status"] = analysis.curve.status
        stats["context_description"] = analysis.curve.description
    stats["computed"] = bool(complete)
    return stats
