"""One subject of a cohort: segment, analyse every lesion (explanations + context probe), score the
explanations, write the standard run directory plus the cohort rows, and mark it done.

Everything per lesion comes from the shared engine (``segmentation.segment``, the run-a-subject loop
``subject_pipeline.analyse_and_write_subject`` that the demo uses too, ``metrics.evaluate_explanation``);
this module only chains them and writes the cohort's rows. It runs the same in the calling process and in a Dask worker.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.cohort.settings import CohortSettings
from LesionXAILib.cohort.store import METRICS_FILE, ROWS_FILE, CohortStore
from LesionXAILib.cohort.subjects import Subject
from LesionXAILib.errors import Cancelled, InputImageError, LesionXAIError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.atomic_write import write_json
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter

log = logging.getLogger(__name__)

FINISHED = "finished"
FAILED = "failed"
SKIPPED = "skipped"  # finished in an earlier run


@dataclass
class SubjectOutcome:
    """What happened to one subject: state, its instance rows (finished), counts, seconds, error (failed)."""

    subject: str
    state: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of the process running the subject (steadier than wall time on a busy machine)
    error: Optional[str] = None
    detail: Optional[str] = None  # traceback of an unexpected error

    def table_row(self) -> dict[str, Any]:
        """Return the subjects.csv row."""
        return {"subject": self.subject, "state": self.state, "instances": sum(self.counts.values()) if self.counts else "",
                **{k: self.counts.get(k, 0) if self.counts else "" for k in ("TP", "FP", "FN", "predicted")},
                "seconds": round(self.seconds, 2), "cpu_seconds": round(self.cpu_seconds, 2),
                "error": self.error or ""}  # fmt: skip


def count_statuses(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Return {status: number of instances} of a subject's rows."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r.get("status"))] = counts.get(str(r.get("status")), 0) + 1
    return counts


def process_subject(
    subject: Subject,
    model: LesionModel,
    settings: CohortSettings,
    out: str | Path,
    fingerprint: str,
    random_model: Optional[LesionModel] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> SubjectOutcome:
    """Return the outcome of computing one subject into ``out`` (a failure is returned, not raised).

    Cancellation (CancelToken or KeyboardInterrupt) removes the subject's scratch folder and is re-raised.
    """
    start, cpu = time.perf_counter(), time.process_time()
    store = CohortStore(out)
    scratch = None
    try:
        if subject.problem:
            raise InputImageError(subject.problem)
        scratch = store.scratch_dir(subject.id)
        rows = _compute(subject, model, settings, scratch, random_model, progress, cancel)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        marker = {"subject": subject.id, "fingerprint": fingerprint, "instances": len(rows), "counts": count_statuses(rows),
                  "seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3), "inputs": subject.to_dict()}  # fmt: skip
        store.finalise(scratch, subject.id, marker)
        return SubjectOutcome(subject.id, FINISHED, rows, count_statuses(rows), seconds, cpu_seconds)
    except (Cancelled, KeyboardInterrupt):
        store.discard(scratch)
        raise
    except LesionXAIError as exc:
        store.discard(scratch)
        return SubjectOutcome(subject.id, FAILED, seconds=time.perf_counter() - start, error=str(exc))
    except Exception as exc:  # a bug or a resource problem in one subject must not stop the cohort
        store.discard(scratch)
        return SubjectOutcome(subject.id, FAILED, seconds=time.perf_counter() - start,
                              error=f"{type(exc).__name__}: {exc}", detail=traceback.format_exc())  # fmt: skip


def _compute(
    subject: Subject,
    model: LesionModel,
    settings: CohortSettings,
    scratch: Path,
    random_model: Optional[LesionModel],
    progress: Optional[ProgressCallback],
    cancel: Optional[CancelToken],
) -> list[dict[str, Any]]:
    from LesionXAILib.analysis import SubjectAnalysis
    from LesionXAILib.explain.targets import instance_target
    from LesionXAILib.image_io import load_pair, read_label_image
    from LesionXAILib.metrics.evaluate import evaluate_explanation
    from LesionXAILib.metrics.randomisation import randomised_model
    from LesionXAILib.segmentation import segment
    from LesionXAILib.subject_pipeline import analyse_and_write_subject

    reporter = as_reporter(progress, cancel)
    reporter(0.0, f"{subject.id}: reading")
    pair = load_pair(subject.flair, subject.t1)
    gt = None
    if settings.ground_truth == "require" and not subject.gt:
        raise InputImageError(f"subject '{subject.id}' has no ground-truth lesion mask (required by --gt)")
    if settings.ground_truth != "ignore" and subject.gt:
        gt = read_label_image(subject.gt, pair.geometry)
    protected = [subject.flair, subject.t1, subject.gt]
    result = segment(pair, model, settings.segmentation, gt, reporter.sub(0.0, 0.2))
    scoring = settings.computes_metrics
    if scoring and "randomisation" in settings.metrics.metrics and random_model is None:
        random_model = randomised_model(model, settings.metrics.randomisation_seed)
    # the randomised network explains every lesion of this subject: share its CAM activations between them
    random_subject = SubjectAnalysis(random_model, result) if random_model is not None else None
    rows, metric_docs = [], []
    ids = result.instances.ids
    part = reporter.sub(0.2, 0.98)

    def score(a: Any) -> None:
        row: dict[str, Any] = {"subject": subject.id, **a.summary()}
        if scoring and a.explanation is not None:
            target = instance_target(result.instances, a.id, settings.analysis.explain.aggregation)
            m = evaluate_explanation(model, result.normalized, a.explanation, target, result.geometry,
                                     settings.metrics, random_subject, cancel=cancel)  # fmt: skip
            row.update(m.row())
            metric_docs.append(m.to_dict())
        rows.append(row)
        part(len(rows) / max(len(ids), 1), f"{subject.id}: lesion {a.id} ({len(rows)}/{len(ids)})")

    analyse_and_write_subject(model, result, scratch, settings.analysis, part.sub(0.0, 1.0), cancel,
                              on_lesion=score, write_lesion_files=settings.lesion_files, protected=protected)  # fmt: skip
    if scoring:
        write_json(scratch / METRICS_FILE, {"settings": settings.metrics.to_dict(), "instances": metric_docs})
    write_json(scratch / ROWS_FILE, rows)
    reporter(1.0, f"{subject.id}: {len(rows)} instances")
    return rows
