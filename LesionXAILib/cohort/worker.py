"""The task a cohort runs per subject, in this process (serial) or in a Dask worker process.

Each process loads the model once (cached by its spec) and sets torch's thread count for the task,
so a serial run and a distributed run with the same ``threads`` compute the same numbers.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional, Union

import torch

from LesionXAILib.cohort.settings import CohortSettings, ModelSpec
from LesionXAILib.cohort.subject_run import SubjectOutcome, process_subject
from LesionXAILib.cohort.subjects import Subject
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import CancelToken, ProgressCallback

ModelSource = Union[ModelSpec, LesionModel]

_cache: dict[ModelSpec, LesionModel] = {}
# (id(model), seed) -> (model, randomised copy); holding the model keeps its id from being reused
_random_cache: dict[tuple[int, int], tuple[LesionModel, LesionModel]] = {}
_cache_lock = threading.Lock()


def model_for(source: ModelSource) -> LesionModel:
    """Return the LesionModel of ``source``, loading a ModelSpec once per process."""
    if isinstance(source, LesionModel):
        return source
    with _cache_lock:
        model = _cache.get(source)
        if model is None:
            model = _cache[source] = source.load()
        return model


def randomised_for(model: LesionModel, settings: CohortSettings) -> Optional[LesionModel]:
    """Return the randomised copy of ``model`` for the sanity check (made once per process), or None if not needed."""
    from LesionXAILib.metrics.randomisation import randomised_model

    if not settings.computes_metrics or "randomisation" not in settings.metrics.metrics:
        return None
    key = (id(model), int(settings.metrics.randomisation_seed))
    with _cache_lock:
        entry = _random_cache.get(key)
        if entry is None:
            entry = _random_cache[key] = (model, randomised_model(model, key[1]))
        return entry[1]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_subject_task(
    subject: Subject,
    source: ModelSource,
    settings: CohortSettings,
    out: str,
    fingerprint: str,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> SubjectOutcome:
    """Return the outcome of one subject (loads the model, sets threads, computes and writes it)."""
    with torch_threads(settings.threads):
        try:
            model = model_for(source)
            random_model = randomised_for(model, settings)
        except Exception as exc:  # reported per subject like any other failure
            return SubjectOutcome(subject.id, "failed", error=f"model could not be loaded: {exc}")
        return process_subject(subject, model, settings, out, fingerprint, random_model, progress, cancel)
