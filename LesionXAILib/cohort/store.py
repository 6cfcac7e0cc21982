"""The cohort output folder: per-subject results with done-markers, and the tables rebuilt from them.

Layout of OUT:
  cohort.json            settings, model identity and fingerprint of the run (the resume check)
  subjects/<id>/         one finished subject: the standard analysis run directory
                         (``analysis.write_analysis_run``), metrics.json, cohort_rows.json and,
                         written last, DONE.json
  subjects/.<id>.partial-<token>/   a subject being computed (never read; removed when stale)
  instances.csv          one row per instance of every finished subject (subject column first)
  subjects.csv           one row per subject: finished / failed / pending, counts, seconds, error
  failures.json          the subjects that failed in the latest run, with their error
A subject counts as finished only if ``subjects/<id>/DONE.json`` exists and carries the run's
fingerprint. Its files are written into a scratch folder that is renamed into place only after
DONE.json is written in it, so a crash or Ctrl-C never leaves a finished-looking partial result.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from LesionXAILib.records import record_differences
from LesionXAILib.errors import LesionXAIError, ParameterError
from LesionXAILib.atomic_write import write_csv, write_json

log = logging.getLogger(__name__)

SUBJECTS_DIR = "subjects"
DONE_MARKER = "DONE.json"
ROWS_FILE = "cohort_rows.json"
METRICS_FILE = "metrics.json"
COHORT_FILE = "cohort.json"
INSTANCES_CSV = "instances.csv"
SUBJECTS_CSV = "subjects.csv"
FAILURES_FILE = "failures.json"
PARTIAL_TAG = ".partial-"
OWNER_FILE = ".owner"  # in a scratch folder: the token of its name, written when it is made
# columns that hold timings: they legitimately differ between two runs of the same cohort
TIMING_SUFFIXES = ("seconds",)


class CohortStore:
    """Reads and writes the cohort output folder ``out``."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.subjects_root = self.out / SUBJECTS_DIR

    def subject_dir(self, subject_id: str) -> Path:
        """Return the final folder of a subject."""
        return self.subjects_root / subject_id

    def done_marker(self, subject_id: str) -> Optional[dict[str, Any]]:
        """Return the subject's DONE.json content, or None if it has none (or it is unreadable)."""
        p = self.subject_dir(subject_id) / DONE_MARKER
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def is_finished(self, subject_id: str, fingerprint: str) -> bool:
        """Return True if the subject has a done-marker written with ``fingerprint``."""
        done = self.done_marker(subject_id)
        return done is not None and done.get("fingerprint") == fingerprint

    def rows(self, subject_id: str) -> list[dict[str, Any]]:
        """Return the instance rows of a finished subject."""
        return json.loads((self.subject_dir(subject_id) / ROWS_FILE).read_text())

    def scratch_dir(self, subject_id: str) -> Path:
        """Return a fresh scratch folder for computing a subject (unique, so duplicate tasks never collide)."""
        token = uuid.uuid4().hex[:12]
        p = self.subjects_root / f".{subject_id}{PARTIAL_TAG}{token}"
        p.mkdir(parents=True)
        (p / OWNER_FILE).write_text(token)
        return p

    def check_owned(self, scratch: Path, subject_id: str) -> None:
        """Raise LesionXAIError unless ``scratch`` is still the folder ``scratch_dir`` made (its owner token intact).

        Another process that removed it (and writes that recreated parts of it) must not yield a finished subject.
        """
        token = scratch.name.rpartition(PARTIAL_TAG)[2]
        try:
            owned = (scratch / OWNER_FILE).read_text() == token
        except OSError:
            owned = False
        if not owned:
            raise LesionXAIError(
                f"subject '{subject_id}': its scratch folder '{scratch}' was removed or replaced by another process "
                "while it was computed (another run in this --out?); not marked finished"
            )

    def finalise(self, scratch: Path, subject_id: str, marker: dict[str, Any]) -> Path:
        """Write DONE.json last into ``scratch``, then move it into place as the subject's folder; return it.

        Refuses (LesionXAIError) when the scratch folder is no longer this task's own (``check_owned``).
        """
        self.check_owned(scratch, subject_id)
        write_json(scratch / DONE_MARKER, marker)
        self.check_owned(scratch, subject_id)
        (scratch / OWNER_FILE).unlink()
        final = self.subject_dir(subject_id)
        if final.exists():  # an unfinished leftover, or a result of other settings being overwritten
            trash = self.subjects_root / f".{subject_id}{PARTIAL_TAG}old-{uuid.uuid4().hex[:8]}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(scratch, final)
        return final

    def discard(self, scratch: Optional[Path]) -> None:
        """Remove a scratch folder (after a failure or cancellation)."""
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    def clean_stale(self, subject_ids: Iterable[str], fingerprint: str) -> list[str]:
        """Remove scratch folders and unfinished subject folders; return the ids whose folders were removed.

        Call only when no other run writes into this folder. Folders finished with another fingerprint are
        kept (``check_settings`` refuses to mix them unless overwriting, and finishing replaces them).
        """
        removed = []
        if not self.subjects_root.exists():
            return removed
        for p in self.subjects_root.iterdir():
            if p.name.startswith(".") and PARTIAL_TAG in p.name:
                shutil.rmtree(p, ignore_errors=True)
        for sid in subject_ids:
            d = self.subject_dir(sid)
            if d.exists() and self.done_marker(sid) is None:
                shutil.rmtree(d, ignore_errors=True)
                removed.append(sid)
        return removed

    def check_settings(self, fingerprint: str, record: dict[str, Any], overwrite: bool = False) -> None:
        """Refuse to resume into a folder computed with other settings (unless ``overwrite``); write cohort.json."""
        p = self.out / COHORT_FILE
        if p.exists() and not overwrite:
            try:
                old = json.loads(p.read_text())
            except ValueError:
                old = {}
            if old.get("fingerprint") not in (None, fingerprint):
                diff = record_differences(old.get("settings", {}), record.get("settings", {}))
                if old.get("model") != record.get("model"):
                    diff.append("model")
                raise ParameterError(
                    f"output '{self.out}' holds cohort results computed with other settings or another model "
                    f"(differences: {', '.join(diff[:6]) or 'unknown'}); use a new --out, or --overwrite to recompute"
                )
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(p, {**record, "fingerprint": fingerprint})

    def write_instances(self, subject_ids: Sequence[str], fingerprint: str) -> tuple[Path, list[dict[str, Any]]]:
        """Rebuild instances.csv from every finished subject, in ``subject_ids`` order; return (path, rows)."""
        rows: list[dict[str, Any]] = []
        for sid in subject_ids:
            if self.is_finished(sid, fingerprint):
                rows.extend(self.rows(sid))
        columns: list[str] = ["subject"]
        for r in rows:
            columns.extend(k for k in r if k not in columns)
        return write_csv(self.out / INSTANCES_CSV, columns, rows), rows

    def write_subject_table(self, rows: list[dict[str, Any]]) -> Path:
        """Write subjects.csv (one row per subject)."""
        columns = ["subject", "state", "instances", "TP", "FP", "FN", "predicted", "seconds", "cpu_seconds", "error"]
        return write_csv(self.out / SUBJECTS_CSV, columns, rows)

    def write_failures(self, failures: list[dict[str, Any]]) -> Path:
        """Write failures.json (subject, error) for the latest run."""
        return write_json(self.out / FAILURES_FILE, failures)


def is_timing_column(name: str) -> bool:
    """Return True for columns holding wall-clock timings (they differ between otherwise identical runs)."""
    return name.endswith(TIMING_SUFFIXES)
