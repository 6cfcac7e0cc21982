"""LesionModel: a segmentation network plus the knowledge of where its lesion logit lives."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from LesionXAILib.model_config import ModelConfig


def build_network(config: ModelConfig) -> nn.Module:
    """Return a freshly initialised MONAI UNet described by ``config``."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=config.spatial_dims,
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        channels=tuple(config.channels),
        strides=tuple(config.strides),
        num_res_units=config.num_res_units,
        norm=config.norm,
        act=config.act,
        dropout=config.dropout,
    )


class LesionModel(nn.Module):
    """Wraps a network returning (B, C, D, H, W) outputs; exposes lesion logits and probabilities.

    ``forward`` returns the raw network output. Use :meth:`lesion_logit` for explanation targets
    (the lesion channel before any softmax) and :meth:`probability` for segmentation.
    """

    def __init__(self, network: nn.Module, config: ModelConfig, source: Optional[str] = None) -> None:
        super().__init__()
        self.network = network
        self.config = config
        self.source = source

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the raw network output for a (B, C_in, D, H, W) input."""
        return self.network(x)

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
        """Return the multiple every spatial input size must have."""
        return self.config.size_divisor

    @property
    def device(self) -> torch.device:
        """Return the device the parameters live on (CPU for parameterless modules)."""
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def describe(self) -> dict:
        """Return a JSON-serialisable summary (config, source, parameter count)."""
        return {
            "config": self.config.to_dict(),
            "source": self.source,
            "parameters": int(sum(p.numel() for p in self.parameters())),
        }
