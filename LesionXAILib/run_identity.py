"""Identities that tie the JSON files of one output folder together, so that a report never mixes runs.

Every JSON a run writes (instances.json, explanations.json, context_probe.json) carries:
- ``run_id``: the writing process's run (UTC start time, pid, random part), to tell runs apart;
- ``segmentation_id``: a hash of the instance label map the results were computed on.
The report checks ``segmentation_id``: explain and probe runs into one folder on the same segmentation
agree (segmentation is deterministic), while an old explanations.json beside a new segmentation (a re-run
with other settings, interrupted) differs and is refused.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import uuid
from typing import Optional

import numpy as np

RUN_ID = "run_id"
SEGMENTATION_ID = "segmentation_id"
_run_id: Optional[str] = None


def run_id() -> str:
    """Return this process's run id (made on first use, or by ``new_run``)."""
    return _run_id or new_run()


def new_run() -> str:
    """Start a new run id for this process (one per command) and return it."""
    global _run_id
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    _run_id = f"{now}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return _run_id


def segmentation_id(labels: np.ndarray) -> str:
    """Return a short hash of an instance label map (its shape and labels, whatever their integer type)."""
    arr = np.ascontiguousarray(np.asarray(labels), dtype=np.int32)
    digest = hashlib.sha256(repr(arr.shape).encode())
    digest.update(memoryview(arr).cast("B"))
    return digest.hexdigest()[:16]


def run_ids(labels: np.ndarray) -> dict[str, str]:
    """Return the ``run_id`` and ``segmentation_id`` entries for a JSON written from the segmentation ``labels``."""
    return {RUN_ID: run_id(), SEGMENTATION_ID: segmentation_id(labels)}
