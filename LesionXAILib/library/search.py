"""Exact nearest neighbours by cosine distance (1 - e_q . e_l for unit embeddings), with numpy.

One matrix product per block of library rows plus a partial sort (``argpartition``) per query:
O(n_library x D) per query with no index to build or keep in step with the Parquet files. Measured
fast enough at 10^5 lesions (benchmarks/bench_similar.py --search-only; README "Similar lesions"),
so no approximate index is used. Ties are broken by row order, so results are deterministic.
"""

from __future__ import annotations

import numpy as np

from LesionXAILib.errors import ParameterError

BLOCK_ROWS = 65536  # library rows per matrix product: bounds the (queries x block) distance matrix


def nearest(queries: np.ndarray, library: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (indices (q, k'), cosine distances (q, k')) of each query's k' = min(k, n) nearest library rows, nearest first."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    lib = np.asarray(library, dtype=np.float32)
    if k < 1:
        raise ParameterError(f"number of neighbours must be >= 1, got {k}")
    if lib.ndim != 2 or lib.shape[0] == 0:
        raise ParameterError("the lesion library is empty: add subjects with `lesionxai library build` first")
    if q.shape[1] != lib.shape[1]:
        raise ParameterError(f"query embeddings have length {q.shape[1]}, the library's {lib.shape[1]}")
    kk = min(int(k), lib.shape[0])
    best_i = np.zeros((q.shape[0], 0), dtype=np.int64)
    best_d = np.zeros((q.shape[0], 0), dtype=np.float32)
    for start in range(0, lib.shape[0], BLOCK_ROWS):
        block = lib[start : start + BLOCK_ROWS]
        d = 1.0 - q @ block.T
        idx = np.broadcast_to(np.arange(start, start + block.shape[0]), d.shape)
        cand_d = np.concatenate([best_d, d], axis=1)
        cand_i = np.concatenate([best_i, idx], axis=1)
        if cand_d.shape[1] > kk:
            part = np.argpartition(cand_d, kk - 1, axis=1)[:, :kk]
            cand_d = np.take_along_axis(cand_d, part, axis=1)
            cand_i = np.take_along_axis(cand_i, part, axis=1)
        best_d, best_i = cand_d, cand_i
    order = np.lexsort((best_i, best_d), axis=1) if best_d.shape[1] else np.zeros_like(best_i)
    best_i = np.take_along_axis(best_i, order, axis=1)
    best_d = np.take_along_axis(best_d, order, axis=1)
    return best_i, np.maximum(best_d, 0.0)
