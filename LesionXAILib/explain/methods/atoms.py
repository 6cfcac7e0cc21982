"""Atoms (ML-CSC models only): the lesion rebuilt from the dictionary atoms that carry its sparse code, per sequence.

An ML-CSC segmenter's activations are sparse codes over learned dictionaries, so a lesion is explained by the
atoms its code uses. The map of one lesion is the image synthesised from its ``atoms_top`` strongest atoms of
layer ``atoms_layer`` (code energy over the lesion's cells; every other code entry zeroed), one map per
sequence, in normalised intensity units; :func:`atom_table` lists every atom's share of the lesion's code
energy per layer and sequence (formulas: :mod:`LesionXAILib.models.mlcsc_atoms`, docs/methods.md#ml-csc).
A model without sparse-coding layers is refused with a one-line error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from LesionXAILib.explain.methods.base import BatchContext, Explainer
from LesionXAILib.explain.registry import MethodSpec, register

if TYPE_CHECKING:
    import torch

NAME = "atoms"
ATOMS_UNIT = "normalised intensity (reconstruction)"
DEFAULTS = {"atoms_top": 4, "atoms_layer": 1}
ATOMS_JSON, ATOMS_NPZ = "atoms.json", "atoms.npz"
TABLE_COLUMNS = ("instance_id", "layer", "modality", "atom", "rank", "share", "energy", "active")


@dataclass(frozen=True)
class AtomSettings:
    """How many top atoms rebuild the lesion (``atoms_top``) and from which layer's code (``atoms_layer``, 1 = per sequence)."""

    atoms_top: int = DEFAULTS["atoms_top"]
    atoms_layer: int = DEFAULTS["atoms_layer"]


def _network_input(ctx_model: Any, image: torch.Tensor) -> torch.Tensor:
    """Return the crop as the network sees it: batch axis added, padded at the end to the network's size divisor."""
    import torch.nn.functional as F

    from LesionXAILib.errors import ParameterError

    if ctx_model.runs_in_model_space or not ctx_model.model_space().is_identity:
        raise ParameterError("the 'atoms' explanation needs an ML-CSC model that runs on LesionXAI's own grid (identity contract)")
    divisor = int(ctx_model.size_divisor)
    pad = [(-s) % divisor for s in image.shape[1:]]
    x = image[None]
    if any(pad):
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
    return x


class Atoms(Explainer):
    """Reconstruction of an instance from its top ML-CSC atoms: ``attribute`` returns (C, k, j, i)."""

    settings_type = AtomSettings
    method = NAME

    def __init__(self, model: Any) -> None:
        from LesionXAILib.models.mlcsc_atoms import require_mlcsc

        super().__init__(model)
        require_mlcsc(self.model)

    @classmethod
    def maps(cls, ctx: BatchContext, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """Return {'atoms': (K, C, *crop)} reconstructions of the K targets from their top atoms."""
        import torch

        from LesionXAILib.models.mlcsc_atoms import atom_shares, lesion_reconstruction, require_mlcsc

        net = require_mlcsc(ctx.model)
        settings = ctx.settings if isinstance(ctx.settings, AtomSettings) else AtomSettings()
        crop_shape = tuple(ctx.crop.image.shape[1:])
        x = _network_input(ctx.model, ctx.crop.image)
        modalities = tuple(ctx.model.config.input_order)
        out = []
        with torch.no_grad():
            codes = net.codes(x)
            for mask in ctx.crop.masks:
                full = torch.zeros(x.shape[2:], dtype=torch.bool, device=x.device)
                full[tuple(slice(0, s) for s in crop_shape)] = mask.bool()
                rows = atom_shares(net, codes, full, modalities)
                rec = lesion_reconstruction(net, codes, full, rows, modalities, settings.atoms_layer, settings.atoms_top)
                out.append(rec[(slice(None),) + tuple(slice(0, s) for s in crop_shape)])
        return {NAME: torch.stack(out).detach().cpu()}


def atom_table(model: Any, normalized: np.ndarray, targets: Sequence[Any], top: int = DEFAULTS["atoms_top"]) -> list[dict]:
    """Return one row per (instance, layer, modality, atom) with the atom's share of the lesion's code energy and its rank.

    ``targets``: InstanceTargets (``instance_id``, ``mask``) on the (k, j, i) grid of ``normalized`` (C, k, j, i).
    The code is computed on the whole image, so shares do not depend on a crop. ``rank`` 1 is the largest
    share; rows with rank > ``top`` are kept (the whole distribution), ranked all the same.
    """
    import torch

    from LesionXAILib.models.mlcsc_atoms import atom_shares, require_mlcsc

    net = require_mlcsc(model)
    param = next(net.parameters())
    image = torch.as_tensor(normalized, dtype=param.dtype, device=param.device)
    x = _network_input(model, image)
    modalities = tuple(model.config.input_order)
    rows: list[dict] = []
    with torch.no_grad():
        codes = net.codes(x)
        for target in targets:
            mask = torch.zeros(x.shape[2:], dtype=torch.bool, device=x.device)
            m = torch.as_tensor(target.mask, device=x.device).bool()
            mask[tuple(slice(0, s) for s in m.shape)] = m
            shares = atom_shares(net, codes, mask, modalities)
            for key in dict.fromkeys((r["layer"], r["modality"]) for r in shares):
                group = sorted((r for r in shares if (r["layer"], r["modality"]) == key), key=lambda r: (-r["energy"], r["atom"]))
                for rank, r in enumerate(group, start=1):
                    rows.append({"instance_id": int(target.instance_id), **r, "rank": rank})
    return rows


def atom_figures(model: Any, normalized: np.ndarray, targets: Sequence[Any], rows: list[dict],
                 top: int = DEFAULTS["atoms_top"], margin: int = 4) -> dict[str, np.ndarray]:  # fmt: skip
    """Return the arrays the report's atoms panel draws, keyed '<instance>_<what>': the lesion's crop (FLAIR, mask,
    reconstruction from its top layer-1 atoms per sequence) and its top atoms as image-space patches (layer 1 per
    sequence, and the deepest joint layer)."""
    import torch

    from LesionXAILib.models.mlcsc_atoms import atom_patches, lesion_reconstruction, require_mlcsc

    net = require_mlcsc(model)
    param = next(net.parameters())
    x = _network_input(model, torch.as_tensor(normalized, dtype=param.dtype, device=param.device))
    modalities = tuple(model.config.input_order)
    deepest = 1 + len(net.joint_layers)
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        codes = net.codes(x)
        for target in targets:
            iid = int(target.instance_id)
            mask = np.asarray(target.mask, dtype=bool)
            full = torch.zeros(x.shape[2:], dtype=torch.bool, device=x.device)
            full[tuple(slice(0, s) for s in mask.shape)] = torch.from_numpy(mask)
            mine = [{k: v for k, v in r.items() if k != "instance_id"} for r in rows if r["instance_id"] == iid]
            recon = lesion_reconstruction(net, codes, full, mine, modalities, 1, top).cpu().numpy()
            where = np.argwhere(mask)
            lo = np.maximum(where.min(0) - margin, 0)
            hi = np.minimum(where.max(0) + margin + 1, mask.shape)
            box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
            out[f"{iid}_flair"] = np.asarray(normalized[0][box], dtype=np.float32)
            out[f"{iid}_mask"] = mask[box]
            out[f"{iid}_recon"] = recon[(slice(None),) + box].astype(np.float32)
            for m, name in enumerate(modalities):
                ids = [r["atom"] for r in sorted((r for r in mine if r["layer"] == 1 and r["modality"] == name), key=lambda r: r["rank"])][:top]
                out[f"{iid}_L1_{name}_ids"] = np.asarray(ids, dtype=np.int64)
                out[f"{iid}_L1_{name}"] = atom_patches(net, 1, ids, modality=m)[:, m].astype(np.float32)
            ids = [r["atom"] for r in sorted((r for r in mine if r["layer"] == deepest), key=lambda r: r["rank"])][:top]
            out[f"{iid}_L{deepest}_ids"] = np.asarray(ids, dtype=np.int64)
            out[f"{iid}_L{deepest}"] = atom_patches(net, deepest, ids).astype(np.float32)
    return out


def write_atom_tables(out: str | os.PathLike, model: Any, normalized: np.ndarray, targets: Sequence[Any]) -> tuple[Path, Path]:
    """Write ``atoms.json`` / ``atoms.csv`` (every instance's atom shares per layer and sequence) and ``atoms.npz`` (the
    report panel's patches and reconstructions) into ``out``; return the JSON and CSV paths."""
    import io

    from LesionXAILib.atomic_write import write_bytes, write_csv, write_json

    rows = atom_table(model, normalized, targets)
    out = Path(out)
    j = write_json(out / ATOMS_JSON, {"columns": list(TABLE_COLUMNS), "rows": rows, "modalities": list(model.config.input_order),
                                      "share": "atom's code energy over the lesion's cells / all atoms' of the same layer and sequence"})  # fmt: skip
    c = write_csv(out / "atoms.csv", TABLE_COLUMNS, rows)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **atom_figures(model, normalized, targets, rows))
    write_bytes(out / ATOMS_NPZ, buffer.getvalue())
    return j, c


register(MethodSpec(
    name=NAME, title="ML-CSC atoms", unit=ATOMS_UNIT, per_sequence=True, cls=Atoms, defaults=DEFAULTS,
    description="the lesion rebuilt from the dictionary atoms carrying its sparse code (ML-CSC models only)", order=90,
))  # fmt: skip
