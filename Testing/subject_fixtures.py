"""A small segmented subject with two bright FLAIR lesions, found by the hand-built detector (no MRML)."""

from __future__ import annotations

from typing import Any

import numpy as np

from probes_fixtures import detector_model


def two_lesion_subject(seed: int = 5, shape: tuple[int, int, int] = (20, 22, 21)) -> tuple[Any, Any]:
    """Return (detector LesionModel, InputPair) of a volume whose two bright cubes the detector finds as lesions 1, 2."""
    from explain_fixtures import unit_geometry
    from LesionXAILib.image_io import InputPair

    rng = np.random.default_rng(seed)
    flair = 100 + rng.normal(0, 2, shape)
    flair[5:8, 5:8, 5:8] = 160
    flair[12:16, 13:16, 11:15] = 170
    # z-scored MPRAGE of +-1 everywhere: 'tissue' for the detector (it treats |MPRAGE| < 0.5 as fill)
    t1 = 80 + 20 * np.sign(rng.normal(0, 1, shape))
    pair = InputPair(flair.astype(np.float32), t1.astype(np.float32), unit_geometry(shape))
    return detector_model(h=1, level=1.5), pair
