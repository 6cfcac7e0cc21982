"""Orthogonal slices through a point, in patient (RAS) space, for the report's figures.

Each view is a square grid of display pixels lying in an anatomical plane (axial, coronal, sagittal)
through a centre point given in RAS mm. Pixel centres are mapped to RAS, then to continuous voxel
indices of the input grid through its origin, spacing and direction, and sampled there (linear for
images, nearest neighbour for labels). So any acquisition (oblique, permuted axes, thick slices)
is shown in the same anatomical frame, on square pixels of ``pixel_mm``: the physical aspect ratio
holds by construction. Orientation follows 3D Slicer's default, i.e. the radiological convention:
axial and coronal views show the patient's right on the image's left; the sagittal view shows
anterior on the left; superior (or anterior, in the axial view) is up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from LesionXAILib.geometry import Geometry

ORIENTATION_NOTE = (
    "Radiological convention (as 3D Slicer): axial and coronal slices show the patient's right on the image's left; "
    "sagittal slices show anterior on the left; up is superior (anterior in axial slices)."
)


@dataclass(frozen=True)
class ViewPlane:
    """An anatomical plane: RAS unit vectors of screen-right and screen-up, and the edge letters."""

    name: str
    right: tuple[float, float, float]
    up: tuple[float, float, float]
    letters: tuple[str, str, str, str]  # patient direction at the image's left, right, top, bottom

    @property
    def normal_axis(self) -> int:
        """Return the RAS axis (0 = R, 1 = A, 2 = S) perpendicular to the plane."""
        return int(np.flatnonzero(np.abs(np.cross(self.right, self.up)) > 0.5)[0])


AXIAL = ViewPlane("axial", (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), ("R", "L", "A", "P"))
CORONAL = ViewPlane("coronal", (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0), ("R", "L", "S", "I"))
SAGITTAL = ViewPlane("sagittal", (0.0, -1.0, 0.0), (0.0, 0.0, 1.0), ("A", "P", "S", "I"))
VIEWS = (AXIAL, CORONAL, SAGITTAL)


@dataclass(frozen=True)
class SliceGrid:
    """A square grid of ``n`` x ``n`` display pixels of ``pixel_mm`` centred on ``centre_ras`` in ``view``'s plane.

    Row 0 is the top of the image; the centre pixel (n // 2, n // 2) lies exactly on ``centre_ras``.
    """

    view: ViewPlane
    centre_ras: tuple[float, float, float]
    pixel_mm: float
    n: int

    @property
    def half_extent_mm(self) -> float:
        """Return the distance in mm from the centre to the outer edge of the border pixels."""
        return (self.n / 2.0) * self.pixel_mm

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """Return matplotlib's imshow extent (left, right, bottom, top) in in-plane mm from the centre."""
        h = self.half_extent_mm
        return (-h, h, -h, h)

    def pixel_to_plane(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return in-plane mm (u to screen-right, v to screen-up) of (fractional) pixel positions."""
        c = (self.n - 1) / 2.0
        u = (np.asarray(cols, dtype=float) - c) * self.pixel_mm
        v = (c - np.asarray(rows, dtype=float)) * self.pixel_mm
        return u, v

    def plane_to_ras(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Return (N, 3) RAS points of in-plane coordinates ``u``, ``v`` (mm from the centre)."""
        u = np.asarray(u, dtype=float).reshape(-1, 1)
        v = np.asarray(v, dtype=float).reshape(-1, 1)
        return np.asarray(self.centre_ras) + u * np.asarray(self.view.right) + v * np.asarray(self.view.up)

    def pixel_to_ras(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Return (N, 3) RAS points of pixel centres (row 0 = top)."""
        return self.plane_to_ras(*self.pixel_to_plane(rows, cols))

    def ras_points(self) -> np.ndarray:
        """Return (n*n, 3) RAS points of all pixel centres, row-major."""
        rows, cols = np.mgrid[0 : self.n, 0 : self.n]
        return self.pixel_to_ras(rows.ravel(), cols.ravel())


def display_pixel_mm(geometry: Geometry, smallest: float = 0.5, largest: float = 2.0) -> float:
    """Return the display pixel size: the finest voxel spacing, kept within [smallest, largest] mm."""
    return float(min(max(min(geometry.spacing), smallest), largest))


def slice_grid(view: ViewPlane, centre_ras: Sequence[float], half_width_mm: float, pixel_mm: float) -> SliceGrid:
    """Return an odd-sized grid reaching at least ``half_width_mm`` from ``centre_ras`` (a pixel on the centre)."""
    half = int(np.ceil(half_width_mm / pixel_mm))
    return SliceGrid(view, tuple(float(v) for v in centre_ras), float(pixel_mm), 2 * half + 1)


def sample(volume: np.ndarray, geometry: Geometry, grid: SliceGrid, nearest: bool = False, outside: float = np.nan) -> np.ndarray:
    """Return the ``grid.n`` x ``grid.n`` slice of a k,j,i ``volume`` (linear, or nearest for labels); ``outside`` beyond the image."""
    from scipy.ndimage import map_coordinates

    ijk = geometry.ras_to_ijk_points(grid.ras_points())
    kji = ijk[:, ::-1].T
    shape = np.asarray(volume.shape, dtype=float)[:, None]
    # half a voxel of tolerance: voxel centres span 0..n-1, their cells -0.5..n-0.5
    inside = np.all((kji >= -0.5) & (kji <= shape - 0.5), axis=0)
    if nearest:
        idx = np.clip(np.rint(kji).astype(np.int64), 0, np.asarray(volume.shape)[:, None] - 1)
        values = np.asarray(volume)[idx[0], idx[1], idx[2]].astype(np.float64)
    else:
        values = map_coordinates(np.asarray(volume, dtype=np.float32), np.clip(kji, 0, shape - 1), order=1, mode="nearest")
    values = np.where(inside, values, outside)
    return values.reshape(grid.n, grid.n)
