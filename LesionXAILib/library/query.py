"""Lesions like this one: each lesion of a subject against a lesion library, k nearest by cosine distance.

Writes ``similar_lesions.json`` (every query lesion with its neighbours), ``similar_lesions.csv`` (one
row per query lesion and neighbour rank) and ``similar_lesions.png`` (crops of each query lesion and
its neighbours). ``neighbour_fp_share``: the share of FP among a lesion's neighbours that are TP or
FP (None when none is) -- the case-based reading of "the network treats this like its false positives".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from LesionXAILib.atomic_write import write_csv, write_json
from LesionXAILib.errors import ParameterError
from LesionXAILib.library.search import nearest
from LesionXAILib.library.store import LesionLibrary
from LesionXAILib.library.table import LesionTable

JSON_NAME = "similar_lesions.json"
CSV_NAME = "similar_lesions.csv"
FIGURE_NAME = "similar_lesions.png"
CSV_COLUMNS = ["id", "status", "volume_mm3", "rank", "neighbour_subject", "neighbour_id", "neighbour_status",
               "distance", "neighbour_volume_mm3", "neighbour_fp_share"]  # fmt: skip


@dataclass
class SimilarLesions:
    """The query lesions, the library rows of their neighbours (q, k) and the distances (q, k)."""

    queries: LesionTable
    library: LesionTable
    neighbours: np.ndarray
    distances: np.ndarray

    def fp_share(self, row: int) -> Optional[float]:
        """Return the share of FP among query ``row``'s neighbours that are TP or FP (None if none is)."""
        statuses = [str(s) for s in self.library.status[self.neighbours[row]]]
        judged = [s for s in statuses if s in ("TP", "FP")]
        return judged.count("FP") / len(judged) if judged else None

    def to_records(self) -> list[dict[str, Any]]:
        """Return one JSON-serialisable dict per query lesion, its neighbours nearest first."""
        out = []
        for q in range(len(self.queries)):
            rec = self.queries.record(q)
            rec.pop("subject")
            share = self.fp_share(q)
            rec["neighbour_fp_share"] = None if share is None else round(share, 6)
            rec["neighbours"] = [
                {"rank": r + 1, **self.library.record(int(i)), "distance": round(float(d), 6)}
                for r, (i, d) in enumerate(zip(self.neighbours[q], self.distances[q]))
            ]
            out.append(rec)
        return out

    def csv_rows(self) -> list[dict[str, Any]]:
        """Return the rows of similar_lesions.csv."""
        rows = []
        for rec in self.to_records():
            for n in rec["neighbours"]:
                rows.append({"id": rec["id"], "status": rec["status"], "volume_mm3": rec["volume_mm3"], "rank": n["rank"],
                             "neighbour_subject": n["subject"], "neighbour_id": n["id"], "neighbour_status": n["status"],
                             "distance": n["distance"], "neighbour_volume_mm3": n["volume_mm3"],
                             "neighbour_fp_share": "" if rec["neighbour_fp_share"] is None else rec["neighbour_fp_share"]})  # fmt: skip
        return rows


def find_similar(library: LesionTable, queries: LesionTable, k: int = 5) -> SimilarLesions:
    """Return the k nearest library lesions of every query lesion."""
    if len(queries) == 0:
        return SimilarLesions(queries, library, np.zeros((0, 0), np.int64), np.zeros((0, 0)))
    idx, dist = nearest(queries.embedding, library.embedding, k)
    return SimilarLesions(queries, library, idx, dist)


def select_queries(table: LesionTable, ids: Optional[Sequence[int]]) -> LesionTable:
    """Return the rows of ``table`` with instance ids ``ids`` (None: all), or raise InstanceError naming the valid ids."""
    if ids is None:
        return table
    subject = str(table.subject[0]) if len(table) else ""
    return table.take([table.row_of(subject, i) for i in ids])


def write_similar(out: str | os.PathLike, result: SimilarLesions, meta: dict[str, Any],
                  protected: Sequence[Optional[str | os.PathLike]] = ()) -> dict[str, Path]:  # fmt: skip
    """Write similar_lesions.json / .csv / .png into ``out``; return their paths."""
    from LesionXAILib.library.figures import similar_figure
    from LesionXAILib.atomic_write import save_figure

    out = Path(out)
    guarded = {Path(p).resolve() for p in protected if p}
    for name in (JSON_NAME, CSV_NAME, FIGURE_NAME):
        if (out / name).resolve() in guarded:
            raise ParameterError(f"output '{out / name}' is an input file; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": write_csv(out / CSV_NAME, CSV_COLUMNS, result.csv_rows())}
    fig = similar_figure(result)
    paths["figure"] = save_figure(fig, out / FIGURE_NAME, dpi=110)
    paths["json"] = write_json(out / JSON_NAME, {**meta, "lesions": result.to_records()})
    return paths


def open_checked(path: str | os.PathLike, identity: dict[str, Any]) -> tuple[LesionLibrary, LesionTable]:
    """Return (library, all its lesions) after checking it was built with ``identity``; refuse an empty one."""
    library = LesionLibrary.open(path)
    library.check_identity(identity)
    table = library.load()
    if len(table) == 0:
        raise ParameterError(f"lesion library '{path}' holds no lesion; add subjects with `lesionxai library build` first")
    return library, table
