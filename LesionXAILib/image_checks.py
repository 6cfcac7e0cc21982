"""Checks on image files and arrays that SimpleITK does not make: declared size, stored data length, finiteness.

- Declared size: a header can claim any size; the claim is checked against a voxel limit before the
  reader allocates (a 116-byte file declaring 700^3 voxels would otherwise allocate gigabytes).
- Stored data length: ITK's NIfTI reader pads a truncated file with zeros and returns normally, for every
  data type, so the stored bytes are counted against the header (NRRD and MetaImage readers refuse it).
- Finite model output: a network that returns NaN must stop the run, not produce "0 instances".
"""

from __future__ import annotations

import gzip
import math
import os
import re
import zlib
from pathlib import Path
from typing import Any, Optional

import numpy as np

from LesionXAILib.errors import InputImageError, LesionXAIError

# 512^3 = 134M voxels: above the largest clinical 3D MRI (0.5 mm isotropic whole-head FLAIR is about
# 512 x 512 x 400 = 105M voxels), and small enough that the pipeline's few float32 copies of such a
# volume (0.5 GB each) fit a workstation. Raise it with --max-image-voxels or LESIONXAI_MAX_VOXELS.
DEFAULT_MAX_VOXELS = 512**3
MAX_VOXELS_ENV = "LESIONXAI_MAX_VOXELS"
NIFTI_SUFFIXES = (".nii", ".nii.gz")
_CHUNK = 1 << 22
_ERROR_MARK = re.compile(r"(?:itk::ERROR|ITK ERROR|sitk::ERROR):\s*")
_OBJECT = re.compile(r"^\w+\(0x[0-9a-fA-F]+\):\s*")
_TRACE = re.compile(r"^\[\w+\]\s*\w+:\s*")


def max_voxels() -> int:
    """Return the voxel limit for images read from disk (LESIONXAI_MAX_VOXELS, else DEFAULT_MAX_VOXELS)."""
    text = os.environ.get(MAX_VOXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_VOXELS
    try:
        value = int(float(text))
    except ValueError:
        raise LesionXAIError(f"{MAX_VOXELS_ENV}='{text}' is not a number of voxels") from None
    if value < 1:
        raise LesionXAIError(f"{MAX_VOXELS_ENV}='{text}' must be a positive number of voxels")
    return value


def set_max_voxels(value: int) -> None:
    """Set the voxel limit for this process and the worker processes it starts (through the environment)."""
    os.environ[MAX_VOXELS_ENV] = str(int(value))


def check_declared_size(size: tuple[int, ...], components: int, where: str, limit: Optional[int] = None) -> None:
    """Raise InputImageError if a header's declared voxel count exceeds the limit (checked before reading data)."""
    limit = max_voxels() if limit is None else limit
    voxels = math.prod(int(s) for s in size) * max(1, int(components))
    if voxels > limit:
        raise InputImageError(
            f"{where}: declares {' x '.join(str(int(s)) for s in size)} = {voxels:,} voxels, more than the limit of "
            f"{limit:,} (a guard against corrupt or hostile headers; raise it with --max-image-voxels or {MAX_VOXELS_ENV})"
        )


def _header_reader(path: str | os.PathLike) -> tuple[Any, Optional[str]]:
    """Return (SimpleITK ImageFileReader of ``path`` after reading its header, None) or (reader, why it failed)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        return reader, itk_reason(exc)
    return reader, None


def read_header(path: str | os.PathLike, where: str):
    """Return a SimpleITK ImageFileReader for ``path`` whose header was read and whose declared size is within the limit."""
    reader, problem = _header_reader(path)
    if problem is not None:
        raise InputImageError(f"{where}: cannot be read ({problem})")
    check_declared_size(reader.GetSize(), reader.GetNumberOfComponents(), where)
    return reader


def itk_reason(exc: BaseException | str) -> str:
    """Return the informative part of a multi-line ITK exception message, on one line.

    ITK messages start with a source location, then 'itk::ERROR: Class(0x...): what', sometimes followed
    by a library's own trace whose last line is the actual cause (NRRD: '[nrrd] fn: expected N bytes ...').
    """
    lines = [" ".join(line.split()) for line in str(exc).splitlines() if line.strip()]
    for n, line in enumerate(lines):
        mark = _ERROR_MARK.search(line)
        if mark is None:
            continue
        head = _OBJECT.sub("", line[mark.end() :]).strip()
        tail = [_TRACE.sub("", t).strip() for t in lines[n + 1 :] if not t.startswith("Reason:")]
        tail = [t for t in tail if t]
        if tail:
            return f"{head.rstrip(':')}: {tail[-1]}" if head else tail[-1]
        return head or line
    useful = [line for line in lines if not line.startswith(("Exception thrown", "Location:", "File:", "Line:"))]
    return (useful or lines or ["unreadable"])[-1]


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_data_problem(path: str | os.PathLike) -> Optional[str]:
    """Return why a NIfTI file's stored data is shorter than its header declares, or None when it is complete."""
    import nibabel

    p = Path(path)
    try:
        header = nibabel.load(str(p)).header
        offset = int(header.get_data_offset())
        shape = header.get_data_shape()
        itemsize = np.dtype(header.get_data_dtype()).itemsize
    except Exception:  # nibabel cannot parse the header: ITK's reader decides
        return None
    expected = offset + math.prod(int(s) for s in shape) * itemsize
    if p.name.lower().endswith(".gz"):
        stored = 0
        try:
            with gzip.open(p, "rb") as fh:
                while stored < expected:
                    chunk = fh.read(min(_CHUNK, expected - stored))
                    if not chunk:
                        break
                    stored += len(chunk)
        except (EOFError, zlib.error, OSError) as exc:
            return f"its compressed data is truncated or corrupt after {stored:,} of {expected:,} bytes ({type(exc).__name__})"
    else:
        stored = p.stat().st_size
    if stored < expected:
        return f"holds {max(stored - offset, 0):,} of the {expected - offset:,} data bytes its header declares (truncated)"
    return None


def check_data_length(path: str | os.PathLike, where: str) -> None:
    """Raise InputImageError if the image file at ``path`` stores less data than its header declares."""
    p = Path(path)
    if _is_nifti(p):
        problem = nifti_data_problem(p)
        if problem:
            raise InputImageError(f"{where}: {problem}")


def verify_written_image(tmp: Path, image: Any, final: Path) -> None:
    """Raise OutputWriteError unless the file ``tmp`` re-reads as ``image``'s size and stores all of its data."""
    from LesionXAILib.atomic_write import OutputWriteError

    reader, problem = _header_reader(tmp)
    if problem is not None:
        raise OutputWriteError(f"could not write '{final}': the written header cannot be read back ({problem})")
    if tuple(reader.GetSize()) != tuple(image.GetSize()) or reader.GetNumberOfComponents() != image.GetNumberOfComponentsPerPixel():
        raise OutputWriteError(f"could not write '{final}': the written header declares size {reader.GetSize()}, not {image.GetSize()}")
    if _is_nifti(tmp):
        problem = nifti_data_problem(tmp)
        if problem:
            raise OutputWriteError(f"could not write '{final}': the written file {problem} (disk full?)")
    else:  # the NRRD and MetaImage readers fail on missing data: a full read is the check
        try:
            reader.Execute()
        except RuntimeError as exc:
            raise OutputWriteError(f"could not write '{final}': the written file cannot be read back ({itk_reason(exc)})") from None


def check_finite_output(values: np.ndarray, what: str = "model output") -> np.ndarray:
    """Return ``values`` after checking every element is finite; a NaN/inf network output raises LesionXAIError."""
    arr = np.asarray(values)
    if arr.dtype.kind in "fc":
        finite = np.isfinite(arr)
        if not finite.all():
            bad = int(arr.size - np.count_nonzero(finite))
            raise LesionXAIError(
                f"{what}: the network returned {bad:,} NaN or infinite values of {arr.size:,} (broken or incompatible "
                "weights, or inputs outside what the model was trained on); no result was written"
            )
    return values
