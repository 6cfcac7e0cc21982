"""Multiple-comparison corrections of p-values: Holm (family-wise error) and Benjamini-Hochberg (FDR).

Both take p-values in any order and return adjusted values in the same order; NaN entries (tests
that could not be run) are left NaN and do not count towards the family size m.

Holm (1979):  sort p ascending, p_(1) <= ... <= p_(m); adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
BH (1995):    adjusted p_(i) = min_{j >= i} min(1, m p_(j) / j).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from LesionXAILib.errors import ParameterError

METHODS = ("holm", "bh")


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Return Holm step-down adjusted p-values (same order as given)."""
    return _adjust(pvalues, "holm")


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Return Benjamini-Hochberg step-up adjusted p-values (same order as given)."""
    return _adjust(pvalues, "bh")


def adjust(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """Return p-values adjusted by ``method`` ('holm' or 'bh')."""
    if method not in METHODS:
        raise ParameterError(f"multiple-comparison correction must be one of {METHODS}, got '{method}'")
    return _adjust(pvalues, method)


def _adjust(pvalues: Sequence[float], method: str) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ParameterError("p-values must be a flat sequence")
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    if valid.size == 0:
        return out
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ParameterError("p-values must lie in [0, 1]")
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    ranked = p[order]
    i = np.arange(1, m + 1)
    if method == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - i + 1) * ranked))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / i)[::-1])[::-1]
    out[order] = adj
    return out
