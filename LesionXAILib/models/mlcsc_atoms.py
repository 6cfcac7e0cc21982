"""Which dictionary atoms carry a lesion's sparse code in an ML-CSC segmenter, their image-space patches, and the lesion rebuilt from them.

Layer l's code lives on a grid 2**(l-1) times coarser than the image; a code position belongs to the lesion
when its cell (the 2**(l-1)-voxel cube it sits on) holds a lesion voxel. An atom's share is the energy
(sum of squares) of its code over the lesion's cells divided by the energy of all atoms of the same layer
(and, in layer 1, of the same sequence). The reconstruction keeps the top atoms' code over the lesion's
cells, sets every other code entry to 0 and synthesises it back through the dictionaries to the image:
layer 1 per sequence directly (D1 of that sequence), deeper layers through D_l ... D_2 and then each
sequence's D1.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from LesionXAILib.errors import ParameterError
from LesionXAILib.models.mlcsc import MLCSCSegmenter, find_mlcsc


def require_mlcsc(model: object) -> MLCSCSegmenter:
    """Return the ML-CSC network of ``model`` or raise a one-line ParameterError saying atoms need one."""
    net = find_mlcsc(model)
    if net is None:
        config = getattr(model, "config", None)
        name = getattr(config, "name", type(model).__name__)
        raise ParameterError(
            f"the 'atoms' explanation needs an ML-CSC model (sparse-coding layers, e.g. --config mlcsc); '{name}' has none"
        )
    return net


def code_grids(net: MLCSCSegmenter, shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Return the spatial grid of each layer's code for an image of ``shape`` (layer 1 first)."""
    grids = [tuple(int(s) for s in shape)]
    for layer in net.joint_layers:
        grids.append(tuple((n + 2 * layer.padding - layer.kernel_size) // layer.stride + 1 for n in grids[-1]))
    return grids


def code_region(mask: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """Return a bool mask on a code ``grid``: True where the code position's cell holds a voxel of ``mask``."""
    shape = tuple(mask.shape)
    factor = [math.ceil(s / g) for s, g in zip(shape, grid)]
    if all(f == 1 for f in factor):
        return mask.bool()
    pooled = F.max_pool3d(mask.float()[None, None], kernel_size=factor, stride=factor, ceil_mode=True)[0, 0]
    return pooled[tuple(slice(0, g) for g in grid)] > 0


def _layers(net: MLCSCSegmenter, codes: list[list[torch.Tensor]], names: Sequence[str]):
    """Yield (layer number, modality name, code (atoms, *grid)) of one image's codes."""
    for m, code in enumerate(codes[0]):
        yield 1, names[m], code[0]
    for n, (code,) in enumerate(codes[1:], start=2):
        yield n, "joint", code[0]


def atom_shares(net: MLCSCSegmenter, codes: list[list[torch.Tensor]], mask: torch.Tensor,
                modalities: Sequence[str]) -> list[dict]:  # fmt: skip
    """Return one record per (layer, modality, atom): the atom's code energy over the lesion's cells and its share of that layer's energy."""
    rows = []
    for layer, modality, code in _layers(net, codes, modalities):
        region = code_region(mask, code.shape[1:])
        energy = (code.detach().double() ** 2 * region).flatten(1).sum(1).cpu().numpy()
        total = float(energy.sum())
        for atom, e in enumerate(energy):
            rows.append({
                "layer": layer, "modality": modality, "atom": atom, "energy": float(e),
                "share": float(e / total) if total > 0 else 0.0, "active": int(((code[atom] != 0) & region).sum()),
            })  # fmt: skip
    return rows


def top_atoms(rows: list[dict], layer: int, modality: str, count: int) -> list[int]:
    """Return the ``count`` atoms with the largest share in (layer, modality), largest first (atoms with no energy left out)."""
    mine = [r for r in rows if r["layer"] == layer and r["modality"] == modality and r["energy"] > 0]
    return [r["atom"] for r in sorted(mine, key=lambda r: (-r["energy"], r["atom"]))[: int(count)]]


def synthesise(net: MLCSCSegmenter, code: torch.Tensor, layer: int, shape: Sequence[int]) -> torch.Tensor:
    """Return the (B, sequences, *shape) image a layer-``layer`` code (B, atoms, *grid) synthesises (a layer-1 code: all sequences' atoms concatenated)."""
    grids = code_grids(net, shape)
    y = code
    for n in range(layer, 1, -1):
        y = net.joint_layers[n - 2].synthesis(y, grids[n - 2])
    parts = y.split(net.atoms[0], dim=1)
    return torch.cat([net.modality_layers[m].synthesis(parts[m], shape) for m in range(net.modalities)], dim=1)


def lesion_reconstruction(net: MLCSCSegmenter, codes: list[list[torch.Tensor]], mask: torch.Tensor, rows: list[dict],
                          modalities: Sequence[str], layer: int = 1, top: int = 4) -> torch.Tensor:  # fmt: skip
    """Return the (sequences, *mask.shape) image rebuilt from the lesion's top ``top`` atoms of ``layer`` (code kept over the lesion's cells only)."""
    if not 1 <= layer <= len(codes):
        raise ParameterError(f"atoms layer must be 1..{len(codes)} for this ML-CSC network, got {layer}")
    shape = tuple(mask.shape)
    with torch.no_grad():
        if layer == 1:
            kept = []
            for m, code in enumerate(codes[0]):
                keep = torch.zeros_like(code)
                atoms = top_atoms(rows, 1, modalities[m], top)
                region = code_region(mask, code.shape[2:])
                keep[:, atoms] = code[:, atoms] * region
                kept.append(keep)
            return synthesise(net, torch.cat(kept, dim=1), 1, shape)[0]
        code = codes[layer - 1][0]
        keep = torch.zeros_like(code)
        atoms = top_atoms(rows, layer, "joint", top)
        keep[:, atoms] = code[:, atoms] * code_region(mask, code.shape[2:])
        return synthesise(net, keep, layer, shape)[0]


def atom_patches(net: MLCSCSegmenter, layer: int, atoms: Sequence[int], modality: Optional[int] = None) -> np.ndarray:
    """Return (n, sequences, p, p, p) image-space patches of ``atoms`` of ``layer``: one unit code entry synthesised to the image.

    ``modality``: for layer 1, the sequence whose dictionary the atoms belong to (its patch channel holds
    the atom, the others are 0).
    """
    stride = 2 ** (layer - 1)
    size = 5 if layer == 1 else 4 * stride
    shape = (size, size, size)
    grid = code_grids(net, shape)[layer - 1]
    channels = net.atoms[0] * net.modalities if layer == 1 else net.atoms[layer - 1]
    out = []
    with torch.no_grad():
        for atom in atoms:
            param = next(net.parameters())
            code = torch.zeros((1, channels, *grid), dtype=param.dtype, device=param.device)
            index = atom + (net.atoms[0] * int(modality or 0) if layer == 1 else 0)
            code[(0, index, *(g // 2 for g in grid))] = 1.0
            out.append(synthesise(net, code, layer, shape)[0].cpu().numpy())
    return np.stack(out) if out else np.zeros((0, net.modalities, *shape))


def modality_fractions(net: MLCSCSegmenter, layer: int, atom: int) -> list[float]:
    """Return each sequence's fraction of a joint atom's image-space energy (its patch's sum of squares per sequence)."""
    patch = atom_patches(net, layer, [atom])[0]
    energy = (patch.astype(np.float64) ** 2).reshape(patch.shape[0], -1).sum(1)
    return [float(e / energy.sum()) if energy.sum() > 0 else 0.0 for e in energy]
