"""What a metric costs: network passes counted by hooks on the model, and wall-clock seconds.

A *forward pass* is one image (one batch element) through the network; a *backward pass* is one
vector-Jacobian product of one image's output, i.e. a gradient flowing back through one batch
element. Counting by hooks (a forward hook on the LesionModel, a tensor hook on its output) measures
what really ran, whichever explainer routine ran it, instead of trusting a formula.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Iterator

import torch

from LesionXAILib.lesion_model import LesionModel


@dataclass
class MetricCost:
    """Network passes (images forward, images backward, network calls) and seconds spent by one metric."""

    forward_passes: int = 0
    backward_passes: int = 0
    network_calls: int = 0
    seconds: float = 0.0

    def __add__(self, other: "MetricCost") -> "MetricCost":
        return MetricCost(
            self.forward_passes + other.forward_passes,
            self.backward_passes + other.backward_passes,
            self.network_calls + other.network_calls,
            self.seconds + other.seconds,
        )

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (seconds rounded to 0.1 ms)."""
        d = asdict(self)
        d["seconds"] = round(float(self.seconds), 4)
        return d


@contextmanager
def count_passes(model: LesionModel) -> Iterator[MetricCost]:
    """Yield a MetricCost that counts every forward/backward image pass of ``model`` inside the block."""
    cost = MetricCost()

    def on_backward(grad: torch.Tensor) -> None:
        cost.backward_passes += int(grad.shape[0])

    def on_forward(module: torch.nn.Module, args: tuple, output: object) -> None:
        if isinstance(output, torch.Tensor):
            cost.network_calls += 1
            cost.forward_passes += int(output.shape[0])
            if output.requires_grad:
                output.register_hook(on_backward)

    handle = model.register_forward_hook(on_forward)
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds += time.perf_counter() - start
        handle.remove()


@contextmanager
def timed() -> Iterator[MetricCost]:
    """Yield a MetricCost that records only the seconds of the block (work that runs no network)."""
    cost = MetricCost()
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds += time.perf_counter() - start
