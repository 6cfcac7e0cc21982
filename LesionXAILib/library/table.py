"""LesionTable: the lesions of a library (or of one subject) as columns of numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np

from LesionXAILib.errors import InstanceError


@dataclass
class LesionTable:
    """One row per lesion: subject, id, status (TP/FP/FN/predicted), size, centroid (RAS mm), embedding, crops."""

    subject: np.ndarray  # (n,) str
    id: np.ndarray  # (n,) int
    status: np.ndarray  # (n,) str
    voxels: np.ndarray  # (n,) int
    volume_mm3: np.ndarray  # (n,) float
    centroid_ras: np.ndarray  # (n, 3) float, mm
    mean_probability: np.ndarray  # (n,) float (NaN for FN lesions outside any prediction)
    embedding: np.ndarray  # (n, D) float32, unit rows
    crop: np.ndarray  # (n, 3, S, S) uint8 FLAIR planes
    crop_mask: np.ndarray  # (n, 3, S, S) uint8 0/1 lesion planes

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @property
    def dimension(self) -> int:
        """Return the embedding length D (0 for an empty table without one)."""
        return int(self.embedding.shape[1]) if self.embedding.ndim == 2 else 0

    def take(self, index: Sequence[int] | np.ndarray) -> "LesionTable":
        """Return the rows at ``index`` (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        return LesionTable(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def row_of(self, subject: str, lesion_id: int) -> int:
        """Return the row index of (subject, lesion id), or raise InstanceError listing that subject's ids."""
        hit = np.flatnonzero((self.subject == subject) & (self.id == int(lesion_id)))
        if hit.size:
            return int(hit[0])
        ids = ", ".join(str(int(i)) for i in self.id[self.subject == subject][:20]) or "none"
        raise InstanceError(f"lesion {lesion_id} of subject '{subject}' is not in the table (its ids: {ids})")

    def record(self, row: int) -> dict[str, Any]:
        """Return row ``row`` as a JSON-serialisable dict (no embedding or crops)."""
        mp = float(self.mean_probability[row])
        return {
            "subject": str(self.subject[row]),
            "id": int(self.id[row]),
            "status": str(self.status[row]),
            "voxels": int(self.voxels[row]),
            "volume_mm3": round(float(self.volume_mm3[row]), 4),
            "centroid_ras": [round(float(v), 3) for v in self.centroid_ras[row]],
            "mean_probability": round(mp, 6) if np.isfinite(mp) else None,
        }


def empty_table(dimension: int = 0, crop_size: int = 32) -> LesionTable:
    """Return a table with no rows."""
    return LesionTable(
        subject=np.zeros(0, dtype=object), id=np.zeros(0, dtype=np.int64), status=np.zeros(0, dtype=object),
        voxels=np.zeros(0, dtype=np.int64), volume_mm3=np.zeros(0), centroid_ras=np.zeros((0, 3)),
        mean_probability=np.zeros(0), embedding=np.zeros((0, dimension), dtype=np.float32),
        crop=np.zeros((0, 3, crop_size, crop_size), dtype=np.uint8), crop_mask=np.zeros((0, 3, crop_size, crop_size), dtype=np.uint8),
    )  # fmt: skip


def concat_tables(tables: Sequence[LesionTable]) -> LesionTable:
    """Return the rows of ``tables`` one after the other."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return empty_table()
    return LesionTable(**{f.name: np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(LesionTable)})
