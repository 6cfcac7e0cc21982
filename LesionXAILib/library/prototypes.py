"""Prototypes of a lesion library: k-means clusters of the embeddings, each cluster's most typical lesions and TP/FP mix.

k-means (Lloyd's algorithm, k-means++ seeding from a seeded generator, ``restarts`` seeds kept by
lowest inertia) on the unit embeddings: squared Euclidean distance between unit vectors is
2 x cosine distance, so the clusters are those of the cosine geometry the search uses. A cluster's
"most typical" lesions are its members nearest its centre.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.library.table import LesionTable

JSON_NAME = "prototypes.json"
CSV_NAME = "prototypes.csv"
FIGURE_NAME = "prototypes.png"


@dataclass
class KMeansResult:
    """Cluster label per row, centres (k, D) and inertia (sum of squared distances to the own centre)."""

    labels: np.ndarray
    centres: np.ndarray
    inertia: float


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    centres = [x[rng.integers(len(x))]]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        i = int(rng.choice(len(x), p=d2 / total)) if total > 0 else int(rng.integers(len(x)))
        centres.append(x[i])
        d2 = np.minimum(d2, ((x - x[i]) ** 2).sum(axis=1))
    return np.stack(centres)


def _assign(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d2 = (x**2).sum(1)[:, None] - 2 * x @ centres.T + (centres**2).sum(1)[None, :]
    labels = d2.argmin(axis=1)
    return labels, np.maximum(d2[np.arange(len(x)), labels], 0.0)


def kmeans(x: np.ndarray, k: int, seed: int = 0, restarts: int = 4, max_iter: int = 100) -> KMeansResult:
    """Return the k-means clustering of the rows of ``x`` with the lowest inertia over ``restarts`` seeded starts."""
    x = np.asarray(x, dtype=np.float64)
    if not 1 <= k <= len(x):
        raise ParameterError(f"number of clusters must be in 1..{len(x)} (the number of lesions), got {k}")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(max(1, restarts)):
        centres = _plus_plus(x, k, rng)
        labels = None
        for _ in range(max_iter):
            new, _ = _assign(x, centres)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            for c in range(k):
                members = x[labels == c]
                # an emptied cluster restarts at the point farthest from its centre
                centres[c] = members.mean(axis=0) if len(members) else x[_assign(x, centres)[1].argmax()]
        labels, d2 = _assign(x, centres)
        result = KMeansResult(labels, centres, float(d2.sum()))
        if best is None or result.inertia < best.inertia - 1e-12:
            best = result
    return best


def prototypes(table: LesionTable, clusters: int = 8, seed: int = 0, typical: int = 5) -> list[dict[str, Any]]:
    """Return one summary per cluster: size, status counts, FP share (of TP+FP), and its ``typical`` most central rows."""
    if len(table) == 0:
        raise ParameterError("the lesion library is empty: add subjects with `lesionxai library build` first")
    fit = kmeans(table.embedding, min(int(clusters), len(table)), seed)
    out = []
    for c in range(fit.centres.shape[0]):
        rows = np.flatnonzero(fit.labels == c)
        if rows.size == 0:
            continue
        d = ((table.embedding[rows].astype(np.float64) - fit.centres[c]) ** 2).sum(axis=1)
        order = rows[np.lexsort((rows, d))]
        counts = Counter(str(s) for s in table.status[rows])
        judged = counts.get("TP", 0) + counts.get("FP", 0)
        out.append({
            "cluster": len(out) + 1,
            "size": int(rows.size),
            "status_counts": dict(sorted(counts.items())),
            "fp_share": round(counts.get("FP", 0) / judged, 6) if judged else None,
            "median_volume_mm3": round(float(np.median(table.volume_mm3[rows])), 3),
            "typical_rows": [int(i) for i in order[:typical]],
            "typical": [table.record(int(i)) for i in order[:typical]],
        })  # fmt: skip
    out.sort(key=lambda c: -c["size"])
    for n, c in enumerate(out, start=1):
        c["cluster"] = n
    return out


def write_prototypes(out: str | os.PathLike, table: LesionTable, summary: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Path]:
    """Write prototypes.json / .csv / .png into ``out``; return their paths."""
    from LesionXAILib.atomic_write import save_figure, write_csv, write_json
    from LesionXAILib.library.figures import prototype_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in summary:
        for rank, rec in enumerate(c["typical"], start=1):
            rows.append({"cluster": c["cluster"], "cluster_size": c["size"], "cluster_fp_share": "" if c["fp_share"] is None else c["fp_share"],
                         "rank": rank, "subject": rec["subject"], "id": rec["id"], "status": rec["status"], "volume_mm3": rec["volume_mm3"]})  # fmt: skip
    columns = ["cluster", "cluster_size", "cluster_fp_share", "rank", "subject", "id", "status", "volume_mm3"]
    paths = {"csv": write_csv(out / CSV_NAME, columns, rows)}
    paths["figure"] = save_figure(prototype_figure(table, summary), out / FIGURE_NAME, dpi=110)
    clusters = [{k: v for k, v in c.items() if k != "typical_rows"} for c in summary]
    paths["json"] = write_json(out / JSON_NAME, {**meta, "clusters": clusters})
    return paths
