"""MPRAGE and FLAIR contrasts: tissue intensities (relative to white matter), their jitter, and lesion mixing.

MPRAGE (T1-weighted): WM bright, GM darker, CSF dark; MS lesions hypointense (some nearly isointense).
FLAIR: CSF suppressed, WM darker than GM, a thin hyperintense rim along the ventricles;
MS lesions hyperintense. Voxel intensity is the partial-volume mix of tissue intensities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class SequenceContrast:
    """One sequence's tissue intensities relative to WM, and the WM level in scanner units."""

    gm: float
    csf: float
    wm_level: float

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class ContrastParams:
    """Both sequences' tissue contrasts plus FLAIR's periventricular rim and tissue texture strengths."""

    flair: SequenceContrast
    t1: SequenceContrast
    flair_rim: float
    texture: float

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return {"flair": self.flair.to_dict(), "t1": self.t1.to_dict(), "flair_rim": self.flair_rim, "texture": self.texture}


def _jittered(rng: np.random.Generator, low: float, high: float, jitter: float) -> float:
    """Return a draw from [low, high] shrunk towards its middle by ``jitter`` (0 = always the middle)."""
    mid = 0.5 * (low + high)
    return float(mid + jitter * (rng.uniform(low, high) - mid))


def sample_contrasts(rng: np.random.Generator, jitter: float = 1.0) -> ContrastParams:
    """Return random per-subject tissue contrasts (``jitter`` scales how far they stray from typical)."""
    return ContrastParams(
        flair=SequenceContrast(
            gm=_jittered(rng, 1.15, 1.38, jitter),
            csf=_jittered(rng, 0.06, 0.22, jitter),
            wm_level=_jittered(rng, 300.0, 700.0, jitter),
        ),
        t1=SequenceContrast(
            gm=_jittered(rng, 0.56, 0.70, jitter),
            csf=_jittered(rng, 0.14, 0.30, jitter),
            wm_level=_jittered(rng, 600.0, 1400.0, jitter),
        ),
        flair_rim=_jittered(rng, 0.08, 0.30, jitter),
        texture=_jittered(rng, 0.015, 0.04, jitter),
    )


def tissue_mix(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, contrast: SequenceContrast) -> np.ndarray:
    """Return the partial-volume mix of tissue intensities (relative to WM = 1), float32."""
    return (wm + contrast.gm * gm + contrast.csf * csf).astype(np.float32)


def flair_rim(ventricle_mm: np.ndarray, csf: np.ndarray, strength: float, width_mm: float = 1.5) -> np.ndarray:
    """Return FLAIR's multiplicative periventricular rim: 1 + strength * exp(-distance / width) outside CSF."""
    return (1.0 + strength * np.exp(-ventricle_mm / width_mm) * (1.0 - csf)).astype(np.float32)


@dataclass(frozen=True)
class LesionContrast:
    """A lesion's intensity relative to WM in each sequence and how much fainter its edge is than its core."""

    flair: float
    t1: float
    heterogeneity: float

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def sample_lesion_contrast(
    rng: np.random.Generator,
    flair_range: Sequence[float] = (1.35, 2.0),
    t1_range: Sequence[float] = (0.55, 0.92),
    jitter: float = 1.0,
) -> LesionContrast:
    """Return a random lesion contrast: FLAIR hyperintense, MPRAGE hypo- to nearly isointense."""
    return LesionContrast(
        flair=_jittered(rng, flair_range[0], flair_range[1], jitter),
        t1=_jittered(rng, t1_range[0], t1_range[1], jitter),
        heterogeneity=_jittered(rng, 0.0, 0.35, jitter),
    )


def lesion_contrast_map(contrast: float, rho: np.ndarray, heterogeneity: float) -> np.ndarray:
    """Return the local lesion/WM intensity ratio: full contrast at the core, fading by ``heterogeneity`` at the edge."""
    fade = heterogeneity * np.clip(rho, 0.0, 1.0) ** 2
    return (1.0 + (contrast - 1.0) * (1.0 - fade)).astype(np.float32)
