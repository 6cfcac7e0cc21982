"""Cropping, in one place: box computation, clipping to the image, padding, cropping and pasting back.

Explainers, metrics and probes evaluate the network on a lesion-centred crop instead of the whole
volume. A :class:`CropBox` is a k,j,i region of the full grid plus zero padding (the normalised
background) that brings it to a network-friendly shape; it crops (:meth:`CropBox.extract`) and pastes
back (:meth:`CropBox.insert`). Boxes are grown to a multiple of the network's size divisor inside the
image where possible and padded only where the image ends; boxes a strided U-Net is evaluated on start
on multiples of that divisor (:func:`align_box`, :func:`aligned_lesion_box`), the only shifts it
commutes with. Per-voxel windows inside a crop (max aggregation) use the same arithmetic
(:func:`align_down`, :func:`round_up`; :mod:`LesionXAILib.explain.windows`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.errors import InstanceError, ParameterError

ArrayLike = np.ndarray | torch.Tensor


def round_up(n: int, divisor: int) -> int:
    """Return the smallest multiple of ``divisor`` that is >= ``n``."""
    return int(math.ceil(n / divisor) * divisor)


def align_down(n: int, divisor: int) -> int:
    """Return the largest multiple of ``divisor`` that is <= ``n``."""
    return (int(n) // divisor) * divisor


@dataclass(frozen=True)
class CropBox:
    """A k,j,i region of a full grid plus zero padding that brings it to a network-friendly shape."""

    slices: tuple[slice, slice, slice]
    pad: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]
    full_shape: tuple[int, int, int]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Return the k,j,i shape of the (padded) crop."""
        return tuple(s.stop - s.start + a + b for s, (a, b) in zip(self.slices, self.pad))

    @property
    def is_full(self) -> bool:
        """Return True if the box covers the whole grid without padding."""
        return all(s.start == 0 and s.stop == n for s, n in zip(self.slices, self.full_shape)) and not any(
            a or b for a, b in self.pad
        )

    @property
    def inner(self) -> tuple[slice, slice, slice]:
        """Return the slices of the crop that hold image data (excluding padding)."""
        return tuple(slice(a, a + s.stop - s.start) for s, (a, _) in zip(self.slices, self.pad))

    def extract(self, array: ArrayLike, fill: float = 0.0) -> ArrayLike:
        """Return the crop of ``array`` (..., k, j, i), padded with ``fill``; numpy or torch in, same out."""
        lead = (slice(None),) * (array.ndim - 3)
        sub = array[lead + self.slices]
        if not any(a or b for a, b in self.pad):
            return sub
        if isinstance(sub, torch.Tensor):
            flat = [v for pair in reversed(self.pad) for v in pair]
            return torch.nn.functional.pad(sub, flat, mode="constant", value=fill)
        widths = [(0, 0)] * (array.ndim - 3) + list(self.pad)
        return np.pad(sub, widths, mode="constant", constant_values=fill)

    def insert(self, crop: ArrayLike, fill: float = 0.0) -> np.ndarray:
        """Return a full-grid numpy array (..., k, j, i) holding ``crop``'s image part, ``fill`` elsewhere."""
        c = crop.detach().cpu().numpy() if isinstance(crop, torch.Tensor) else np.asarray(crop)
        lead_shape = c.shape[:-3]
        # np.zeros maps untouched pages lazily: a small crop in a large grid costs only the crop
        if fill == 0:
            out = np.zeros(lead_shape + tuple(self.full_shape), dtype=c.dtype)
        else:
            out = np.full(lead_shape + tuple(self.full_shape), fill, dtype=c.dtype)
        lead = (slice(None),) * len(lead_shape)
        out[lead + self.slices] = c[lead + self.inner]
        return out

    def to_dict(self) -> dict:
        """Return a JSON-serialisable description (start/stop per k,j,i axis and padding)."""
        return {
            "start_kji": [s.start for s in self.slices],
            "stop_kji": [s.stop for s in self.slices],
            "pad_kji": [list(p) for p in self.pad],
        }


def full_box(shape: Sequence[int], divisor: int = 1) -> CropBox:
    """Return a box covering the whole grid, padded at the end of each axis up to ``divisor``."""
    shape = tuple(int(s) for s in shape)
    pad = tuple((0, round_up(s, divisor) - s) for s in shape)
    return CropBox(tuple(slice(0, s) for s in shape), pad, shape)


def box_around(
    lo: Sequence[int], hi: Sequence[int], shape: Sequence[int], divisor: int = 1, min_size: Sequence[int] = (0, 0, 0)
) -> CropBox:
    """Return a box containing voxels lo..hi-1 (k,j,i), grown to a multiple of ``divisor`` and ``min_size``.

    Growth is symmetric and stays inside the image when it can; only the remainder is padding.
    """
    slices, pads = [], []
    for a, b, n, m in zip(lo, hi, shape, min_size):
        a, b, n = max(0, int(a)), min(int(n), int(b)), int(n)
        if b <= a:
            raise ParameterError(f"empty region [{a}, {b}) on an axis of length {n}")
        want = max(b - a, int(m))
        want = round_up(want, divisor)
        extra = want - (b - a)
        take = min(extra, n - (b - a))  # how much of the growth the image itself can supply
        before = take // 2
        a2 = a - before
        b2 = b + (take - before)
        if a2 < 0:
            b2 += -a2
            a2 = 0
        if b2 > n:
            a2 -= b2 - n
            b2 = n
        a2 = max(a2, 0)
        slices.append(slice(a2, b2))
        rest = want - (b2 - a2)
        pads.append((rest // 2, rest - rest // 2))
    return CropBox(tuple(slices), tuple(pads), tuple(int(s) for s in shape))


def margin_voxels(margin_mm: float | Sequence[float], spacing_kji: Sequence[float]) -> tuple[int, int, int]:
    """Return the per-axis (k,j,i) voxel count covering ``margin_mm`` millimetres."""
    m = np.broadcast_to(np.asarray(margin_mm, dtype=float), (3,))
    if np.any(m < 0):
        raise ParameterError(f"margin must be >= 0 mm, got {margin_mm}")
    return tuple(int(math.ceil(v / s - 1e-9)) for v, s in zip(m, spacing_kji))


def lesion_box(
    mask: np.ndarray,
    spacing_kji: Sequence[float],
    margin_mm: float | Sequence[float],
    divisor: int = 1,
    min_size: Sequence[int] = (0, 0, 0),
) -> CropBox:
    """Return the box around ``mask``'s voxels grown by ``margin_mm`` (honouring anisotropic spacing)."""
    lo, hi = mask_bounds(mask)
    mv = np.array(margin_voxels(margin_mm, spacing_kji))
    return box_around(lo - mv, hi + mv, mask.shape, divisor, min_size)


def align_box(box: CropBox, divisor: int) -> CropBox:
    """Return the smallest box holding ``box``'s image part whose start on every axis is a multiple of ``divisor``.

    A strided U-Net is shift-equivariant only for shifts by its size divisor, so a crop evaluated in
    place of the whole volume must start on that grid; the box is padded (at the end, as
    :func:`full_box` does) only where the image ends before a multiple of ``divisor``.
    """
    if divisor < 1:
        raise ParameterError(f"divisor must be >= 1, got {divisor}")
    slices, pads = [], []
    for s, n in zip(box.slices, box.full_shape):
        a = align_down(s.start, divisor)
        b = min(int(n), round_up(s.stop, divisor))
        want = round_up(b - a, divisor)
        slices.append(slice(a, b))
        pads.append((0, want - (b - a)))
    return CropBox(tuple(slices), tuple(pads), box.full_shape)


def grow_aligned(box: CropBox, shape: Sequence[int], divisor: int) -> CropBox:
    """Return a box of exactly ``shape`` (multiples of ``divisor``) holding ``box``'s image part, starting on the ``divisor`` grid.

    ``box`` must start on that grid (see :func:`align_box`). The growth is split around the box in steps
    of ``divisor`` and kept inside the image where the image allows; what the image cannot supply is padding at the end.
    """
    slices, pads = [], []
    for s, n, cur, want in zip(box.slices, box.full_shape, box.shape, shape):
        want, n = int(want), int(n)
        if want % divisor or want < cur or s.start % divisor:
            raise ParameterError(f"cannot grow an axis of {cur} voxels starting at {s.start} to {want} on a grid of {divisor}")
        start = max(0, s.start - align_down((want - cur) // 2, divisor))
        if start + want > n and n >= want:  # the image ends first: move towards its start if the grid allows
            earlier = align_down(n - want, divisor)
            if earlier < start and earlier + want >= s.stop:
                start = earlier
        stop = min(n, start + want)
        slices.append(slice(start, stop))
        pads.append((0, want - (stop - start)))
    return CropBox(tuple(slices), tuple(pads), box.full_shape)


def ladder_size(n: int, divisor: int, ratio: float = 1.25) -> int:
    """Return the smallest size >= ``n`` on the ladder divisor x ratio^k (k = 0, 1, ...), rounded up to ``divisor``.

    Crops rounded up to a few ladder sizes share shapes, so several can be stacked in one batched pass.
    """
    size = float(divisor)
    while round_up(int(math.ceil(size - 1e-9)), divisor) < n:
        size *= ratio
    return round_up(int(math.ceil(size - 1e-9)), divisor)


def aligned_lesion_box(
    mask: np.ndarray, spacing_kji: Sequence[float], margin_mm: float | Sequence[float], divisor: int
) -> CropBox:
    """Return the box around ``mask`` grown by ``margin_mm``, then extended to start on multiples of ``divisor``.

    Inside such a crop a strided U-Net computes exactly what it computes on the whole volume, up to the
    receptive field the margin cuts off (explainers and the context probe both evaluate on it).
    """
    return align_box(lesion_box(mask, spacing_kji, margin_mm), divisor)


def explain_box(
    mask: np.ndarray,
    spacing_kji: Sequence[float],
    margin_mm: Optional[float],
    divisor: int,
    full_volume: bool = False,
) -> CropBox:
    """Return the crop (or, with ``full_volume`` or no margin, the whole grid) the network is explained on for ``mask``."""
    if full_volume or margin_mm is None:
        return full_box(mask.shape, divisor)
    return aligned_lesion_box(mask, spacing_kji, margin_mm, divisor)


def group_by_box(boxes: Sequence[CropBox], margins: Optional[Sequence[Optional[float]]] = None) -> list[tuple[CropBox, list[int]]]:
    """Return (box, indices) for each distinct box (and margin), so instances with the same crop share forward passes.

    Only identical boxes are merged: every instance keeps the crop it would get alone, so its maps do
    not depend on which other instances are explained in the same call. ``margins`` (per box) keeps
    apart instances whose per-voxel windows differ although their boxes coincide.
    """
    groups: dict[tuple, tuple[CropBox, list[int]]] = {}
    for i, box in enumerate(boxes):
        key = (tuple((s.start, s.stop) for s in box.slices), box.pad, box.full_shape)  # slices hash only on 3.12+
        if margins is not None:
            key += (margins[i],)
        groups.setdefault(key, (box, []))[1].append(i)
    return list(groups.values())


def mask_bounds(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (lo, hi) k,j,i bounds (hi exclusive) of a non-empty 3D boolean mask (InstanceError if empty)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3 or not mask.any():
        raise InstanceError("instance mask is empty (no voxel inside the image)")
    lo, hi = [], []
    for axis in range(3):  # projections: a few times faster than np.nonzero on a whole brain
        hit = np.flatnonzero(np.any(mask, axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(hit[0]))
        hi.append(int(hit[-1]) + 1)
    return np.array(lo), np.array(hi)
