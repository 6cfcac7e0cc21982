"""run_cohort: every subject of a cohort, serially in this process or as tasks on Dask distributed.

Resumable: subjects finished earlier with the same settings and model (same fingerprint) are
skipped; results land in ``subjects/<id>/`` with a done-marker written last (``cohort.store``), so an
interrupted run loses no finished subject and leaves nothing that looks finished. A subject that
fails is reported (``subjects.csv``, ``failures.json``) and skipped; the next run retries it.

Scale-out: ``workers=0`` runs in this process; ``workers=N`` starts a local Dask cluster of N worker
processes with one thread each (torch uses ``settings.threads`` threads per task);
``scheduler='tcp://host:port'`` submits to an existing cluster, whose workers must see the input
files and OUT at the same paths (a shared file system) and have LesionXAI installed (start them
without Dask's default MALLOC_TRIM_THRESHOLD_, which makes torch work several times slower). Tasks are
deterministic, so any schedule gives the serial run's numbers.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from LesionXAILib.cohort.bids_input import BidsQuery, discover_bids_subjects, is_bids_dataset
from LesionXAILib.cohort.bids_output import check_bids_output, export_derivatives
from LesionXAILib.cohort.lock import OutputLock
from LesionXAILib.cohort.settings import CohortSettings, ModelSpec, model_identity
from LesionXAILib.cohort.store import CohortStore
from LesionXAILib.cohort.subject_run import FAILED, FINISHED, SKIPPED, SubjectOutcome
from LesionXAILib.cohort.subjects import Subject, discover_subjects
from LesionXAILib.cohort.worker import ModelSource, run_subject_task
from LesionXAILib.errors import Cancelled, ParameterError
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter

log = logging.getLogger(__name__)
PENDING = "pending"
# instances.csv is rebuilt after a subject finishes, at most this often (and always at the end)
TABLE_REFRESH_SECONDS = 5.0


@dataclass
class CohortResult:
    """What a cohort run produced: per-subject outcomes, all instance rows, statistics and report paths."""

    out: Path
    subjects: list[Subject]
    outcomes: dict[str, SubjectOutcome]
    rows: list[dict[str, Any]]
    fingerprint: str
    seconds: float
    statistics: Optional[dict[str, Any]] = None
    paths: dict[str, Path] = field(default_factory=dict)

    def count(self, state: str) -> int:
        """Return how many subjects ended in ``state`` (finished, skipped, failed, pending)."""
        return sum(1 for o in self.outcomes.values() if o.state == state)

    @property
    def failures(self) -> list[SubjectOutcome]:
        """Return the subjects that failed in this run."""
        return [o for o in self.outcomes.values() if o.state == FAILED]


def run_cohort(
    source: str | Path | Sequence[Subject],
    out: str | Path,
    settings: CohortSettings = CohortSettings(),
    model: Optional[ModelSpec | LesionModel | str] = None,
    workers: int = 0,
    scheduler: Optional[str] = None,
    overwrite: bool = False,
    report: bool = True,
    correction: str = "holm",
    compute: bool = True,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    on_outcome: Optional[Callable[[SubjectOutcome], None]] = None,
    on_plan: Optional[Callable[[int, int], None]] = None,
    wait: bool = False,
    bids: Optional[BidsQuery] = None,
    bids_out: Optional[bool] = None,
) -> CohortResult:
    """Return the CohortResult of computing every unfinished subject of ``source`` (folder, manifest or list) into ``out``.

    ``compute=False`` only rebuilds the tables, statistics and report from the subjects finished so far.
    ``progress`` gets the fraction of the subjects to compute that is done; ``on_plan(to_compute, total)``
    is called once before computing starts; ``on_outcome`` after each subject. ``out`` is locked for the
    whole run (``cohort.lock.OutputLock``): another run there is refused, naming the first, or with ``wait`` waited for.
    A BIDS dataset ``source`` is queried with ``bids`` (``cohort.bids_input``); ``bids_out`` (default: when the input
    is BIDS) lays the finished subjects out in ``out`` as BIDS-Derivatives after the run (``cohort.bids_output``).
    """
    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ParameterError(f"output '{out}' exists and is not a directory")
    match = None
    if not isinstance(source, (list, tuple)) and is_bids_dataset(source):
        match = discover_bids_subjects(source, bids or BidsQuery())
        subjects = sorted(match.subjects, key=lambda s: s.id)
    else:
        subjects = list(source) if isinstance(source, (list, tuple)) else discover_subjects(source, exclude=out, bids=bids)
    _check_out_not_an_input(out, subjects)
    bids_out = (match is not None) if bids_out is None else bool(bids_out)
    if bids_out:
        check_bids_output(out, subjects)
    if workers < 0:
        raise ParameterError(f"workers must be >= 0 (0 = serial in this process), got {workers}")
    if correction not in ("holm", "bh"):
        raise ParameterError(f"multiple-comparison correction must be 'holm' or 'bh', got '{correction}'")
    source_model, identity = _model_source(model)
    # one run at a time per output folder: a second run would delete this one's scratch folders (clean_stale)
    with OutputLock(out, wait=wait, cancel=cancel):
        fingerprint = settings.fingerprint(identity)
        store = CohortStore(out)
        record = {"settings": settings.to_dict(), "model": identity,
                  "subjects": [s.to_dict() for s in subjects],
                  **({"bids_input": match.to_dict()} if match is not None else {})}  # fmt: skip
        store.check_settings(fingerprint, record, overwrite)
        ids = [s.id for s in subjects]
        store.clean_stale(ids, fingerprint)

        outcomes: dict[str, SubjectOutcome] = {}
        for s in subjects:
            done = store.done_marker(s.id)
            if done is not None and done.get("fingerprint") == fingerprint:
                outcomes[s.id] = SubjectOutcome(s.id, SKIPPED, counts=done.get("counts", {}), seconds=float(done.get("seconds", 0)),
                                                cpu_seconds=float(done.get("cpu_seconds", 0)))  # fmt: skip
            else:
                outcomes[s.id] = SubjectOutcome(s.id, PENDING)
        pending = [s for s in subjects if outcomes[s.id].state == PENDING]
        log.info("cohort: %d subjects, %d finished earlier, %d to compute", len(subjects), len(subjects) - len(pending), len(pending))

        if on_plan is not None:
            on_plan(len(pending) if compute else 0, len(subjects))
        reporter = as_reporter(progress, cancel)
        last_refresh = [0.0]

        def finished(outcome: SubjectOutcome) -> None:
            outcomes[outcome.subject] = outcome
            if outcome.state == FAILED and on_outcome is None:  # a caller with on_outcome reports it itself
                log.warning("cohort: subject %s failed: %s", outcome.subject, outcome.error)
            if on_outcome is not None:
                on_outcome(outcome)
            if time.perf_counter() - last_refresh[0] >= TABLE_REFRESH_SECONDS:
                store.write_instances(ids, fingerprint)
                last_refresh[0] = time.perf_counter()

        try:
            if pending and compute:
                if workers == 0 and scheduler is None:
                    _run_serial(pending, source_model, settings, out, fingerprint, finished, reporter)
                else:
                    _run_dask(pending, source_model, settings, out, fingerprint, workers, scheduler, finished, reporter)
        finally:
            # whatever happened, the tables show every finished subject, including tasks that finished on a
            # worker after an interruption stopped this process from hearing about them
            for sid, o in list(outcomes.items()):
                done = store.done_marker(sid) if o.state == PENDING else None
                if done is not None and done.get("fingerprint") == fingerprint:
                    outcomes[sid] = SubjectOutcome(sid, FINISHED, counts=done.get("counts", {}), seconds=float(done.get("seconds", 0)),
                                                   cpu_seconds=float(done.get("cpu_seconds", 0)))  # fmt: skip
            _, rows = store.write_instances(ids, fingerprint)
            store.write_subject_table([outcomes[i].table_row() for i in ids])
            store.write_failures([{"subject": o.subject, "error": o.error, "detail": o.detail} for o in outcomes.values() if o.state == FAILED])
        result = CohortResult(out, subjects, outcomes, rows, fingerprint, time.perf_counter() - start)
        result.paths = {"instances": out / "instances.csv", "subjects": out / "subjects.csv"}
        if bids_out:  # before the report, which links the subjects' derivatives folders
            export_derivatives(out, subjects, fingerprint, settings.to_dict(), identity, match.root if match else None)
            result.paths["bids"] = out / "dataset_description.json"
        if report:
            from LesionXAILib.cohort.report import write_cohort_report

            result.statistics, paths = write_cohort_report(result, settings, identity, correction)
            result.paths.update(paths)
        return result


def _check_out_not_an_input(out: Path, subjects: Sequence[Subject]) -> None:
    from LesionXAILib.cohort.subjects import subject_from_folder

    resolved = out.resolve()
    if out.is_dir():
        held = subject_from_folder(out)
        if held is not None and (held.flair or held.t1):
            raise ParameterError(f"output '{out}' holds the input image '{held.flair or held.t1}'; choose another --out")
    for s in subjects:
        for p in (s.flair, s.t1, s.gt):
            if p and Path(p).resolve().parent == resolved:
                raise ParameterError(f"output '{out}' holds the input '{p}'; choose another --out")


def _model_source(model: Optional[ModelSpec | LesionModel | str]) -> tuple[ModelSource, dict[str, Any]]:
    """Return (what workers load the model from, identity for the fingerprint); loads once to fail early."""
    if isinstance(model, LesionModel):
        return model, model_identity(model)
    spec = (ModelSpec(str(model)) if isinstance(model, (str, Path)) else (model or ModelSpec())).resolved()
    from LesionXAILib.cohort.worker import model_for

    model_for(spec)  # a bad checkpoint fails here, once, with the usual message
    return spec, spec.identity()


def _run_serial(pending, source, settings, out, fingerprint, finished, reporter) -> None:
    for n, s in enumerate(pending):
        sub = reporter.sub(n / len(pending), (n + 1) / len(pending))
        sub(0.0, f"{s.id} ({n + 1}/{len(pending)})")
        outcome = run_subject_task(s, source, settings, str(out), fingerprint, sub, reporter.cancel_token)
        finished(outcome)
        sub(1.0, f"{s.id}: {outcome.state}")


def _run_dask(pending, source, settings, out, fingerprint, workers, scheduler, finished, reporter) -> None:
    try:
        from distributed import Client, LocalCluster, wait
        from distributed import TimeoutError as DaskTimeout  # asyncio's, not the builtin one on Python 3.10
    except ImportError:  # pragma: no cover - the 'cohort' extra is missing
        raise ParameterError("distributed runs need Dask: pip install 'lesionxai[cohort]' (or use --workers 0)") from None

    cluster = None
    if scheduler is not None:
        client = Client(scheduler, timeout="30s")
    else:
        import dask

        # One thread per worker process: torch parallelism is set per task (settings.threads). Dask spawns
        # workers with MALLOC_TRIM_THRESHOLD_=65536, which pins glibc's mmap threshold so that every large
        # tensor is mmapped and unmapped again: measured 2.7x slower subjects (64 s -> 171 s), so not set.
        # The workers' statistical profiler (stack samples every 10 ms) feeds only the dashboard, which is off.
        quiet = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None, "distributed.worker.profile.enabled": False}
        with dask.config.set(quiet):
            cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)  # fmt: skip
        client = Client(cluster)
    futures = {}
    try:
        src = client.scatter(source, broadcast=True) if isinstance(source, LesionModel) else source
        tag = uuid.uuid4().hex[:8]
        for s in pending:
            f = client.submit(run_subject_task, s, src, settings, str(out), fingerprint,
                              key=f"lesionxai-subject-{s.id}-{tag}", pure=False)  # fmt: skip
            futures[f.key] = (f, s)
        remaining = [f for f, _ in futures.values()]
        done_count = 0
        reporter(0.0, f"0/{len(pending)} subjects")
        while remaining:
            reporter.check()
            try:
                done, not_done = wait(remaining, timeout=0.5, return_when="FIRST_COMPLETED")
            except (DaskTimeout, TimeoutError):
                continue
            for f in done:
                s = futures[f.key][1]
                try:
                    outcome = f.result()
                except Exception as exc:  # the worker died (e.g. out of memory): report, go on
                    outcome = SubjectOutcome(s.id, FAILED, error=f"worker error: {type(exc).__name__}: {exc}")
                finished(outcome)
                done_count += 1
                reporter(done_count / len(pending), f"{done_count}/{len(pending)} subjects ({s.id}: {outcome.state})")
            remaining = list(not_done)
    except (Cancelled, KeyboardInterrupt):
        client.cancel([f for f, _ in futures.values()])
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


__all__ = ["CohortResult", "FINISHED", "run_cohort"]
