"""The region a counterfactual may change and its coarse control grid.

The change (displacement and intensity) lives on a box around the lesion whose size is a whole number
of control spacings, so that control points fall on voxels. The two outermost control layers on every
side are held at zero: after trilinear upsampling and a Gaussian blur whose kernel reaches one control
spacing, the field is exactly zero on the box's border voxels and beyond, so pasting the box back into
the image leaves no seam and the warp is the identity outside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.crop import mask_bounds

ZERO_LAYERS = 2  # fixed zero control layers on each side of the box


@dataclass(frozen=True)
class ControlLattice:
    """A k,j,i box of the full grid (``start`` + ``shape``) carrying a control grid every ``step`` voxels."""

    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    step: tuple[int, int, int]

    @property
    def stop(self) -> tuple[int, int, int]:
        """Return the exclusive k,j,i end of the box on the full grid."""
        return tuple(a + n for a, n in zip(self.start, self.shape))

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Return the box's k,j,i slices on the full grid."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop))

    @property
    def control_shape(self) -> tuple[int, int, int]:
        """Return the number of control points per axis, the zero layers included."""
        return tuple((n - 1) // s + 1 for n, s in zip(self.shape, self.step))

    @property
    def free_shape(self) -> tuple[int, int, int]:
        """Return the number of free (optimised) control points per axis."""
        return tuple(m - 2 * ZERO_LAYERS for m in self.control_shape)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable description (start/stop on the full grid, control step in voxels)."""
        return {"start_kji": list(self.start), "stop_kji": list(self.stop), "control_step_kji": list(self.step)}


def control_steps(spacing_kji: Sequence[float], control_spacing_mm: float) -> tuple[int, int, int]:
    """Return the control spacing in whole voxels per k,j,i axis (at least 1)."""
    return tuple(max(1, int(round(control_spacing_mm / float(s)))) for s in spacing_kji)


def lesion_lattice(
    mask: np.ndarray, spacing_kji: Sequence[float], reach_mm: float, control_spacing_mm: float
) -> ControlLattice:
    """Return the control lattice whose free points cover ``mask``'s bounding box grown by ``reach_mm``, inside the image.

    Near the image border the box is shifted (or, on a small image, given fewer control points) to
    stay inside the image; ParameterError if the image cannot hold one free control point.
    """
    lo, hi = mask_bounds(mask)
    full = mask.shape
    steps = control_steps(spacing_kji, control_spacing_mm)
    start, shape = [], []
    for axis in range(3):
        s, n_img = steps[axis], int(full[axis])
        reach = int(math.ceil(reach_mm / float(spacing_kji[axis]) - 1e-9))
        first, last = int(lo[axis]) - reach, int(hi[axis]) - 1 + reach  # voxels the free points must span
        free = int(math.ceil((last - first) / s)) + 1
        while free >= 1 and s * (free - 1 + 2 * ZERO_LAYERS) + 1 > n_img:
            free -= 1  # the image is too small: fewer free points, still centred on the lesion
        if free < 1:
            raise ParameterError(
                f"the image ({n_img} voxels along an axis) is too small for a control grid every {s} voxels; "
                "lower the control spacing"
            )
        n = s * (free - 1 + 2 * ZERO_LAYERS) + 1
        span = s * (free - 1)
        a = (first + last) // 2 - span // 2 - ZERO_LAYERS * s
        a = min(max(a, 0), n_img - n)
        start.append(int(a))
        shape.append(int(n))
    return ControlLattice(tuple(start), tuple(shape), steps)
