"""MS-like lesion shapes: perturbed ellipsoids and multi-lobed blobs with a partial-volume edge.

A shape is an implicit function rho(x) (< 1 inside) in coordinates normalised by the main
ellipsoid's semi-axes, so the same shape can be scaled to any volume exactly; its lesion
fraction on a grid is f = clip(0.5 + (1 - rho) R / edge, 0, 1) (f >= 0.5 is the lesion).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError

SHAPES = ("ovoid", "irregular", "sphere")
N_WAVES = 6
_CALIBRATION_POINTS = 40


@dataclass(frozen=True)
class LesionShape:
    """One lesion's geometry in k,j,i millimetres around ``center_kji`` (continuous voxel indices)."""

    shape: str
    radii_mm: tuple[float, float, float]
    rotation: tuple[float, ...]  # 3x3 row-major; column n = direction of semi-axis n (k,j,i mm frame)
    lobes: tuple[tuple[float, ...], ...]  # (offset k,j,i, radii k,j,i), in units of the main semi-axes
    waves: tuple[tuple[float, ...], ...]  # (wave vector k,j,i, phase) of the boundary perturbation
    roughness: float
    edge_mm: float
    center_kji: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def rotation_matrix(self) -> np.ndarray:
        """Return the 3x3 rotation whose columns are the semi-axis directions."""
        return np.asarray(self.rotation, dtype=float).reshape(3, 3)

    @property
    def extent_mm(self) -> float:
        """Return a radius (mm) beyond which the lesion fraction is zero."""
        reach = max(np.linalg.norm(lobe[:3]) + max(lobe[3:]) for lobe in self.lobes)
        return float(max(self.radii_mm) * reach * (1.0 + 3.0 * self.roughness) + self.edge_mm)

    @property
    def mean_radius_mm(self) -> float:
        """Return the geometric mean of the main semi-axes (mm)."""
        return float(np.prod(self.radii_mm) ** (1.0 / 3.0))

    def at(self, center_kji: Sequence[float]) -> "LesionShape":
        """Return the same shape centred at ``center_kji``."""
        return replace(self, center_kji=tuple(float(c) for c in center_kji))


def _random_rotation(rng: np.random.Generator, first_axis: Optional[np.ndarray] = None) -> np.ndarray:
    """Return a random rotation; its first column is ``first_axis`` when given."""
    if first_axis is None or not np.all(np.isfinite(first_axis)) or np.linalg.norm(first_axis) < 1e-6:
        q, r = np.linalg.qr(rng.standard_normal((3, 3)))
        return q * np.sign(np.diag(r))
    a = np.asarray(first_axis, dtype=float) / np.linalg.norm(first_axis)
    helper = rng.standard_normal(3)
    helper -= helper.dot(a) * a
    if np.linalg.norm(helper) < 1e-6:
        helper = np.eye(3)[int(np.argmin(np.abs(a)))] - a * a[int(np.argmin(np.abs(a)))]
    b = helper / np.linalg.norm(helper)
    return np.stack([a, b, np.cross(a, b)], axis=1)


def implicit_radius(lesion: LesionShape, u: np.ndarray) -> np.ndarray:
    """Return rho (< 1 inside) at (3, N) points ``u`` given in units of the main semi-axes."""
    rho = None
    for lobe in lesion.lobes:
        off = np.asarray(lobe[:3])[:, None]
        rad = np.asarray(lobe[3:])[:, None]
        r = np.sqrt((((u - off) / rad) ** 2).sum(axis=0))
        rho = r if rho is None else np.minimum(rho, r)
    if lesion.roughness > 0 and lesion.waves:
        # the perturbation depends on the direction from the centre only, so the boundary stays star-shaped
        norm = np.linalg.norm(u, axis=0)
        direction = u / np.maximum(norm, 1e-9)
        waves = np.asarray(lesion.waves)
        bumps = np.cos(waves[:, :3] @ direction + waves[:, 3:4]).sum(axis=0) / np.sqrt(len(waves) / 2.0)
        rho = rho * (1.0 + lesion.roughness * bumps)
    return rho


def _unit_volume(lesion: LesionShape) -> float:
    """Return the volume (in semi-axis units cubed) enclosed by rho <= 1, by dense sampling."""
    reach = max(np.linalg.norm(lobe[:3]) + max(lobe[3:]) for lobe in lesion.lobes) * (1.0 + 3.0 * lesion.roughness)
    n = _CALIBRATION_POINTS
    axis = (np.arange(n) + 0.5) / n * 2.0 * reach - reach
    u = np.stack(np.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1)
    inside = implicit_radius(lesion, u) <= 1.0
    return float(inside.sum()) * (2.0 * reach / n) ** 3


def design_shape(
    rng: np.random.Generator,
    volume_mm3: float,
    shape: str = "ovoid",
    long_axis: Optional[np.ndarray] = None,
    elongation: Optional[float] = None,
    edge_mm: float = 1.0,
) -> LesionShape:
    """Return a random lesion of ``shape`` whose rho <= 1 region encloses ``volume_mm3`` (continuum volume).

    ``long_axis`` (k,j,i mm frame) orients the longest semi-axis, e.g. away from the ventricles.
    """
    if shape not in SHAPES:
        raise ParameterError(f"lesion shape must be one of {SHAPES}, got '{shape}'")
    if not volume_mm3 > 0:
        raise ParameterError(f"lesion volume must be > 0 mm^3, got {volume_mm3}")
    if shape == "sphere":
        axes = np.ones(3)
        lobes = ((0.0, 0.0, 0.0, 1.0, 1.0, 1.0),)
        roughness, waves = 0.0, ()
    else:
        e = float(elongation) if elongation is not None else rng.uniform(1.1, 2.0)
        short = rng.uniform(0.75, 1.0)
        axes = np.array([e, 1.0, short])
        lobes = [(0.0, 0.0, 0.0, 1.0, 1.0, 1.0)]
        if shape == "irregular":
            for _ in range(int(rng.integers(1, 4))):
                d = rng.standard_normal(3)
                d *= rng.uniform(0.5, 0.9) / np.linalg.norm(d)
                lobes.append(tuple(d) + tuple(rng.uniform(0.4, 0.75, 3)))
            roughness = rng.uniform(0.08, 0.15)
        else:
            roughness = rng.uniform(0.02, 0.07)
        lobes = tuple(tuple(float(v) for v in lobe) for lobe in lobes)
        k = rng.standard_normal((N_WAVES, 3))
        k *= (rng.uniform(1.5, 3.0, N_WAVES) / np.linalg.norm(k, axis=1))[:, None]
        waves = tuple(tuple(float(v) for v in row) + (float(rng.uniform(0, 2 * np.pi)),) for row in k)
    rotation = _random_rotation(rng, long_axis)
    draft = LesionShape(
        shape=shape,
        radii_mm=tuple(float(a) for a in axes),
        rotation=tuple(rotation.reshape(-1)),
        lobes=lobes,
        waves=waves,
        roughness=float(roughness),
        edge_mm=float(edge_mm),
    )
    unit = _unit_volume(draft) * float(np.prod(axes))
    scale = (float(volume_mm3) / unit) ** (1.0 / 3.0)
    return replace(draft, radii_mm=tuple(float(a * scale) for a in axes))


def lesion_fraction(
    lesion: LesionShape, grid_shape_kji: Sequence[int], spacing_kji: Sequence[float]
) -> Optional[tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray]]:
    """Return (k,j,i slices of a local box, lesion fraction f in it, rho in it), or None if off the grid.

    Only the 26-connected piece of f >= 0.5 holding the most voxels is kept at f >= 0.5, so a
    lesion is one ground-truth component.
    """
    import cc3d

    spacing = np.asarray(spacing_kji, dtype=float)
    center = np.asarray(lesion.center_kji, dtype=float)
    half = np.ceil(lesion.extent_mm / spacing).astype(int) + 1
    lo = np.maximum(np.floor(center).astype(int) - half, 0)
    hi = np.minimum(np.floor(center).astype(int) + half + 2, np.asarray(grid_shape_kji))
    if np.any(hi <= lo):
        return None
    axes = [(np.arange(a, b) - c) * s for a, b, c, s in zip(lo, hi, center, spacing)]
    x = np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)
    u = (lesion.rotation_matrix.T @ x) / np.asarray(lesion.radii_mm)[:, None]
    rho = implicit_radius(lesion, u).reshape(tuple(hi - lo))
    f = np.clip(0.5 + (1.0 - rho) * lesion.mean_radius_mm / lesion.edge_mm, 0.0, 1.0).astype(np.float32)
    core = f >= 0.5
    if core.any():
        labels = cc3d.connected_components(np.ascontiguousarray(core), connectivity=26)
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        stray = core & (labels != int(np.argmax(counts)))
        f[stray] = np.minimum(f[stray], 0.45)
    slices = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    return slices, f, rho.astype(np.float32)
