"""Overlay names a session offers for one lesion (explainer maps, then the context shells) and how each is windowed."""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from LesionXAILib.vocabulary import CONTEXT_SHELLS, is_non_negative, known_methods, map_keys, map_title, parse_map_key

# what the Slicer module's overlay combo lists (LesionXAI.py keeps a literal copy; a test compares them)
OVERLAYS = ("smoothgrad_flair", "smoothgrad_mprage", "gradcampp", CONTEXT_SHELLS)
SHELLS_OVERLAY = CONTEXT_SHELLS
# window half-width of an overlay = this percentile of |value| over its non-zero voxels (robust to single spikes)
WINDOW_PERCENTILE = 99.5


def overlay_names(methods: Iterable[str], sequences: Iterable[str]) -> tuple[str, ...]:
    """Return the overlays of these explainer methods on these input sequences, then the context shells."""
    sequences = [s.lower() for s in sequences]
    names: list[str] = []
    for method in methods:
        names.extend(map_keys(method, sequences))
    return tuple(names) + (SHELLS_OVERLAY,)


def default_overlay(names: Sequence[str]) -> str:
    """Return the overlay shown when none is named: SmoothGrad FLAIR if offered, else the first."""
    return OVERLAYS[0] if OVERLAYS[0] in names else names[0]


def overlay_sources(overlay: str) -> tuple[str, ...]:
    """Return what must be computed to show ``overlay``: an explainer method name, or 'context' for the shells."""
    if overlay == SHELLS_OVERLAY:
        return ("context",)
    method = parse_map_key(overlay).method
    return (method,) if method in known_methods() else ()


def overlay_title(name: str) -> str:
    """Return a readable title for an overlay name, e.g. 'smoothgrad_flair' -> 'SmoothGrad FLAIR'."""
    return map_title(name)


def is_signed_overlay(name: str) -> bool:
    """Return True for maps drawn with the diverging table centred at 0 (signed gradients)."""
    return name != SHELLS_OVERLAY and not is_non_negative(name)


def overlay_window(values: np.ndarray, signed: bool) -> tuple[float, float]:
    """Return the fixed (min, max) display window of a map: [-M, M] for signed maps, [0, M] otherwise."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[v > 0]
    m = float(np.percentile(v, WINDOW_PERCENTILE)) if v.size else 0.0
    if not np.isfinite(m) or m <= 0:
        m = float(v.max()) if v.size else 1.0
    return (-m, m) if signed else (0.0, m)
