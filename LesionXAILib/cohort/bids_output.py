"""The cohort's results as a BIDS-Derivatives dataset, exported from the cohort store at the end of a run.

The store (``cohort.store``: ``subjects/<id>/`` with done-markers, resume, lock, Dask) stays the working
copy; this module lays its finished subjects out in OUT as BIDS-Derivatives (BIDS 1.10), rebuilt after
every run (including ``--report-only``) so it always shows exactly the finished subjects. Images are
hard links into the store (a copy where the file system refuses links), so the layout costs no space.

  OUT/dataset_description.json     DatasetType derivative; GeneratedBy LesionXAI + version; the model
                                   identity (hash), the settings and their fingerprint under "LesionXAI"
  OUT/participants.tsv (+ .json)   one row per participant: lesion counts over its finished sessions
  OUT/sub-<s>/sub-<s>_sessions.tsv (+ .json)   with sessions: one row per finished session
  OUT/sub-<s>/[ses-<t>/]anat/<P>_space-orig_desc-lesions_dseg.nii.gz   lesion instances (label = lesion id)
        <P>_space-orig_desc-lesions_dseg.tsv (+ .json)   look-up table: index, name, then every lesion column
        <P>_space-orig_label-lesion_probseg.nii.gz (+ .json)   the model's lesion probability
        <P>_space-orig_label-lesion<id>_desc-<map>_saliency.nii.gz   per-lesion explanation maps
        <P>_space-orig_label-lesion<id>_desc-context_shells.nii.gz   per-lesion context-probe shells
  OUT/.bidsignore                  the store's own files, and the ``saliency`` and ``shells`` maps (BIDS
                                   has no suffix for them, and ``dseg`` takes no ``label`` entity; they
                                   keep BIDS entities so pybids finds them by subject, session and lesion)
``<P>`` is the FLAIR's entities (``sub-01_ses-1_acq-3D``); ``space-orig`` is the FLAIR's grid, named by
each sidecar's ``SpatialReference``. Every TSV has a JSON sidecar describing each column (``bids_columns``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

from LesionXAILib.atomic_write import write_json, write_text
from LesionXAILib.cohort.bids_columns import describe_columns
from LesionXAILib.cohort.store import ROWS_FILE, CohortStore
from LesionXAILib.errors import ParameterError

log = logging.getLogger(__name__)

BIDS_VERSION = "1.10.0"
EXPORT_MANIFEST = "bids_export.json"  # the files the last export wrote (so the next one removes only its own)
DESCRIPTION_FILE = "dataset_description.json"
SPACE = "orig"
SALIENCY_SUFFIX = "saliency"
SHELLS_SUFFIX = "shells"
BIDS_FILES = {DESCRIPTION_FILE, "participants.tsv", "participants.json", ".bidsignore", "README", "README.md", "CHANGES"}
COUNT_COLUMNS = ("instances", "TP", "FP", "FN", "predicted")
README_TEXT = """# LesionXAI lesion segmentation and per-lesion explanations

BIDS-Derivatives written by LesionXAI {version} (`lesionxai cohort`; settings fingerprint {fingerprint}).

- `*_desc-lesions_dseg.nii.gz`: lesion instances (voxel value = lesion id); `*_desc-lesions_dseg.tsv` lists
  the ids with each lesion's status (TP/FP/FN/predicted), size, explanation statistics and metrics; its JSON
  sidecar describes every column.
- `*_label-lesion_probseg.nii.gz`: the model's lesion probability.
- `*_label-lesion<id>_desc-<map>_saliency.nii.gz`, `*_label-lesion<id>_desc-context_shells.nii.gz`: per-lesion
  explanation maps and context-probe shells (no BIDS suffix exists for them: listed in `.bidsignore`).
- `participants.tsv`, `sub-*/sub-*_sessions.tsv`: lesion counts.

The files named in `.bidsignore` are LesionXAI's working store (resume data, tables, the HTML report).
"""


def subject_entities(subject) -> tuple[tuple[str, str], ...]:
    """Return the BIDS entities a subject's outputs carry: the FLAIR's for BIDS input, else sub-<id letters and digits>."""
    if subject.entities:
        return tuple(subject.entities)
    return (("sub", re.sub(r"[^A-Za-z0-9]", "", subject.id)),)


def prefix_of(entities: Sequence[tuple[str, str]]) -> str:
    """Return the file-name prefix of a subject's outputs ('sub-01_ses-1_acq-3D')."""
    return "_".join(f"{k}-{v}" for k, v in entities)


def anat_dir(out: Path, entities: Sequence[tuple[str, str]]) -> Path:
    """Return OUT/sub-<s>/[ses-<t>/]anat for these entities."""
    e = dict(entities)
    d = out / f"sub-{e['sub']}"
    if e.get("ses"):
        d = d / f"ses-{e['ses']}"
    return d / "anat"


def check_bids_output(out: Path, subjects: Sequence) -> None:
    """Raise ParameterError if a BIDS export into ``out`` could touch an input or two subjects would share a name."""
    resolved = out.resolve()
    seen: dict[str, str] = {}
    for s in subjects:
        for p in (s.flair, s.t1, s.gt):
            if p and resolved in Path(p).resolve().parents:
                raise ParameterError(f"output '{out}' holds the input '{p}'; BIDS derivatives need another --out "
                                     "(e.g. DATASET/derivatives/lesionxai)")  # fmt: skip
        ent = subject_entities(s)
        if not dict(ent).get("sub"):
            raise ParameterError(f"subject id '{s.id}' has no letter or digit to make a BIDS participant label from")
        name = prefix_of(ent)
        if name in seen:
            raise ParameterError(f"subjects '{seen[name]}' and '{s.id}' would both be written as {name} in the BIDS derivatives")
        seen[name] = s.id


def _map_desc(key: str) -> str:
    """Return the BIDS desc label of an explanation map key ('smoothgrad_flair' -> 'smoothgradFlair')."""
    head, *rest = key.split("_")
    return re.sub(r"[^A-Za-z0-9]", "", head + "".join(part[:1].upper() + part[1:] for part in rest))


def _tsv_value(v: Any) -> str:
    if v is None or v == "" or (isinstance(v, float) and v != v):
        return "n/a"
    return str(v).replace("\t", " ").replace("\n", " ")


def write_tsv(path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> Path:
    """Write a BIDS TSV (tab-separated, 'n/a' for missing values) and its JSON sidecar describing every column."""
    lines = ["\t".join(columns)] + ["\t".join(_tsv_value(r.get(c)) for c in columns) for r in rows]
    write_text(path, "\n".join(lines) + "\n")
    return path


def _place(src: Path, dst: Path) -> None:
    """Make ``dst`` the store's file ``src``: a hard link, or a copy where links are refused."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        try:
            if os.path.samefile(src, dst):
                return
        except OSError:
            pass
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class _Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.written: list[str] = []

    def note(self, path: Path) -> Path:
        self.written.append(path.relative_to(self.out).as_posix())
        return path

    def link(self, src: Path, dst: Path) -> None:
        _place(src, dst)
        self.note(dst)

    def json(self, path: Path, doc: dict[str, Any]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, doc)
        self.note(path)

    def tsv(self, path: Path, columns: Sequence[str], rows: Sequence[dict[str, Any]], extra: Optional[dict] = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_tsv(path, columns, rows)
        self.note(path)
        self.json(path.with_suffix(".json"), {**(extra or {}), **describe_columns(list(columns))})


def _source_uri(path: Optional[str], raw_root: Optional[Path], out: Path) -> Optional[str]:
    """Return a BIDS URI (bids:raw:<path in the raw dataset>) for an input, else its path relative to OUT."""
    if not path:
        return None
    p = Path(path).resolve()
    if raw_root is not None and raw_root.resolve() in p.parents:
        return "bids:raw:" + p.relative_to(raw_root.resolve()).as_posix()
    return os.path.relpath(p, out.resolve())


def export_derivatives(
    out: str | os.PathLike,
    subjects: Sequence,
    fingerprint: str,
    settings: dict[str, Any],
    model: dict[str, Any],
    raw_root: Optional[str | os.PathLike] = None,
) -> list[str]:
    """Lay the finished subjects of the store in ``out`` out as BIDS-Derivatives; return the files written (relative)."""
    from LesionXAILib import __version__

    out = Path(out)
    raw = Path(raw_root) if raw_root is not None else None
    check_bids_output(out, subjects)
    store = CohortStore(out)
    w = _Writer(out)
    description: dict[str, Any] = {
        "Name": "LesionXAI lesion segmentation and per-lesion explanations",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "LesionXAI", "Version": __version__,
                         "Description": f"lesionxai cohort; model sha256 {_model_hash(model) or 'unknown'}; settings fingerprint {fingerprint}"}],
        "LesionXAI": {"model": model, "settings": settings, "fingerprint": fingerprint},
    }  # fmt: skip
    if raw is not None:
        link = os.path.relpath(raw.resolve(), out.resolve())
        description["DatasetLinks"] = {"raw": link}
        description["SourceDatasets"] = [{"URL": link}]
    w.json(out / DESCRIPTION_FILE, description)

    participants: dict[str, dict[str, Any]] = {}
    sessions: dict[str, list[dict[str, Any]]] = {}
    for s in subjects:
        done = store.done_marker(s.id)
        if done is None or done.get("fingerprint") != fingerprint:
            continue
        ent = subject_entities(s)
        counts = done.get("counts", {})
        row = {c: counts.get(c, 0) for c in COUNT_COLUMNS[1:]}
        row["instances"] = int(done.get("instances", sum(counts.values())))
        e = dict(ent)
        part = participants.setdefault(f"sub-{e['sub']}", {"participant_id": f"sub-{e['sub']}", **dict.fromkeys(COUNT_COLUMNS, 0)})
        for c in COUNT_COLUMNS:
            part[c] += row[c]
        if e.get("ses"):
            sessions.setdefault(e["sub"], []).append({"session_id": f"ses-{e['ses']}", **row})
        _export_subject(w, store.subject_dir(s.id), s, ent, raw)

    columns = ["participant_id", *COUNT_COLUMNS]
    w.tsv(out / "participants.tsv", columns, [participants[k] for k in sorted(participants)],
          {"Description": "Lesion counts per participant, over its finished sessions."})
    for sub, rows in sorted(sessions.items()):
        w.tsv(out / f"sub-{sub}" / f"sub-{sub}_sessions.tsv", ["session_id", *COUNT_COLUMNS], rows,
              {"Description": "Lesion counts per finished session."})
    readme = out / "README.md"
    write_text(readme, README_TEXT.format(version=__version__, fingerprint=fingerprint))
    w.note(readme)
    _write_bidsignore(out, w)
    _remove_stale(out, w.written)
    write_json(out / EXPORT_MANIFEST, w.written)
    log.info("cohort: BIDS derivatives of %d participant(s), %d files, in %s", len(participants), len(w.written), out)
    return w.written


def _model_hash(model: dict[str, Any]) -> Optional[str]:
    for key in ("sha256", "weights_sha256", "identity", "hash"):
        if model.get(key):
            return str(model[key])
    inner = model.get("model")
    return _model_hash(inner) if isinstance(inner, dict) else None


def _export_subject(w: _Writer, src: Path, subject, ent: Sequence[tuple[str, str]], raw: Optional[Path]) -> None:
    anat = anat_dir(w.out, ent)
    base = f"{prefix_of(ent)}_space-{SPACE}"
    sources = [u for u in (_source_uri(p, raw, w.out) for p in (subject.flair, subject.t1)) if u]
    ref = {"SpatialReference": _source_uri(subject.flair, raw, w.out), "Sources": sources}
    rows = json.loads((src / ROWS_FILE).read_text())

    dseg = anat / f"{base}_desc-lesions_dseg.nii.gz"
    w.link(src / "instances.nii.gz", dseg)
    columns = ["index", "name"] + [c for c in _columns(rows) if c not in ("subject", "id")]
    table = [{"index": r["id"], "name": f"lesion-{r['id']}", **r} for r in rows]
    w.tsv(anat / f"{base}_desc-lesions_dseg.tsv", columns, table,
          {**ref, "Description": "Lesion instances: each lesion's voxels hold its id (0 background); the TSV is the "
                                 "look-up table of ids with the lesion's measurements."})  # fmt: skip
    if (src / "probability.nii.gz").exists():
        prob = anat / f"{base}_label-lesion_probseg.nii.gz"
        w.link(src / "probability.nii.gz", prob)
        w.json(prob.with_name(prob.name.replace(".nii.gz", ".json")), {**ref, "Description": "Lesion probability predicted by the model."})
    for r in rows:
        folder = src / f"instance_{r['id']}"
        if not folder.is_dir():
            continue
        for image in sorted(folder.glob("*.nii.gz")):
            key = image.name[: -len(".nii.gz")]
            lesion = f"{base}_label-lesion{r['id']}"
            if key == "context_shells":
                w.link(image, anat / f"{lesion}_desc-context_{SHELLS_SUFFIX}.nii.gz")
                w.json(anat / f"{lesion}_desc-context_{SHELLS_SUFFIX}.json",
                       {**ref, "Description": f"Context-probe shells around lesion {r['id']}: the value is the index of the "
                                              "kept radius (1 = the lesion) that first includes the voxel; 0 outside."})  # fmt: skip
            else:
                w.link(image, anat / f"{lesion}_desc-{_map_desc(key)}_{SALIENCY_SUFFIX}.nii.gz")
                w.json(anat / f"{lesion}_desc-{_map_desc(key)}_{SALIENCY_SUFFIX}.json",
                       {**ref, "Description": f"Explanation map '{key}' of lesion {r['id']} (attribution per voxel)."})


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    return columns


def _write_bidsignore(out: Path, w: _Writer) -> None:
    from LesionXAILib.cohort.report import REPORT_FILE, STATISTICS_FILE
    from LesionXAILib.cohort.store import COHORT_FILE, FAILURES_FILE, INSTANCES_CSV, SUBJECTS_CSV, SUBJECTS_DIR

    ours = {p.split("/")[0] for p in w.written} | BIDS_FILES | {EXPORT_MANIFEST}
    store = {SUBJECTS_DIR, COHORT_FILE, INSTANCES_CSV, SUBJECTS_CSV, FAILURES_FILE, REPORT_FILE, STATISTICS_FILE}
    # whatever else lies in OUT (e.g. files of a later LesionXAI version) is the store's too
    store |= {p.name for p in out.iterdir() if not p.name.startswith(".") and p.name not in ours}
    lines = [f"*_{SALIENCY_SUFFIX}.*", f"*_{SHELLS_SUFFIX}.*", EXPORT_MANIFEST, *sorted(store)]
    write_text(out / ".bidsignore", "\n".join(lines) + "\n")


def _remove_stale(out: Path, written: Sequence[str]) -> None:
    """Remove files the previous export wrote and this one did not (a subject no longer finished), and empty folders."""
    try:
        previous = json.loads((out / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError):
        return
    keep = set(written)
    for rel in previous:
        if rel in keep or not isinstance(rel, str) or ".." in Path(rel).parts:
            continue
        p = out / rel
        if p.is_file():
            p.unlink()
            for parent in p.parents:
                if parent == out:
                    break
                try:
                    parent.rmdir()
                except OSError:
                    break


def subject_link_html(subject, out: str | os.PathLike) -> Optional[str]:
    """Return HTML naming a BIDS subject by its entities ('sub-01 ses-1 acq-3D'), linked to its derivatives folder; None without entities."""
    import html

    if not getattr(subject, "entities", ()):
        return None
    ent = subject_entities(subject)
    folder = anat_dir(Path("."), ent).as_posix()
    label = html.escape(" ".join(f"{k}-{v}" for k, v in ent))
    if not (Path(out) / folder).is_dir():  # not exported (--no-bids-out, or not finished)
        return label
    return f'<a href="{html.escape(folder)}/">{label}</a>'


__all__ = ["check_bids_output", "export_derivatives", "subject_entities", "subject_link_html", "write_tsv"]
