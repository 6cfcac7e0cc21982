"""Old name of :mod:`LesionXAILib.crop` (the one crop module); new code imports from there.

Reason this file exists: other branches at work (explain/fidelity.py, models/check.py, benchmarks/)
import ``LesionXAILib.roi``; remove it once they import ``LesionXAILib.crop``.
"""

from LesionXAILib.crop import (  # noqa: F401 - re-exported
    CropBox,
    align_box,
    aligned_lesion_box,
    box_around,
    full_box,
    lesion_box,
    margin_voxels,
    mask_bounds,
)
