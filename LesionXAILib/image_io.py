"""Reading and validating FLAIR/MPRAGE inputs and writing outputs on the reference grid (SimpleITK)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from LesionXAILib.atomic_write import write_image
from LesionXAILib.errors import InputImageError
from LesionXAILib.geometry import Geometry, array_to_image, boxes_overlap, resample_to
from LesionXAILib.image_checks import check_data_length, itk_reason, read_header

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def check_image_path(path: str | os.PathLike, role: str = "image") -> Path:
    """Return ``path`` as a Path after checking it exists and has a supported extension."""
    p = Path(path)
    if _suffix(p) not in SUPPORTED_SUFFIXES:
        raise InputImageError(
            f"{role} '{p}': unsupported file type '{_suffix(p) or p.name}' "
            f"(expected one of {', '.join(SUPPORTED_SUFFIXES)})"
        )
    if not p.exists():
        raise InputImageError(f"{role} '{p}': file not found")
    if not p.is_file():
        raise InputImageError(f"{role} '{p}': not a regular file")
    return p


def validate_image(image: sitk.Image, role: str = "image", source: str = "") -> sitk.Image:
    """Return ``image`` as a float32 3D scalar image, or raise InputImageError saying what is wrong."""
    where = f"{role} '{source}'" if source else role
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(
            f"{where}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected one scalar volume"
        )
    dim = image.GetDimension()
    size = image.GetSize()
    if dim == 4 and size[3] == 1:
        image = image[:, :, :, 0]
        dim, size = 3, image.GetSize()
    if dim != 3:
        raise InputImageError(f"{where}: is {dim}D with size {tuple(size)}; expected a single 3D volume")
    if any(s < 2 for s in size):
        raise InputImageError(f"{where}: size {tuple(size)} is a 2D slice or empty; expected a 3D volume")
    arr = sitk.GetArrayViewFromImage(image)
    if arr.size == 0:
        raise InputImageError(f"{where}: image is empty")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(arr.size - np.count_nonzero(finite))
        raise InputImageError(f"{where}: contains {bad} NaN or infinite voxels")
    if float(arr.max()) == float(arr.min()):
        raise InputImageError(f"{where}: is constant (every voxel = {float(arr.min())}); nothing to segment")
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return image


def _nifti_non_finite_count(path: Path) -> int:
    """Return how many NaN/inf voxels a NIfTI file stores (ITK's NIfTI reader silently turns NaN into 0)."""
    import nibabel

    try:
        img = nibabel.load(str(path))
    except Exception:  # unreadable by nibabel: SimpleITK already read it, keep its verdict
        return 0
    if not np.issubdtype(img.get_data_dtype(), np.floating):
        return 0
    data = np.asanyarray(img.dataobj)
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def read_checked(path: str | os.PathLike, role: str = "image") -> sitk.Image:
    """Return the image at ``path`` as stored, after checking its declared size (before allocating) and data length."""
    p = check_image_path(path, role)
    where = f"{role} '{p}'"
    reader = read_header(p, where)
    check_data_length(p, where)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputImageError(f"{where}: cannot be read ({itk_reason(exc)})") from None


def read_image(path: str | os.PathLike, role: str = "image") -> sitk.Image:
    """Return the validated float32 3D image stored at ``path`` (NIfTI, NRRD or MetaImage)."""
    p = check_image_path(path, role)
    image = read_checked(p, role)
    if _suffix(p) in (".nii", ".nii.gz"):
        bad = _nifti_non_finite_count(p)
        if bad:
            raise InputImageError(f"{role} '{p}': contains {bad} NaN or infinite voxels")
    return validate_image(image, role, str(p))


def read_label_volume(path: str | os.PathLike, role: str = "label map") -> sitk.Image:
    """Return the 3D scalar label image at ``path``; missing, unreadable or non-3D files raise InputImageError."""
    p = check_image_path(path, role)
    image = read_checked(p, role)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputImageError(f"{role} '{p}': expected a 3D scalar label volume")
    return image


def read_label_image(path: str | os.PathLike, reference: Geometry, role: str = "ground truth") -> np.ndarray:
    """Return a binary k,j,i mask from ``path`` on ``reference``'s grid (nearest-neighbour if regridded)."""
    image = read_label_volume(path, role)
    p = Path(path)
    geometry = Geometry.from_image(image)
    if not geometry.almost_equal(reference):
        if not boxes_overlap(geometry, reference):
            raise InputImageError(f"{role} '{p}': does not overlap the FLAIR field of view")
        log.warning("%s '%s' is on a different grid; resampled (nearest neighbour) onto the FLAIR grid", role, p)
        image = resample_to(image, reference, sitk.sitkNearestNeighbor)
    arr = sitk.GetArrayFromImage(image)
    if not np.isfinite(arr).all():
        raise InputImageError(f"{role} '{p}': contains NaN or infinite voxels")
    return arr > 0


@dataclass
class InputPair:
    """FLAIR and MPRAGE as k,j,i float32 arrays on the FLAIR grid, plus provenance notes."""

    flair: np.ndarray
    t1: np.ndarray
    geometry: Geometry
    flair_path: Optional[Path] = None
    t1_path: Optional[Path] = None
    notes: list[str] = field(default_factory=list)

    def stacked(self) -> np.ndarray:
        """Return the (2, k, j, i) channel stack in network order (FLAIR, MPRAGE)."""
        return np.stack([self.flair, self.t1]).astype(np.float32, copy=False)


def pair_from_images(
    flair: sitk.Image,
    t1: sitk.Image,
    flair_name: str = "FLAIR",
    t1_name: str = "MPRAGE",
) -> InputPair:
    """Return an InputPair on the FLAIR grid, resampling the MPRAGE (linear) if its grid differs."""
    flair = validate_image(flair, "FLAIR", flair_name)
    t1 = validate_image(t1, "MPRAGE", t1_name)
    ref = Geometry.from_image(flair)
    notes: list[str] = []
    t1_geometry = Geometry.from_image(t1)
    if not t1_geometry.almost_equal(ref):
        if not boxes_overlap(t1_geometry, ref):
            raise InputImageError(
                f"MPRAGE '{t1_name}': its field of view does not overlap the FLAIR '{flair_name}' "
                "(check that both belong to the same subject and are co-registered)"
            )
        t1 = resample_to(t1, ref, sitk.sitkLinear)
        note = (
            f"MPRAGE '{t1_name}' is on a different grid (size {t1_geometry.size}, spacing "
            f"{tuple(round(s, 3) for s in t1_geometry.spacing)}) and was resampled (linear) onto the FLAIR grid"
        )
        log.warning(note)
        notes.append(note)
    flair_arr = sitk.GetArrayFromImage(flair).astype(np.float32, copy=False)
    t1_arr = sitk.GetArrayFromImage(t1).astype(np.float32, copy=False)
    if float(t1_arr.max()) == float(t1_arr.min()):
        raise InputImageError(
            f"MPRAGE '{t1_name}': is constant after resampling onto the FLAIR grid (fields of view barely overlap)"
        )
    return InputPair(flair_arr, t1_arr, ref, notes=notes)


def load_pair(flair_path: str | os.PathLike, t1_path: str | os.PathLike) -> InputPair:
    """Return the FLAIR (reference grid) and MPRAGE (resampled onto it if needed) read from disk."""
    flair = read_image(flair_path, "FLAIR")
    t1 = read_image(t1_path, "MPRAGE")
    pair = pair_from_images(flair, t1, str(flair_path), str(t1_path))
    pair.flair_path = Path(flair_path)
    pair.t1_path = Path(t1_path)
    return pair


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def write_volume(
    array: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike,
    protected: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write a k,j,i ``array`` with ``geometry``'s origin/spacing/direction and return the path written.

    Refuses to write onto any path in ``protected`` (the user's inputs). The file is written under a
    temporary name, re-read (header and data length) and only then renamed (``atomic_write``).
    """
    p = Path(path)
    for q in protected:
        if q is not None and _same_file(p, Path(q)):
            raise InputImageError(f"refusing to overwrite input file '{q}'")
    p.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    return write_image(array_to_image(arr, geometry), p)


def check_output_dir(
    out_dir: str | os.PathLike,
    inputs: Sequence[Optional[str | os.PathLike]],
    allow_input_dir: bool = False,
    create: bool = True,
) -> Path:
    """Return ``out_dir`` after refusing a directory that holds an input file (unless allowed); create it if asked."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputImageError(f"output '{out}' exists and is not a directory")
    if not allow_input_dir:
        for q in inputs:
            if q is None:
                continue
            if out.exists() and _same_file(Path(q).parent, out):
                raise InputImageError(
                    f"output directory '{out}' holds the input '{q}'; choose another --out "
                    "(LesionXAI never writes next to its inputs unless asked)"
                )
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out
