"""SmoothGrad noise that depends only on (seed, sample index, voxel position), never on the crop.

The full grid is tiled in TILE^3 blocks; each (sample, tile) draws its standard normals from its
own Philox stream (key = seed, sample and tile index), so a lesion-centred crop sees exactly the
noise the full volume would see at the same voxels. ROI-versus-full comparisons then measure the
crop alone, and an instance's map does not depend on which other instances share the call.
"""

from __future__ import annotations

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.crop import CropBox

TILE = 16
_AXIS_BITS = 13  # tile index per axis < 8192, i.e. images up to 131072 voxels per axis
_SAMPLE_LIMIT = 1 << (64 - 3 * _AXIS_BITS)


def _tile_normals(seed: int, sample: int, tile: tuple[int, int, int], channels: int) -> np.ndarray:
    k, j, i = tile
    key1 = (sample << (3 * _AXIS_BITS)) | (k << (2 * _AXIS_BITS)) | (j << _AXIS_BITS) | i
    bits = np.random.Philox(key=np.array([seed, key1], dtype=np.uint64))
    return np.random.Generator(bits).standard_normal((channels, TILE, TILE, TILE), dtype=np.float32)


def positional_noise(seed: int, sample: int, box: CropBox, channels: int) -> np.ndarray:
    """Return (channels, *box.shape) float32 standard normal noise for ``box``; padding voxels get 0."""
    if not 0 <= int(seed) < 1 << 64:
        raise ParameterError(f"seed must be in [0, 2^64), got {seed}")
    if not 0 <= int(sample) < _SAMPLE_LIMIT:
        raise ParameterError(f"sample index must be in [0, {_SAMPLE_LIMIT}), got {sample}")
    if any(n > TILE << _AXIS_BITS for n in box.full_shape):
        raise ParameterError(f"image of shape {box.full_shape} too large for positional noise")
    out = np.zeros((channels,) + tuple(box.shape), dtype=np.float32)
    inner = box.inner
    lo = [s.start for s in box.slices]
    hi = [s.stop for s in box.slices]
    for tk in range(lo[0] // TILE, (hi[0] - 1) // TILE + 1):
        for tj in range(lo[1] // TILE, (hi[1] - 1) // TILE + 1):
            for ti in range(lo[2] // TILE, (hi[2] - 1) // TILE + 1):
                tile = _tile_normals(int(seed), int(sample), (tk, tj, ti), channels)
                src, dst = [], []
                for t, a, b, off in zip((tk, tj, ti), lo, hi, inner):
                    g0, g1 = max(a, t * TILE), min(b, (t + 1) * TILE)
                    src.append(slice(g0 - t * TILE, g1 - t * TILE))
                    dst.append(slice(off.start + g0 - a, off.start + g1 - a))
                out[(slice(None), *dst)] = tile[(slice(None), *src)]
    return out
