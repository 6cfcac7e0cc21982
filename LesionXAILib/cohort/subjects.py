"""Finding the subjects of a cohort: one folder per subject, or a CSV manifest.

Folder layout (what ``lesionxai phantom`` writes): ``DIR/<subject>/flair.nii.gz``, ``t1.nii.gz`` and,
optionally, ``lesions.nii.gz`` (ground truth). File names are matched case-insensitively on the
name without its extension (.nii.gz, .nii, .nrrd, .nhdr, .mha, .mhd), either exactly or as the end
of a longer name after ``_`` or ``-`` (``sub-01_FLAIR.nii.gz``):

  FLAIR         flair, t2_flair, t2flair
  MPRAGE / T1   t1, mprage, t1w, t1_mprage
  ground truth  lesions, gt, ground_truth, lesion_mask
(``mask`` alone is not taken: brain masks are often stored beside the images.)

Manifest: a CSV file with a header ``subject,flair,t1,gt`` (``gt`` optional or empty; ``id`` and
``mprage`` are accepted for ``subject`` and ``t1``); relative paths are relative to the CSV file.
Subject ids name output folders, so they may hold only letters, digits, ``.``, ``_`` and ``-``.

BIDS: a folder holding ``dataset_description.json`` is queried with pybids instead
(``cohort.bids_input``: one subject per BIDS subject and session, masks from a named derivatives pipeline).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from LesionXAILib.errors import ParameterError
from LesionXAILib.image_io import SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)

ROLE_NAMES = {
    "flair": ("flair", "t2_flair", "t2flair"),
    "t1": ("t1", "mprage", "t1w", "t1_mprage"),
    "gt": ("lesions", "gt", "ground_truth", "lesion_mask"),
}
MANIFEST_COLUMNS = {"subject": ("subject", "id"), "flair": ("flair",), "t1": ("t1", "mprage"), "gt": ("gt",)}
_SAFE_ID = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]*$")


@dataclass(frozen=True)
class Subject:
    """One subject: id, FLAIR and MPRAGE paths, optional ground truth; ``problem`` says why it cannot run."""

    id: str
    flair: Optional[str]
    t1: Optional[str]
    gt: Optional[str] = None
    problem: Optional[str] = None
    # BIDS input: (file-name key, label) pairs of the FLAIR in BIDS order, e.g. (("sub", "01"), ("ses", "1"))
    entities: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict."""
        d = {"subject": self.id, "flair": self.flair, "t1": self.t1, "gt": self.gt, "problem": self.problem}
        if self.entities:
            d["bids"] = dict(self.entities)
        return d


def check_subject_id(subject_id: str, where: str = "") -> str:
    """Return ``subject_id`` if it is usable as a folder name, else raise ParameterError."""
    if not _SAFE_ID.match(subject_id or ""):
        raise ParameterError(
            f"{where}subject id '{subject_id}' may only hold letters, digits, '.', '_' and '-' (and not start with '.')"
        )
    return subject_id


def _stem(name: str) -> Optional[str]:
    low = name.lower()
    for suffix in SUPPORTED_SUFFIXES:
        if low.endswith(suffix):
            return low[: -len(suffix)]
    return None


def role_of(filename: str) -> Optional[str]:
    """Return 'flair', 't1' or 'gt' for a file name the folder layout recognises, else None."""
    stem = _stem(filename)
    if stem is None:
        return None
    for role, names in ROLE_NAMES.items():
        for n in names:
            if stem == n or stem.endswith("_" + n) or stem.endswith("-" + n):
                return role
    return None


def subject_from_folder(folder: Path) -> Optional[Subject]:
    """Return the Subject held by ``folder`` (None if it holds no recognised image at all)."""
    found: dict[str, list[Path]] = {"flair": [], "t1": [], "gt": []}
    for entry in sorted(folder.iterdir()):
        if entry.is_file() and not entry.name.startswith("."):
            role = role_of(entry.name)
            if role is not None:
                found[role].append(entry)
    if not any(found.values()):
        return None
    problems = []
    for role, label in (("flair", "FLAIR"), ("t1", "MPRAGE/T1")):
        if not found[role]:
            names = ", ".join(f"{n}.nii.gz" for n in ROLE_NAMES[role])
            problems.append(f"no {label} file (expected one of {names})")
    for role, files in found.items():
        if len(files) > 1:
            problems.append(f"several {role} files ({', '.join(f.name for f in files)}); keep one")
    pick = {role: str(files[0]) if len(files) == 1 else None for role, files in found.items()}
    sid = folder.name
    try:
        check_subject_id(sid)
    except ParameterError as exc:
        problems.append(str(exc))
    return Subject(sid, pick["flair"], pick["t1"], pick["gt"], "; ".join(problems) or None)


def read_manifest(path: Path) -> list[Subject]:
    """Return the subjects listed in a CSV manifest (header subject,flair,t1[,gt])."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = {h.strip().lower(): h for h in (reader.fieldnames or [])}
        columns = {}
        for key, names in MANIFEST_COLUMNS.items():
            columns[key] = next((header[n] for n in names if n in header), None)
        missing = [k for k in ("subject", "flair", "t1") if columns[k] is None]
        if missing:
            raise ParameterError(
                f"manifest '{path}': missing column(s) {missing}; the header must be subject,flair,t1[,gt]"
            )
        subjects = []
        for line, row in enumerate(reader, start=2):
            sid = (row.get(columns["subject"]) or "").strip()
            if not sid and not any((v or "").strip() for v in row.values()):
                continue  # blank line
            check_subject_id(sid, f"manifest '{path}' line {line}: ")

            flair, t1, gt = (_manifest_path(row, columns[k], path.parent) for k in ("flair", "t1", "gt"))
            problem = None
            if flair is None or t1 is None:
                problem = f"manifest line {line}: empty {'flair' if flair is None else 't1'} path"
            subjects.append(Subject(sid, flair, t1, gt, problem))
    return subjects


def _manifest_path(row: dict, column: Optional[str], base: Path) -> Optional[str]:
    """Return the path in ``row[column]`` (relative paths are relative to ``base``), or None if empty."""
    value = (row.get(column) or "").strip() if column else ""
    if not value:
        return None
    p = Path(value)
    return str(p if p.is_absolute() else (base / p))


def discover_subjects(source: str | os.PathLike, exclude: Optional[str | os.PathLike] = None, bids=None) -> list[Subject]:
    """Return the cohort's subjects, sorted by id, from a folder of subject folders, a CSV manifest or a BIDS dataset.

    ``exclude`` (e.g. the output folder, if it lies inside the input) is never taken for a subject.
    ``bids`` (a ``cohort.bids_input.BidsQuery``) filters a BIDS dataset; giving it for other input is an error.
    """
    from LesionXAILib.cohort.bids_input import BidsQuery, discover_bids_subjects, is_bids_dataset

    src = Path(source)
    if not src.exists():
        raise ParameterError(f"cohort input '{src}' does not exist")
    if is_bids_dataset(src):
        return sorted(discover_bids_subjects(src, bids or BidsQuery()).subjects, key=lambda s: s.id)
    if bids is not None and bids != BidsQuery():
        raise ParameterError(f"cohort input '{src}' is not a BIDS dataset (no dataset_description.json): "
                             "--participant-label, --session-label, --acq and --gt-derivative need one")  # fmt: skip
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise ParameterError(f"cohort input '{src}' must be a folder of subject folders or a .csv manifest")
        subjects = read_manifest(src)
    else:
        skip = Path(exclude).resolve() if exclude is not None else None
        subjects = []
        for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if skip is not None and folder.resolve() == skip:
                continue
            s = subject_from_folder(folder)
            if s is None:
                log.warning("cohort: '%s' holds no FLAIR/MPRAGE image; not a subject, skipped", folder)
                continue
            subjects.append(s)
    ids = [s.id for s in subjects]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ParameterError(f"cohort input '{src}': subject id(s) listed twice: {dupes}")
    if not subjects:
        raise ParameterError(
            f"cohort input '{src}' holds no subject (expected one folder per subject with flair.nii.gz and t1.nii.gz, "
            "or a CSV manifest subject,flair,t1,gt)"
        )
    return sorted(subjects, key=lambda s: s.id)
