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

    def bind(self, geometry: Any) -> "LesionModel":
        """Return this model after fixing its contract's mapping for ``geometry`` (a Geometry: the FLAIR grid)."""
        if self.config.contract.needs_geometry:
            self.space = resolve_space(self.config.contract, geometry)
        self.bound_geometry = geometry
        return self

    def model_space(self) -> ModelSpace:
        """Return the resolved canonical <-> model mapping (ModelLoadError if the contract needs :meth:`bind` first)."""
        if self.space is None:
            return resolve_space(self.config.contract, None)  # raises the 'bind first' message
        return self.space

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the raw network output for a (B, C_in, k, j, i) canonical input, on the same (k, j, i) grid."""
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
        return self.model_space().to_canonical(activations)

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


def _first_output(out: Any) -> torch.Tensor:
    """Return the main output of networks that return several (deep supervision lists, dicts of heads)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ModelLoadError(f"the network returned {type(out).__name__}, not a tensor of lesion logits")
