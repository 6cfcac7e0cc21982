"""The one guard for running a network in eval mode and giving the caller's training flag back afterwards."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


@contextmanager
def eval_mode(model: Any) -> Iterator[Any]:
    """Yield ``model`` switched to eval mode for the block; restore its training flag after, even on error.

    Eval mode matters beyond convention: batch norm then treats every batch element on its own, so
    noise samples, probe radii or lesion crops can share one batch without mixing their statistics.
    """
    was_training = bool(model.training)
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
