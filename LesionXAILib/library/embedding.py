"""Lesion embeddings from the segmenter's own features: layer activations pooled over the lesion and a ring.

For lesion k with voxel mask M (and ring R: voxels outside M within ``ring_mm`` = 1-3 mm of it,
physical distances), on a lesion-centred crop run through ``LesionModel.forward`` (which honours the
model's input contract), at every chosen layer with activations A^c on its coarser grid:

  w^M_u = mean of M over the input voxels of layer cell u   (average pooling of the mask to the layer grid)
  f^M_c = sum_u w^M_u A^c_u / sum_u w^M_u                   (mask-weighted mean, likewise f^R with R)

Each layer contributes [f^M, f^R] (2 C values), L2-normalised so that every layer weighs the same
whatever its channel count; the layers' blocks are concatenated and L2-normalised again. Cosine
distance between lesions is then 1 - e_a . e_b.

The mask is mapped into the layer grid exactly as the input is mapped into the network (permute,
flip, resample, pad to the size divisor: ``LesionModel.forward``), then average-pooled to the
layer's shape (``adaptive_avg_pool3d``; an exact block mean when the layer grid divides the input
grid, as in strided U-Nets). Crops start on multiples of the size divisor (``roi.align_box``), so
the features equal those of a whole-volume pass wherever the layer's reach fits in the crop. Eval
mode, no noise, no sampling: the same inputs give the same embedding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from LesionXAILib.errors import InstanceError, ParameterError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.library.layers import resolve_layers
from LesionXAILib.models.space import pad_to_multiple, resample
from LesionXAILib.crop import align_box, lesion_box

EMBEDDING_VERSION = 1


@dataclass(frozen=True)
class EmbeddingSettings:
    """Layers (aliases or module names; empty: the network's default), crop margin and ring (mm)."""

    layers: tuple[str, ...] = ()
    margin_mm: float = 16.0
    ring_mm: tuple[float, float] = (1.0, 3.0)

    def __post_init__(self) -> None:
        if not self.margin_mm >= 0:
            raise ParameterError(f"embedding crop margin must be >= 0 mm, got {self.margin_mm}")
        lo, hi = (float(v) for v in self.ring_mm)
        if not 0 <= lo <= hi:
            raise ParameterError(f"embedding ring must be 0 <= inner <= outer mm, got {self.ring_mm}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return {"layers": list(self.layers), "margin_mm": float(self.margin_mm), "ring_mm": [float(v) for v in self.ring_mm]}


@dataclass
class LayerCapture:
    """Forward hooks recording the outputs of named modules during one pass; removed on exit."""

    modules: dict[str, torch.nn.Module]
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def __enter__(self) -> "LayerCapture":
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def _hook(self, name: str):
        def hook(module: torch.nn.Module, args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, (list, tuple)) else output
            if not isinstance(out, torch.Tensor) or out.ndim != 5:
                raise ParameterError(f"embedding layer '{name}' does not output a (B, C, *3 spatial) tensor")
            self.outputs[name] = out.detach()

        return hook

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()


def masks_to_model_grid(model: LesionModel, masks: torch.Tensor) -> torch.Tensor:
    """Return (N, *model input grid) float masks: canonical (N, k, j, i) masks mapped as ``forward`` maps the input."""
    y = masks.float()[None]
    space = model.model_space()
    if space.is_identity:
        return y[0]
    y = space.to_model(y)
    if space.zoom is not None:
        y = resample(y, space.resampled_shape(tuple(int(s) for s in y.shape[2:])))
    y, _ = pad_to_multiple(y, model.size_divisor)
    return y[0]


def pooled_features(activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Return (N, C) weighted means of (C, *grid) activations under (N, *grid) non-negative weights (0 where a weight map is empty)."""
    a = activations.reshape(activations.shape[0], -1).double()
    w = weights.reshape(weights.shape[0], -1).double()
    total = w.sum(dim=1, keepdim=True)
    return (w @ a.T) / torch.where(total > 0, total, torch.ones_like(total))


def _unit(v: torch.Tensor) -> torch.Tensor:
    n = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    return v / torch.where(n > 0, n, torch.ones_like(n))


def layer_blocks(
    model: LesionModel,
    image: np.ndarray,
    mask: np.ndarray,
    spacing_kji: Sequence[float],
    settings: EmbeddingSettings = EmbeddingSettings(),
) -> dict[str, np.ndarray]:
    """Return {layer name: unit [f^M, f^R] block} of the lesion ``mask`` (k, j, i) in the normalised (C, k, j, i) ``image``."""
    from LesionXAILib.explain.statistics import lesion_regions

    mask = np.asarray(mask, dtype=bool)
    if mask.shape != tuple(image.shape[1:]):
        raise ParameterError(f"lesion mask shape {mask.shape} does not match the image grid {tuple(image.shape[1:])}")
    if not mask.any():
        raise InstanceError("lesion mask is empty; nothing to embed")
    names, modules = resolve_layers(model, settings.layers or None)
    box = align_box(lesion_box(mask, spacing_kji, settings.margin_mm, model.size_divisor), model.size_divisor)
    crop_mask = np.asarray(box.extract(mask, False), dtype=bool)
    regions = lesion_regions(crop_mask, spacing_kji, settings.ring_mm)
    masks = torch.from_numpy(np.stack([regions.inside, regions.ring]))
    x = torch.from_numpy(np.ascontiguousarray(box.extract(image, 0.0), dtype=np.float32))
    p = next(model.parameters(), None)
    x = x.to(device=model.device, dtype=p.dtype if p is not None else torch.float32)
    with LayerCapture(modules) as cap, torch.no_grad():
        model(x[None])
    grid_masks = masks_to_model_grid(model, masks).to(x.device)
    blocks = {}
    for name in names:
        a = cap.outputs.get(name)
        if a is None:
            raise ParameterError(f"embedding layer '{name}' is not used by the network's forward pass")
        w = F.adaptive_avg_pool3d(grid_masks[:, None].to(a.dtype), tuple(int(s) for s in a.shape[2:]))[:, 0]
        blocks[name] = _unit(pooled_features(a[0], w).reshape(-1)).cpu().numpy()
    return blocks


def combine_blocks(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Return the float32 unit embedding made of per-layer unit blocks (concatenated, L2-normalised)."""
    return _unit(torch.from_numpy(np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks]))).float().numpy()


def embed_lesion(
    model: LesionModel,
    image: np.ndarray,
    mask: np.ndarray,
    spacing_kji: Sequence[float],
    settings: EmbeddingSettings = EmbeddingSettings(),
) -> np.ndarray:
    """Return the float32 unit embedding of the lesion ``mask`` (k, j, i) in the normalised (C, k, j, i) ``image``."""
    return combine_blocks(list(layer_blocks(model, image, mask, spacing_kji, settings).values()))


def embed_lesions(
    model: LesionModel,
    image: np.ndarray,
    labels: np.ndarray,
    ids: Sequence[int],
    spacing_kji: Sequence[float],
    settings: EmbeddingSettings = EmbeddingSettings(),
) -> np.ndarray:
    """Return (len(ids), D) float32 unit embeddings of the labelled lesions ``ids`` (one lesion-centred pass each)."""
    model.eval()
    rows = [embed_lesion(model, image, labels == int(i), spacing_kji, settings) for i in ids]
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(rows)


def embedding_layers(model: LesionModel, settings: EmbeddingSettings) -> tuple[str, ...]:
    """Return the module names the embedding reads for this model and settings."""
    return resolve_layers(model, settings.layers or None)[0]


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Return 1 - a . b for unit vectors (rows of ``a`` against rows of ``b``)."""
    return 1.0 - np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T


def identity_record(model: LesionModel, settings: EmbeddingSettings, weights_sha256: Optional[str] = None) -> dict[str, Any]:
    """Return what makes two embeddings comparable: weights hash, config, resolved layers and embedding settings."""
    from LesionXAILib.cohort.settings import model_identity

    sha = weights_sha256 or model_identity(model)["weights_sha256"]
    return {
        "weights_sha256": sha,
        "config": model.config.to_dict(),
        "layers": list(embedding_layers(model, settings)),
        # the resolved layer names identify the layers; the aliases the user typed do not
        "embedding": {"margin_mm": float(settings.margin_mm), "ring_mm": [float(v) for v in settings.ring_mm],
                      "version": EMBEDDING_VERSION},
    }
