"""Template anatomy for phantoms: the MNI152 2009a 1 mm T1 and its GM/WM maps shipped inside nilearn.

The template T1 is skull-stripped, so its non-zero voxels give the brain mask; CSF is what the
mask holds beyond GM and WM. Distance maps used to place lesions (depth below the brain surface,
distance to the lateral ventricles, distance to the cortex) are computed once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry

TEMPLATE_PATTERN = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
# channel order of Anatomy.maps; the generator warps all of them with one deformation
MAP_NAMES = ("gm", "wm", "csf", "mask", "depth_mm", "ventricle_mm", "cortex_mm")
MARGIN_VOXELS = 4
# a CSF compartment whose mean depth below the brain surface exceeds this is ventricular, not sulcal
VENTRICLE_DEPTH_MM = 25.0
MIN_VENTRICLE_VOXELS = 500
# GM within this depth is cortex (deep GM nuclei lie further in)
CORTEX_DEPTH_MM = 12.0
DISTANCE_CAP_MM = 60.0


def template_dir() -> Path:
    """Return nilearn's installed data directory holding the MNI152 2009a template files."""
    try:
        import nilearn
    except ImportError:  # pragma: no cover - nilearn is a hard dependency
        raise InputImageError("phantom anatomy: the 'nilearn' package is not installed (pip install nilearn)") from None
    return Path(nilearn.__file__).resolve().parent / "datasets" / "data"


def template_path(kind: str) -> Path:
    """Return the path of the template image ``kind`` ('t1', 'gm' or 'wm'), checking that it exists."""
    p = template_dir() / TEMPLATE_PATTERN.format(kind)
    if not p.exists():
        raise InputImageError(
            f"phantom anatomy: template file '{p}' is missing from the installed nilearn "
            "(reinstall nilearn >= 0.10.3; phantoms need no network)"
        )
    return p


def sub_geometry(geometry: Geometry, start_kji: tuple[int, int, int], shape_kji: tuple[int, int, int]) -> Geometry:
    """Return the grid of the box starting at voxel ``start_kji`` with ``shape_kji`` voxels (start may be negative)."""
    start_ijk = np.asarray(start_kji[::-1], dtype=float)
    offset = geometry.direction_matrix @ (np.asarray(geometry.spacing) * start_ijk)
    return Geometry(
        size=tuple(int(s) for s in shape_kji[::-1]),
        origin=tuple(float(v) for v in np.asarray(geometry.origin) + offset),
        spacing=geometry.spacing,
        direction=geometry.direction,
    )


@dataclass(frozen=True)
class Anatomy:
    """Template maps (C, k, j, i) float32 on a 1 mm grid cropped to the brain, named by MAP_NAMES."""

    maps: np.ndarray
    geometry: Geometry

    def map(self, name: str) -> np.ndarray:
        """Return the k,j,i map called ``name`` (one of MAP_NAMES)."""
        return self.maps[MAP_NAMES.index(name)]

    @property
    def brain_center_kji(self) -> np.ndarray:
        """Return the brain mask's centroid in (continuous) k,j,i voxel indices."""
        return _centroid(self.map("mask") > 0.5)


def _centroid(mask: np.ndarray) -> np.ndarray:
    idx = np.nonzero(mask)
    return np.array([a.mean() for a in idx])


def _read(kind: str) -> tuple[np.ndarray, Geometry]:
    import SimpleITK as sitk

    image = sitk.ReadImage(str(template_path(kind)))
    return sitk.GetArrayFromImage(image).astype(np.float32) / 255.0, Geometry.from_image(image)


def _ventricles(csf: np.ndarray, depth: np.ndarray) -> np.ndarray:
    import cc3d
    from scipy import ndimage

    # 6-connectivity keeps the lateral ventricles apart from the sulcal CSF they nearly touch
    labels, n = cc3d.connected_components(np.ascontiguousarray(csf > 0.5), connectivity=6, return_N=True)
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    mean_depth = np.asarray(ndimage.mean(depth, labels, np.arange(n + 1)))
    keep = (counts >= MIN_VENTRICLE_VOXELS) & (mean_depth >= VENTRICLE_DEPTH_MM)
    keep[0] = False
    if not keep.any():
        raise InputImageError("phantom anatomy: no ventricles found in the template's CSF map")
    return keep[labels]


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Return the cached template anatomy (read from nilearn's files; about 2 s the first time)."""
    from scipy import ndimage

    t1, geometry = _read("t1")
    gm, gm_geometry = _read("gm")
    wm, wm_geometry = _read("wm")
    if not (gm_geometry.almost_equal(geometry) and wm_geometry.almost_equal(geometry)):
        raise InputImageError("phantom anatomy: nilearn's GM/WM maps are not on the T1 template's grid")
    mask = ndimage.binary_fill_holes(t1 > 0)
    # crop to the brain first so the distance transforms below stay cheap
    idx = np.nonzero(mask)
    lo = [max(int(a.min()) - MARGIN_VOXELS, 0) for a in idx]
    hi = [min(int(a.max()) + 1 + MARGIN_VOXELS, s) for a, s in zip(idx, mask.shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    mask, gm, wm = mask[box], gm[box] * mask[box], wm[box] * mask[box]
    tissue = gm + wm
    over = tissue > 1.0
    gm[over] /= tissue[over]
    wm[over] /= tissue[over]
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * mask
    spacing = geometry.spacing_kji
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    ventricles = _ventricles(csf, depth)
    ventricle_mm = ndimage.distance_transform_edt(~ventricles, sampling=spacing)
    cortex = (gm > 0.5) & (depth < CORTEX_DEPTH_MM)
    cortex_mm = ndimage.distance_transform_edt(~cortex, sampling=spacing)
    maps = np.stack(
        [
            gm,
            wm,
            csf,
            mask.astype(np.float32),
            np.minimum(depth, DISTANCE_CAP_MM),
            np.minimum(ventricle_mm, DISTANCE_CAP_MM),
            np.minimum(cortex_mm, DISTANCE_CAP_MM),
        ]
    ).astype(np.float32)
    maps.setflags(write=False)
    return Anatomy(maps=maps, geometry=sub_geometry(geometry, tuple(lo), mask.shape))
