"""The resolved canonical <-> model array mapping of a contract for one image grid (exact, differentiable).

A :class:`ModelSpace` is what an :class:`~LesionXAILib.models.contract.InputContract` becomes once the
FLAIR's direction and spacing are known: a permutation of the three spatial axes, a flip per axis
and, when the contract resamples, a zoom factor per axis. Permutations and flips are exact and
their own adjoints, so gradients come back onto the FLAIR grid without interpolation.

Crops stay exact under a flip: a strided network's sampling grid is anchored at the first voxel
of the tensor it is given, which after a flip is the *last* canonical voxel. LesionXAI's whole-volume
reference is padded at the end of every canonical axis to a multiple of the size divisor and its
crops start and end on multiples of it, so both ends of every crop sit on the same grid and the
anchor moves consistently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.models.contract import InputContract

IDENTITY_PERM = (0, 1, 2)


@dataclass(frozen=True)
class ModelSpace:
    """Model array axis m holds canonical (k, j, i) axis ``perm[m]``, reversed where ``flips[m]``; ``zoom`` resamples."""

    perm: tuple[int, int, int] = IDENTITY_PERM
    flips: tuple[bool, bool, bool] = (False, False, False)
    zoom: Optional[tuple[float, float, float]] = None  # model-axis input spacing / target spacing

    @property
    def is_identity(self) -> bool:
        """Return True if the model sees the canonical array unchanged."""
        return self.perm == IDENTITY_PERM and not any(self.flips) and self.zoom is None

    @property
    def inverse_perm(self) -> tuple[int, int, int]:
        """Return the permutation taking model axes back to canonical (k, j, i) order."""
        inv = [0, 0, 0]
        for m, c in enumerate(self.perm):
            inv[c] = m
        return tuple(inv)

    def _flip_dims(self, lead: int) -> list[int]:
        return [lead + m for m, f in enumerate(self.flips) if f]

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Return a (..., k, j, i) canonical tensor permuted and flipped into model axis order (no resampling)."""
        lead = x.ndim - 3
        y = x.permute(*range(lead), *(lead + p for p in self.perm)) if self.perm != IDENTITY_PERM else x
        dims = self._flip_dims(lead)
        return torch.flip(y, dims) if dims else y

    def to_canonical(self, y: torch.Tensor) -> torch.Tensor:
        """Return a (..., model axes) tensor flipped and permuted back into canonical (k, j, i) order."""
        lead = y.ndim - 3
        dims = self._flip_dims(lead)
        z = torch.flip(y, dims) if dims else y
        if self.perm == IDENTITY_PERM:
            return z
        return z.permute(*range(lead), *(lead + p for p in self.inverse_perm))

    def model_shape(self, canonical_shape: Sequence[int]) -> tuple[int, int, int]:
        """Return the model-space spatial shape of a canonical (k, j, i) shape, before resampling."""
        return tuple(int(canonical_shape[p]) for p in self.perm)

    def resampled_shape(self, model_shape: Sequence[int]) -> tuple[int, int, int]:
        """Return the model-space shape after resampling to the target spacing (unchanged without one)."""
        if self.zoom is None:
            return tuple(int(s) for s in model_shape)
        return tuple(max(1, int(round(s * z))) for s, z in zip(model_shape, self.zoom))

    def canonical_roi(self, model_roi: Sequence[int]) -> tuple[int, int, int]:
        """Return the canonical (k, j, i) window covering a model-space window of ``model_roi`` voxels."""
        roi = [int(v) for v in model_roi]
        if self.zoom is not None:
            roi = [max(1, int(round(r / z))) for r, z in zip(roi, self.zoom)]
        return tuple(roi[m] for m in self.inverse_perm)

    def describe(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (canonical axis letters per model axis, flips, zoom)."""
        return {
            "model_axes": "".join("kji"[p] for p in self.perm),
            "flipped_model_axes": [m for m, f in enumerate(self.flips) if f],
            "zoom": None if self.zoom is None else [round(z, 6) for z in self.zoom],
        }


def orientation_axes(direction_ijk_to_ras: np.ndarray, code: str) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Return (source file axis of each reoriented axis, flip of each file axis) as MONAI ``Orientationd(code)``.

    ``direction_ijk_to_ras`` is the 4x4 (or 3x3) voxel-to-RAS matrix. The rule is nibabel's
    ``io_orientation`` / ``ornt_transform`` (the one MONAI uses): each file axis goes to the world
    axis it is closest to, an axis is flipped when it runs against the code's direction, and no
    resampling happens for oblique images.
    """
    import nibabel.orientations as nio

    affine = np.eye(4)
    m = np.asarray(direction_ijk_to_ras, dtype=float)
    affine[:3, :3] = m[:3, :3]
    src = nio.io_orientation(affine)
    dst = nio.axcodes2ornt(tuple(code))
    ornt = nio.ornt_transform(src, dst)  # row a: file axis a -> (output axis, +1/-1)
    flips = tuple(bool(ornt[a, 1] == -1) for a in range(3))
    source = tuple(int(a) for a in np.argsort(ornt[:, 0]))
    return source, flips


def resolve_space(contract: InputContract, geometry: Any = None) -> ModelSpace:
    """Return the ModelSpace of ``contract`` on ``geometry``'s grid (a Geometry; needed to reorient or resample)."""
    if contract.needs_geometry and geometry is None:
        raise ModelLoadError(
            "this model's input contract reorients or resamples, which depends on the image: bind the model to the "
            "FLAIR grid first (model.bind(geometry); segment() does it)"
        )
    source, file_flips = (0, 1, 2), (False, False, False)
    if contract.orientation != "as-stored":
        source, file_flips = orientation_axes(geometry.ijk_to_ras(), contract.orientation)
    perm, flips = [], []
    for letter in contract.axes:
        file_axis = source["ijk".index(letter)]
        perm.append(2 - file_axis)  # file axis i, j, k is canonical (k, j, i) dim 2, 1, 0
        flips.append(file_flips[file_axis])
    zoom = None
    if contract.target_spacing is not None:
        spacing_kji = geometry.spacing_kji
        zoom = tuple(float(spacing_kji[p]) / float(t) for p, t in zip(perm, contract.target_spacing))
    return ModelSpace(tuple(perm), tuple(flips), zoom)


def pad_to_multiple(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """Return (x zero-padded at the end of its last three axes to multiples of ``divisor``, original shape)."""
    shape = tuple(int(s) for s in x.shape[-3:])
    pads = [(-s) % divisor for s in shape]
    if not any(pads):
        return x, shape
    flat = [v for p in reversed(pads) for v in (0, p)]
    return F.pad(x, flat, mode="constant", value=0.0), shape


def resample(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Return a (B, C, *spatial) tensor trilinearly resampled (differentiably) to ``shape``."""
    if tuple(int(s) for s in x.shape[-3:]) == tuple(int(s) for s in shape):
        return x
    return F.interpolate(x, size=tuple(int(s) for s in shape), mode="trilinear", align_corners=False)
