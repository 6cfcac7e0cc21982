"""Per-voxel windows for max aggregation: where each lesion voxel's own gradient is computed.

Max aggregation needs one backward pass per lesion voxel (docs/methods.md#instance-target), so its cost is
(lesion voxels) x (size of the grid the network runs on). A voxel's gradient dz_v/dx is local to
that voxel, so the margin that keeps it faithful is a margin around *the voxel*, not around the
lesion's bounding box: each voxel is differentiated on the smallest grid-aligned window holding it
with ``margin`` voxels on every side (or up to the image border), and voxels that fit the same
window share its forward pass. Windows start on multiples of the network's size divisor and have
sizes that are multiples of it, the only crops a strided U-Net computes exactly as on the whole
volume; they lie inside the lesion crop (whose start is on the same grid), so the maps need no
other box. The window is chosen per axis and the 3D window is their product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from LesionXAILib.crop import align_down, round_up
from LesionXAILib.errors import ParameterError


@dataclass(frozen=True)
class VoxelWindow:
    """A grid-aligned sub-box of a crop and the lesion voxels differentiated on it (in raster order)."""

    start: tuple[int, int, int]  # k, j, i offset inside the crop
    shape: tuple[int, int, int]
    targets: tuple[int, ...]  # target index of each voxel
    voxels: tuple[tuple[int, int, int], ...]  # k, j, i of each voxel inside the window

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Return the window's k, j, i slices inside the crop."""
        return tuple(slice(a, a + n) for a, n in zip(self.start, self.shape))

    @property
    def size(self) -> int:
        """Return the number of grid voxels in the window."""
        return int(math.prod(self.shape))


def axis_windows(coords: Sequence[int], margin: int, length: int, divisor: int) -> dict[int, tuple[int, int]]:
    """Return {coordinate: (start, size)}: aligned windows covering ``coords`` with ``margin`` on both sides.

    Greedy from the lowest uncovered coordinate: its smallest window, then every later coordinate that
    window also holds with the margin (or where the window reaches the crop's end, ``length``).
    """
    if divisor < 1 or length % divisor:
        raise ParameterError(f"crop length {length} is not a multiple of the size divisor {divisor}")
    out: dict[int, tuple[int, int]] = {}
    ordered = sorted(set(int(c) for c in coords))
    for n, c in enumerate(ordered):
        if c in out:
            continue
        if not 0 <= c < length:
            raise ParameterError(f"lesion voxel {c} outside the crop of length {length}")
        start = max(0, align_down(c - margin, divisor))
        size = min(length - start, max(divisor, round_up(c + margin + 1 - start, divisor)))
        stop = start + size
        for c2 in ordered[n:]:
            if c2 + margin < stop or stop == length:
                out.setdefault(c2, (start, size))
            else:
                break
    return out


def voxel_windows(masks: torch.Tensor, margin: Sequence[int], divisor: int) -> tuple[VoxelWindow, ...]:
    """Return the windows of every voxel of the K boolean crop masks (K, k, j, i), voxels in raster order.

    ``margin`` is in voxels per k, j, i axis; the crop's shape must be a multiple of ``divisor``.
    """
    if masks.ndim != 4:
        raise ParameterError(f"target masks must be (K, k, j, i), got {tuple(masks.shape)}")
    shape = tuple(int(s) for s in masks.shape[1:])
    idx = torch.nonzero(masks.detach().to("cpu", torch.bool))
    if idx.shape[0] == 0:
        return ()
    per_axis = [axis_windows(idx[:, 1 + a].tolist(), int(margin[a]), shape[a], divisor) for a in range(3)]
    groups: dict[tuple, list[tuple[int, tuple[int, int, int]]]] = {}
    for row in idx.tolist():  # nonzero is raster order over (target, k, j, i)
        k, v = row[0], tuple(row[1:])
        key = tuple(per_axis[a][v[a]] for a in range(3))
        groups.setdefault(key, []).append((k, v))
    windows = []
    for key, members in groups.items():
        start = tuple(s for s, _ in key)
        windows.append(
            VoxelWindow(
                start=start,
                shape=tuple(n for _, n in key),
                targets=tuple(k for k, _ in members),
                voxels=tuple(tuple(c - s for c, s in zip(v, start)) for _, v in members),
            )
        )
    return tuple(windows)
