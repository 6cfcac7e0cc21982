"""Similar lesions for the front ends: a session's lesion against a lesion library, k nearest, with crop thumbnails.

It computes exactly what ``lesionxai similar`` computes (:func:`LesionXAILib.library.build.result_table`
to embed the query lesion with the session's model, :func:`LesionXAILib.library.query.find_similar` for
the neighbours), on the session's segmentation. A library built with another model (or other embedding
settings) is refused by the library's own identity check; the refusal is kept as the panel's message,
so a front end shows it instead of neighbours. No scene here: a worker thread may run ``neighbours``.
"""

from __future__ import annotations

import base64
import io
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from LesionXAILib.errors import LesionXAIError, ParameterError

DEFAULT_K = 5
MAX_K = 50
THUMBNAIL_SCALE = 2  # crop pixels (1 mm) drawn as 2 x 2 screen pixels
OUTLINE_RGB = (255, 215, 0)  # the library figure's outline colour


@dataclass
class SimilarRow:
    """One neighbour: rank, library subject and lesion id, status, cosine distance, volume and an axial crop PNG."""

    rank: int
    subject: str
    lesion_id: int
    status: str
    distance: float
    volume_mm3: float
    thumbnail_png: bytes = b""

    def to_dict(self) -> dict[str, Any]:
        """Return the row as JSON-able data (thumbnail as a data: URI)."""
        return {"rank": self.rank, "subject": self.subject, "id": self.lesion_id, "status": self.status,
                "distance": round(self.distance, 6), "volume_mm3": round(self.volume_mm3, 3),
                "thumbnail": png_data_uri(self.thumbnail_png)}  # fmt: skip


@dataclass
class SimilarPanel:
    """What the similar-lesions panel shows for one lesion: its neighbours, or a message saying why there are none."""

    lesion_id: Optional[int]
    rows: list[SimilarRow] = field(default_factory=list)
    message: str = ""
    library: str = ""
    query_thumbnail_png: bytes = b""

    @property
    def ok(self) -> bool:
        """Return True when neighbours were found."""
        return bool(self.rows)


def thumbnail_png(crop: np.ndarray, mask: np.ndarray, scale: int = THUMBNAIL_SCALE) -> bytes:
    """Return a PNG of one (S, S) uint8 crop plane with the lesion's outline drawn in yellow."""
    from PIL import Image
    from scipy import ndimage

    grey = np.asarray(crop, dtype=np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    m = np.asarray(mask, dtype=bool)
    outline = m & ~ndimage.binary_erosion(m)
    rgb[outline] = OUTLINE_RGB
    if scale > 1:
        rgb = np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_uri(png: bytes) -> str:
    """Return a data: URI of PNG bytes ('' for none)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii") if png else ""


class LibraryLink:
    """A lesion library opened for one model: its lesions loaded once, neighbours cached per (run key, lesion).

    ``error`` holds the reason the library cannot be used with this model (another model, not a library,
    empty); ``neighbours`` then returns panels carrying that message.
    """

    def __init__(self, path: str | os.PathLike, model: Any, k: int = DEFAULT_K) -> None:
        from LesionXAILib.library.build import library_identity
        from LesionXAILib.library.embedding import EmbeddingSettings
        from LesionXAILib.library.query import open_checked
        from LesionXAILib.library.store import LesionLibrary

        if not 1 <= int(k) <= MAX_K:
            raise ParameterError(f"number of similar lesions must be in 1..{MAX_K}, got {k}")
        self.path = Path(path).expanduser()
        self.model = model
        self.k = int(k)
        self.error = ""
        self.table: Any = None
        self.settings: Any = None
        self._cache: dict[tuple, SimilarPanel] = {}
        self._lock = threading.Lock()
        try:
            library = LesionLibrary.open(self.path)
            # the library's layers, as `lesionxai similar` does; the identity check then compares everything else
            self.settings = EmbeddingSettings(layers=tuple(library.identity.get("layers") or ()))
            _, self.table = open_checked(self.path, library_identity(model, self.settings))
        except LesionXAIError as exc:
            self.error = str(exc)

    def neighbours(self, session: Any, lesion_id: int, subject: str = "query") -> SimilarPanel:
        """Return the panel of one lesion of the session's last run: its k nearest library lesions (cached)."""
        from LesionXAILib.library.build import result_table
        from LesionXAILib.library.query import find_similar

        lesion_id = int(lesion_id)
        if self.error:
            return SimilarPanel(lesion_id, message=self.error, library=str(self.path))
        if session.model is not self.model:
            return SimilarPanel(lesion_id, message="the library was opened for another model than this session's; "
                                "choose the library again", library=str(self.path))  # fmt: skip
        result = session.check_current()
        key = (session.key, lesion_id)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        result.instances.get(lesion_id)  # unknown id: InstanceError naming the valid ones
        query = result_table(self.model, subject, result, self.settings, [lesion_id])
        found = find_similar(self.table, query, self.k)
        rows = []
        for rank, (row, distance) in enumerate(zip(found.neighbours[0], found.distances[0])):
            r = int(row)
            lib = self.table
            rows.append(SimilarRow(rank + 1, str(lib.subject[r]), int(lib.id[r]), str(lib.status[r]), float(distance),
                                   float(lib.volume_mm3[r]), thumbnail_png(lib.crop[r, 0], lib.crop_mask[r, 0])))  # fmt: skip
        panel = SimilarPanel(lesion_id, rows, f"{len(rows)} nearest of {len(self.table)} library lesions", str(self.path),
                             thumbnail_png(query.crop[0, 0], query.crop_mask[0, 0]))  # fmt: skip
        with self._lock:
            self._cache[key] = panel
        return panel

    def cached(self, session: Any, lesion_id: int) -> Optional[SimilarPanel]:
        """Return the panel of a lesion if already computed under the session's current key, else None."""
        with self._lock:
            return self._cache.get((session.key, int(lesion_id)))


def similar_text(panel: SimilarPanel) -> str:
    """Return the panel as plain lines (Slicer's label, logs): the message, then one line per neighbour."""
    lines = [panel.message] if panel.message else []
    lines += [f"{r.rank}. {r.subject} #{r.lesion_id} {r.status}  distance {r.distance:.3f}  {r.volume_mm3:.1f} mm³"
              for r in panel.rows]  # fmt: skip
    return "\n".join(lines)
