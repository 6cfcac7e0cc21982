"""LesionModel: a segmentation network plus where its lesion logit lives and the input contract it was trained with."""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.model_config import ModelConfig
from LesionXAILib.models.space import ModelSpace, pad_to_multiple, resample, resolve_space


def build_network(config: ModelConfig) -> nn.Module:
    """Return a freshly initialised network described by ``config`` (``config.network``: unet, dynunet, swin-unetr)."""
    from LesionXAILib.models.architectures import build_architecture

    return build_architecture(config)


class LesionModel(nn.Module):
    """Wraps a network returning (B, C, ...) outputs; exposes lesion logits and probabilities in LesionXAI's canonical space.

    ``forward`` takes a (B, C_in, k, j, i) tensor on the FLAIR grid (SimpleITK order, channels in
    ``config.input_order``, normalised by ``config.normalization``), maps it into the space the
    network was trained in (``config.contract``: permute, flip, resample), runs the network and maps
    its raw output back onto the same (k, j, i) grid, all differentiably. Use :meth:`lesion_logit`
    for explanation targets (the lesion channel before any softmax) and :meth:`probability` for
    segmentation. A contract that reorients or resamples depends on the FLAIR's direction and
    spacing: :meth:`bind` the model to the grid first (``segment`` does).
    """

    def __init__(self, network: nn.Module, config: ModelConfig, source: Optional[str] = None) -> None:
        super().__init__()
        self.network = network
        self.config = config
        self.source = source
        self.space: Optional[ModelSpace] = None if config.contract.needs_geometry else resolve_space(config.contract)
        self.bound_geometry: Any = None
        self.nonzero_box: Optional[tuple[slice, slice, slice]] = None
        self.model_space_mask: Optional[torch.Tensor] = None
        self._resamplers: dict = {}

    def bind(self, geometry: Any, pair: Any = None) -> "LesionModel":
        """Return this model after fixing its contract's mapping for ``geometry`` (the FLAIR grid) and, if it crops, ``pair``'s non-zero box."""
        if self.config.contract.needs_geometry:
            self.space = resolve_space(self.config.contract, geometry)
        self.bound_geometry = geometry
        self._resamplers = {}
        if self.config.contract.crop_nonzero:
            if pair is None:
                raise ModelLoadError(f"model '{self.config.name}' crops to the images' non-zero box: bind it with the images (bind(geometry, pair))")
            self.nonzero_box = nonzero_box([pair.flair, pair.t1])
        self.model_space_mask = None
        if self.config.normalization == "zscore-model-space":
            self._measure_model_space_statistics(pair)
        return self

    def _measure_model_space_statistics(self, pair: Any) -> None:
        """Measure the resampled raw image's per-channel statistics (and non-zero mask) a MONAI NormalizeIntensityd after Spacingd uses."""
        from LesionXAILib.models.resampling import model_space_statistics
        from LesionXAILib.segmentation import input_stack

        if pair is None:
            raise ModelLoadError(f"model '{self.config.name}' normalises in its own space: bind it with the images (bind(geometry, pair))")
        raw = torch.from_numpy(input_stack(pair, tuple(self.config.input_order)))[None]
        with torch.inference_mode(False), torch.no_grad():
            resampled, _ = self._to_model_space(raw)
            nonzero = bool(((self.config.extra or {}).get("monai_spacing") or {}).get("normalize_nonzero", True))
            mean, std, mask = model_space_statistics(resampled[0], nonzero)
        self.config.extra["model_space_statistics"] = {"mean": mean, "std": std}
        self.model_space_mask = mask

    @property
    def runs_in_model_space(self) -> bool:
        """Return True if the network only runs on the whole volume in model space (nnU-Net crop, a format's own resampling)."""
        return self.config.contract.whole_volume_model

    def _to_model_space(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Return (the whole canonical input cropped, permuted, flipped and resampled into model space, what maps it back)."""
        geometry = self.bound_geometry
        if geometry is None:
            raise ModelLoadError(f"model '{self.config.name}' runs on the whole volume in its own space: bind it to the FLAIR grid first")
        given = tuple(int(s) for s in x.shape[-3:])
        if any(g < s for g, s in zip(given, geometry.shape)):
            raise ModelLoadError(
                f"model '{self.config.name}' runs on the whole volume {tuple(geometry.shape)} in its own space, got a crop {given}"
            )
        # the whole volume, possibly padded at the end (explanations pad to the size divisor): the image part is what the format sees
        box = self.nonzero_box if self.config.contract.crop_nonzero else None
        x = x[(Ellipsis,) + (box if box is not None else tuple(slice(0, int(s)) for s in geometry.shape))]
        space = self.model_space()
        y = space.to_model(x)
        model_shape = tuple(int(s) for s in y.shape[2:])
        back = None
        if space.zoom is not None:
            key = model_shape
            if key not in self._resamplers:
                self._resamplers[key] = self._resampling_pair(model_shape)
            forward, back = self._resamplers[key]
            y = forward(y)
        mask = getattr(self, "model_space_mask", None)
        if mask is not None and tuple(mask.shape[-3:]) == tuple(y.shape[-3:]):
            y = y * mask.to(y.dtype)  # NormalizeIntensityd(nonzero) leaves the resampled image's zeros at zero
        return y, (box, model_shape, back, given)

    def _resampling_pair(self, model_shape: tuple[int, int, int]) -> tuple[Any, Any]:
        from LesionXAILib.models.resampling import resampling_pair

        contract = self.config.contract
        spacing = [float(self.bound_geometry.spacing_kji[p]) for p in self.model_space().perm]
        extra = self.config.extra or {}
        parameters = extra.get("nnunet_resampling" if contract.resampling == "nnunet" else "monai_spacing") or {}
        with torch.inference_mode(False):  # cached operators are reused by autograd later (explanations)
            return resampling_pair(contract.resampling, model_shape, spacing, contract.target_spacing, parameters)

    def _from_model_space(self, out: torch.Tensor, mapping: Any) -> torch.Tensor:
        """Return a model-space output resampled back, flipped and permuted to canonical axes and pasted into the whole grid."""
        box, model_shape, back, given = mapping
        if back is not None:
            out = back(out)
        out = self.model_space().to_canonical(out)
        if box is None and given == tuple(out.shape[-3:]):
            return out
        if box is None:
            box = tuple(slice(0, int(s)) for s in out.shape[-3:])
        # outside the non-zero box (and in any padding) the format predicts background: lesion logits far below any threshold
        fill = torch.full((out.shape[0], out.shape[1], *given), OUTSIDE_LOGIT, dtype=out.dtype, device=out.device)
        if self.config.head == "softmax":
            fill[:, [c for c in range(out.shape[1]) if c != self.config.lesion_index]] = 0.0
        return torch.cat([fill[:, :, : box[0].start], _paste(fill[:, :, box[0]], out, box[1:]), fill[:, :, box[0].stop :]], dim=2)

    def predict_in_model_space(self, x: torch.Tensor, windows: Any) -> torch.Tensor:
        """Return the (B, C_out, k, j, i) output of a whole canonical volume, tiled in model space by the network's own ``infer`` or ``windows(y, network)``."""
        y, mapping = self._to_model_space(x)
        infer = getattr(self.network, "infer", None)
        out = infer(y) if infer is not None else windows(y, self.network)
        return self._from_model_space(_first_output(out), mapping)

    def _whole(self, y: torch.Tensor) -> torch.Tensor:
        y, unpadded = pad_to_multiple(y, self.size_divisor)
        out = _first_output(self.network(y))
        return out[(slice(None), slice(None)) + tuple(slice(0, s) for s in unpadded)]

    def model_space(self) -> ModelSpace:
        """Return the resolved canonical <-> model mapping (ModelLoadError if the contract needs :meth:`bind` first)."""
        if self.space is None:
            return resolve_space(self.config.contract, None)  # raises the 'bind first' message
        return self.space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the raw network output for a (B, C_in, k, j, i) canonical input, on the same (k, j, i) grid."""
        if self.runs_in_model_space:
            y, mapping = self._to_model_space(x)
            return self._from_model_space(self._whole(y), mapping)
        space = self.model_space()
        if space.is_identity:
            return self.network(x)
        y = space.to_model(x)
        model_shape = tuple(int(s) for s in y.shape[2:])
        if space.zoom is not None:
            y = resample(y, space.resampled_shape(model_shape))
        y, unpadded = pad_to_multiple(y, self.size_divisor)
        out = _first_output(self.network(y))
        out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in unpadded)]
        if space.zoom is not None:
            out = resample(out, model_shape)
        return space.to_canonical(out)

    def layer_to_canonical(self, activations: torch.Tensor) -> torch.Tensor:
        """Return a (..., model axes) layer map (e.g. CAM activations) in canonical (k, j, i) axis order.

        The layer grid is a coarser copy of the model-space input grid, so the same permutation and
        flips bring it onto the canonical axes; trilinear upsampling with ``align_corners=False``
        commutes with both, so upsampling afterwards gives exactly the canonical map. (For a
        resampling contract the layer grid is on the resampled grid: upsampling it to the canonical
        grid is then an approximation of mapping it back.)
        """
        if not self.runs_in_model_space:
            return self.model_space().to_canonical(activations)
        # the layer grid covers the (cropped, resampled) model-space volume: bring it onto the canonical grid
        act = self.model_space().to_canonical(activations)
        box = self.nonzero_box if self.config.contract.crop_nonzero else None
        inner = tuple(int(s.stop - s.start) for s in box) if box is not None else tuple(self.bound_geometry.shape)
        act = resample(act, inner)
        if box is None:
            return act
        full = torch.zeros((*act.shape[:-3], *self.bound_geometry.shape), dtype=act.dtype, device=act.device)
        full[(Ellipsis,) + box] = act
        return full

    def canonical_roi(self, model_roi: Optional[tuple[int, ...]] = None) -> tuple[int, int, int]:
        """Return the sliding window in canonical (k, j, i) voxels covering the config's (model-space) window."""
        roi = tuple(model_roi or self.config.roi_size)
        return self.model_space().canonical_roi(roi)

    def lesion_logit(self, output: torch.Tensor) -> torch.Tensor:
        """Return the (B, 1, ...) lesion logit from a raw output (before softmax/sigmoid)."""
        if output.shape[1] != self.config.out_channels:
            raise RuntimeError(
                f"network returned {output.shape[1]} channels, config '{self.config.name}' expects "
                f"{self.config.out_channels}"
            )
        i = self.config.lesion_index
        return output[:, i : i + 1]

    def probability(self, output: torch.Tensor) -> torch.Tensor:
        """Return the (B, 1, ...) lesion probability from a raw output."""
        if self.config.head == "sigmoid":
            return torch.sigmoid(self.lesion_logit(output))
        i = self.config.lesion_index
        return torch.softmax(output, dim=1)[:, i : i + 1]

    @property
    def size_divisor(self) -> int:
        """Return the multiple every canonical crop size must have (the model-space divisor; permutations and flips keep it)."""
        return self.config.size_divisor

    @property
    def device(self) -> torch.device:
        """Return the device the parameters live on (CPU for parameterless modules)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def describe(self) -> dict:
        """Return a JSON-serialisable summary (config, source, parameter count, resolved model space)."""
        return {
            "config": self.config.to_dict(),
            "source": self.source,
            "parameters": int(sum(p.numel() for p in self.parameters())),
            "model_space": None if self.space is None else self.space.describe(),
        }


OUTSIDE_LOGIT = -1.0e4


def _paste(background: torch.Tensor, inner: torch.Tensor, box: tuple[slice, slice]) -> torch.Tensor:
    """Return ``background`` (B, C, k, j, i) with ``inner`` in place at ``box`` (j, i slices), differentiably."""
    j, i = box
    mid = torch.cat([background[..., j, : i.start], inner, background[..., j, i.stop :]], dim=-1)
    return torch.cat([background[..., : j.start, :], mid, background[..., j.stop :, :]], dim=-2)


def nonzero_box(channels: Any) -> tuple[slice, slice, slice]:
    """Return the (k, j, i) bounding box of the voxels non-zero in any of the arrays, as nnU-Net's crop_to_nonzero finds it."""
    import numpy as np

    mask = None
    for c in channels:
        if c is None:
            continue
        m = np.asarray(c) != 0
        mask = m if mask is None else mask | m
    if mask is None or not mask.any():
        return tuple(slice(0, int(s)) for s in (mask.shape if mask is not None else (0, 0, 0)))
    coords = np.argwhere(mask)
    lo, hi = coords.min(0), coords.max(0) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _first_output(out: Any) -> torch.Tensor:
    """Return the main output of networks that return several (deep supervision lists, dicts of heads)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelLoadError(f"the network returned {type(out).__name__}, not a tensor of lesion logits")
