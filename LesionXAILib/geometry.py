"""Image grid geometry: origin/spacing/direction, voxel <-> RAS transforms, resampling onto a reference.

Arrays are always k,j,i ordered (SimpleITK's GetArrayFromImage order, and Slicer's).
SimpleITK works in LPS physical space; Slicer in RAS. Both are provided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Geometry:
    """A 3D image grid: size (i,j,k), origin (LPS mm), spacing (mm), direction (3x3, row-major)."""

    size: tuple[int, int, int]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def from_image(cls, image: sitk.Image) -> "Geometry":
        """Return the geometry of a 3D SimpleITK image."""
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @classmethod
    def from_ijk_to_ras(cls, matrix: np.ndarray, size_ijk: Sequence[int]) -> "Geometry":
        """Return the geometry described by a Slicer IJK-to-RAS 4x4 matrix and an i,j,k size."""
        lps = LPS_TO_RAS @ np.asarray(matrix, dtype=float)
        columns = lps[:3, :3]
        spacing = np.linalg.norm(columns, axis=0)
        direction = columns / spacing
        return cls(
            size=tuple(int(s) for s in size_ijk),
            origin=tuple(float(v) for v in lps[:3, 3]),
            spacing=tuple(float(s) for s in spacing),
            direction=tuple(float(v) for v in direction.reshape(-1)),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Return the numpy (k, j, i) shape of arrays on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Return voxel spacing in numpy (k, j, i) axis order."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @property
    def voxel_volume(self) -> float:
        """Return one voxel's volume in mm^3."""
        return float(np.prod(self.spacing))

    @property
    def direction_matrix(self) -> np.ndarray:
        """Return the 3x3 direction cosine matrix (columns = i, j, k axes in LPS)."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def ijk_to_lps(self) -> np.ndarray:
        """Return the 4x4 homogeneous matrix mapping (i,j,k,1) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """Return the 4x4 IJK-to-RAS matrix as Slicer volume nodes store it."""
        return LPS_TO_RAS @ self.ijk_to_lps()

    def ijk_to_ras_points(self, ijk: np.ndarray) -> np.ndarray:
        """Return RAS coordinates of (N,3) continuous i,j,k indices."""
        pts = np.atleast_2d(np.asarray(ijk, dtype=float))
        m = self.ijk_to_ras()
        return pts @ m[:3, :3].T + m[:3, 3]

    def ras_to_ijk_points(self, ras: np.ndarray) -> np.ndarray:
        """Return continuous i,j,k indices of (N,3) RAS points."""
        pts = np.atleast_2d(np.asarray(ras, dtype=float))
        m = np.linalg.inv(self.ijk_to_ras())
        return pts @ m[:3, :3].T + m[:3, 3]

    def contains_index(self, ijk: Sequence[int]) -> bool:
        """Return True if the integer i,j,k index lies inside the grid."""
        return all(0 <= int(v) < s for v, s in zip(ijk, self.size))

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Stamp this geometry's origin, spacing and direction onto ``image`` (sizes must match) and return it."""
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} does not match geometry size {self.size}")
        image.SetOrigin(self.origin)
        image.SetSpacing(self.spacing)
        image.SetDirection(self.direction)
        return image

    def almost_equal(self, other: "Geometry", rtol: float = 1e-4, atol: float = 1e-3) -> bool:
        """Return True if both grids coincide up to floating-point noise in the header."""
        return (
            self.size == other.size
            and np.allclose(self.spacing, other.spacing, rtol=rtol, atol=atol)
            and np.allclose(self.origin, other.origin, rtol=rtol, atol=atol)
            and np.allclose(self.direction, other.direction, atol=atol)
        )

    def physical_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (min, max) corners in LPS mm of the axis-aligned box around the voxel centres."""
        corners = np.array(
            [[i, j, k] for i in (0, self.size[0] - 1) for j in (0, self.size[1] - 1) for k in (0, self.size[2] - 1)],
            dtype=float,
        )
        m = self.ijk_to_lps()
        pts = corners @ m[:3, :3].T + m[:3, 3]
        return pts.min(axis=0), pts.max(axis=0)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable description of this grid."""
        return {
            "size_ijk": list(self.size),
            "origin_lps": list(self.origin),
            "spacing": list(self.spacing),
            "direction": list(self.direction),
        }


def array_to_image(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """Return a SimpleITK image holding a k,j,i ``array`` on ``geometry``'s grid."""
    arr = np.asarray(array)
    if arr.shape != geometry.shape:
        raise ValueError(f"array shape {arr.shape} (k,j,i) does not match grid shape {geometry.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    image = sitk.GetImageFromArray(arr)
    return geometry.apply_to(image)


def boxes_overlap(a: Geometry, b: Geometry) -> bool:
    """Return True if the physical extents of the two grids intersect."""
    amin, amax = a.physical_bounds()
    bmin, bmax = b.physical_bounds()
    # half a voxel of slack so touching grids count as overlapping
    slack = 0.5 * (np.asarray(a.spacing) + np.asarray(b.spacing)).max()
    return bool(np.all(amin <= bmax + slack) and np.all(bmin <= amax + slack))


def resample_to(
    image: sitk.Image, reference: Geometry, interpolator: int = sitk.sitkLinear, default_value: float = 0.0
) -> sitk.Image:
    """Return ``image`` resampled onto ``reference``'s grid (identity transform in physical space)."""
    ref = sitk.Image([int(s) for s in reference.size], image.GetPixelID())
    reference.apply_to(ref)
    return sitk.Resample(image, ref, sitk.Transform(), interpolator, default_value, image.GetPixelID())
