"""A multimodal ML-CSC lesion segmenter: unfolded ISTA layers over learned 3D convolutional dictionaries.

Multilayer convolutional sparse coding (Papyan, Romano & Elad 2017; Sulam et al. 2019) models an image as
x ~ D1 g1, g1 ~ D2 g2, ... with sparse codes g_l over convolutional dictionaries D_l. Each layer here
solves its sparse-coding problem min_g 1/2 ||y - D g||^2 + sum_a theta_a ||g_a||_1 by a fixed number of ISTA
iterations with the dictionary tied across them (the "layered" pursuit: layer l codes layer l-1's code).
Following the multimodal design of Lazendic et al. (EUSIPCO 2022), the first layer has one dictionary per
sequence (FLAIR atoms code the FLAIR, MPRAGE atoms the MPRAGE) and the second layer merges them: its atoms
span both sequences' first-layer codes, so one joint code describes both images. The segmentation head is
a 1x1x1 readout of every layer's code (upsampled to the input grid) followed by one hidden ReLU layer.
docs/methods.md#ml-csc states the exact updates.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def soft_threshold(z: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Return the proximal map of theta*||.||_1 at z: sign(z) * max(|z| - theta, 0)."""
    return F.relu(z - theta) - F.relu(-z - theta)


class CSCLayer(nn.Module):
    """One convolutional sparse-coding layer: ``iterations`` unfolded ISTA steps with one tied dictionary.

    The dictionary ``weight`` has shape (atoms, in_channels, k, k, k): ``conv3d(y, weight)`` is D^T y and
    ``conv_transpose3d(g, weight)`` is D g (its exact adjoint). ``step`` is ISTA's 1/L and ``threshold`` the
    per-atom soft threshold (lambda_a / L), both learned; thresholds are used as max(threshold, 0).
    """

    def __init__(self, in_channels: int, atoms: int, kernel_size: int = 3, stride: int = 1, iterations: int = 3) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"a CSC layer needs at least one ISTA iteration, got {iterations}")
        self.in_channels, self.atoms = int(in_channels), int(atoms)
        self.kernel_size, self.stride, self.iterations = int(kernel_size), int(stride), int(iterations)
        self.padding = self.kernel_size // 2
        weight = torch.randn(atoms, in_channels, kernel_size, kernel_size, kernel_size)
        weight = weight / weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1, 1)  # unit-norm atoms
        self.weight = nn.Parameter(weight)
        # ISTA converges for step <= 1/||D||^2; a conservative start that training may enlarge
        self.step = nn.Parameter(torch.tensor(1.0 / (atoms * kernel_size ** 3 / stride ** 3) ** 0.5))
        self.threshold = nn.Parameter(torch.full((atoms,), 0.01))

    def analysis(self, y: torch.Tensor) -> torch.Tensor:
        """Return D^T y (code space)."""
        return F.conv3d(y, self.weight, stride=self.stride, padding=self.padding)

    def synthesis(self, code: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """Return D code on a signal grid of spatial ``shape`` (the adjoint of :meth:`analysis` on that grid)."""
        if self.stride == 1 and tuple(shape) == tuple(code.shape[2:]):
            # the same operator as conv_transpose3d, but CPU conv3d kernels are several times faster
            return F.conv3d(code, self.weight.transpose(0, 1).flip(2, 3, 4), padding=self.kernel_size - 1 - self.padding)
        base = [(n - 1) * self.stride - 2 * self.padding + self.kernel_size for n in code.shape[2:]]
        extra = [int(s) - b for s, b in zip(shape, base)]
        return F.conv_transpose3d(code, self.weight, stride=self.stride, padding=self.padding, output_padding=tuple(extra))

    def theta(self) -> torch.Tensor:
        """Return the per-atom thresholds as a (1, atoms, 1, 1, 1) tensor (never negative)."""
        return F.relu(self.threshold).view(1, -1, 1, 1, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Return the sparse code of ``y`` after ``iterations`` ISTA steps from a zero code."""
        theta, step = self.theta(), self.step
        code = soft_threshold(step * self.analysis(y), theta)  # first step from g = 0
        for _ in range(self.iterations - 1):
            residual = y - self.synthesis(code, y.shape[2:])
            code = soft_threshold(code + step * self.analysis(residual), theta)
        return code


class MLCSCSegmenter(nn.Module):
    """Multimodal ML-CSC segmenter: per-sequence first-layer dictionaries, merged deeper layers, a code readout head.

    ``atoms``: atoms per sequence in layer 1, then atoms of each joint layer (strided by 2). Forward returns
    (B, 1, ...) lesion logits; :meth:`codes` returns every layer's sparse code (the explanation's source).
    """

    def __init__(
        self,
        in_channels: int = 2,
        out_channels: int = 1,
        atoms: Sequence[int] = (8, 24, 32),
        kernel_size: int = 3,
        iterations: int = 3,
        hidden: int = 16,
    ) -> None:
        super().__init__()
        if len(atoms) < 2:
            raise ValueError("an ML-CSC segmenter needs a per-sequence layer and at least one joint layer")
        self.modalities = int(in_channels)
        self.atoms = tuple(int(a) for a in atoms)
        self.modality_layers = nn.ModuleList(
            CSCLayer(1, self.atoms[0], kernel_size, 1, iterations) for _ in range(self.modalities)
        )
        joint: list[CSCLayer] = []
        previous = self.atoms[0] * self.modalities
        for n in self.atoms[1:]:
            joint.append(CSCLayer(previous, n, kernel_size, 2, iterations))
            previous = n
        self.joint_layers = nn.ModuleList(joint)
        self.readouts = nn.ModuleList(
            [nn.Conv3d(self.atoms[0] * self.modalities, hidden, 1)] + [nn.Conv3d(n, hidden, 1, bias=False) for n in self.atoms[1:]]
        )
        self.head = nn.Conv3d(hidden, out_channels, 1)

    @property
    def size_divisor(self) -> int:
        """Return the factor input sizes must be a multiple of (2 per joint layer)."""
        return 2 ** len(self.joint_layers)

    def codes(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Return the sparse codes: [[layer-1 code of each sequence], [layer-2 joint code], ...]."""
        first = [layer(x[:, m : m + 1]) for m, layer in enumerate(self.modality_layers)]
        out = [first]
        code = torch.cat(first, dim=1)
        for layer in self.joint_layers:
            code = layer(code)
            out.append([code])
        return out

    def head_from_codes(self, codes: list[list[torch.Tensor]]) -> torch.Tensor:
        """Return the lesion logits read out from ``codes`` (as returned by :meth:`codes`)."""
        first = torch.cat(codes[0], dim=1)
        size = first.shape[2:]
        # a 1x1x1 readout commutes with linear upsampling: read out at each layer's own resolution, then upsample
        # deepest first, each sum upsampled once to the next finer grid: one full-resolution interpolation in all
        deep = None
        for readout, (code,) in reversed(list(zip(self.readouts[1:], codes[1:]))):
            here = readout(code)
            deep = here if deep is None else here + F.interpolate(deep, size=here.shape[2:], mode="trilinear", align_corners=False)
        hidden = self.readouts[0](first) + F.interpolate(deep, size=size, mode="trilinear", align_corners=False)
        return self.head(F.relu(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return (B, out_channels, ...) logits of a (B, modalities, ...) input."""
        if x.shape[1] != self.modalities:
            raise ValueError(f"ML-CSC segmenter built for {self.modalities} sequences, got {x.shape[1]} channels")
        return self.head_from_codes(self.codes(x))


def build_mlcsc(config: Any) -> MLCSCSegmenter:
    """Return an ML-CSC segmenter for ``config`` (architecture keys: atoms, kernel_size, iterations, hidden)."""
    kwargs = dict(config.architecture)
    return MLCSCSegmenter(in_channels=config.in_channels, out_channels=config.out_channels, **kwargs)


def mlcsc_divisor(config: Any) -> int:
    """Return the input size multiple an ML-CSC config needs (2 per joint layer)."""
    atoms = dict(config.architecture).get("atoms", (8, 24, 32))
    return int(math.pow(2, len(atoms) - 1))


def find_mlcsc(model: Any) -> MLCSCSegmenter | None:
    """Return the ML-CSC network inside ``model`` (a LesionModel, a wrapper or the network itself), or None."""
    if isinstance(model, MLCSCSegmenter):
        return model
    for module in getattr(model, "modules", lambda: [])():
        if isinstance(module, MLCSCSegmenter):
            return module
    return None
