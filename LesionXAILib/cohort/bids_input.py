"""Finding the subjects of a cohort in a BIDS dataset, through pybids (file names are never parsed here).

A folder holding ``dataset_description.json`` is a BIDS dataset. One cohort subject is one BIDS subject
and session: ``sub-<s>/[ses-<t>/]anat/`` must hold exactly one FLAIR (``*_FLAIR.nii[.gz]``) and one T1w
(``*_T1w.nii[.gz]``) after the filters; its cohort id is ``sub-<s>[_ses-<t>]``. Ground-truth lesion
masks come only from a named derivatives pipeline (``gt_derivative``: a folder name under
``derivatives/``, or a path to a derivatives dataset): per subject and session one image whose suffix
is ``mask`` or ``dseg`` and whose ``label`` or ``desc`` entity is ``lesion`` or ``lesions``
(``sub-01_space-orig_desc-lesion_mask.nii.gz``, ``sub-01_label-lesion_mask.nii.gz``,
``sub-01_desc-lesions_dseg.nii.gz``); any non-zero voxel is lesion. When several masks match, the one
sharing the FLAIR's ``acq`` wins; otherwise several is an error.

Filters: participant and session labels (with or without the ``sub-``/``ses-`` prefix) and the ``acq``
label, either for both images (``3D``) or per suffix (``FLAIR=3D``, ``T1w=MPRAGE``). Two images left
for one role is an error naming both files and the entity that tells them apart, never a silent pick.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from LesionXAILib.errors import ParameterError

log = logging.getLogger(__name__)

DESCRIPTION_FILE = "dataset_description.json"
NIFTI = [".nii", ".nii.gz"]
LESION_LABELS = ("lesion", "lesions")
MASK_SUFFIXES = ("mask", "dseg")
ROLES = (("flair", "FLAIR"), ("t1", "T1w"))
# pybids entity name -> file-name key, in the order BIDS writes them; these carry over into output names
ENTITY_KEYS = (("subject", "sub"), ("session", "ses"), ("acquisition", "acq"), ("ceagent", "ce"),
               ("reconstruction", "rec"), ("run", "run"))  # fmt: skip
# entities two images of one subject and session may differ in, and the option that chooses among them
_CHOOSERS = {"acquisition": "--acq", "ceagent": None, "reconstruction": None, "run": None}


@dataclass(frozen=True)
class BidsQuery:
    """What to take from a BIDS dataset: participant/session labels, acq labels per suffix, the lesion-mask pipeline."""

    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    acq: tuple[str, ...] = ()  # "LABEL" (FLAIR and T1w) or "FLAIR=LABEL" / "T1w=LABEL"
    gt_derivative: Optional[str] = None

    def acq_for(self, suffix: str) -> Optional[str]:
        """Return the acq label chosen for ``suffix`` (FLAIR or T1w), or None for any."""
        chosen = None
        for item in self.acq:
            key, sep, value = item.partition("=")
            if not sep:
                chosen = chosen or key
            elif key.strip().lower() == suffix.lower():
                return value.strip()
        return chosen

    def check(self) -> "BidsQuery":
        """Return this query if its acq items are well formed, else raise ParameterError."""
        for item in self.acq:
            key, sep, value = item.partition("=")
            if (sep and (key.strip().lower() not in ("flair", "t1w") or not value.strip())) or not item.strip():
                raise ParameterError(f"--acq '{item}': give a label (3D) or SUFFIX=LABEL with SUFFIX FLAIR or T1w (FLAIR=3D)")
        return self


@dataclass
class BidsMatch:
    """What a BIDS dataset gave: the root, the matched subjects and what was skipped (with why)."""

    root: Path
    subjects: list = field(default_factory=list)  # cohort.subjects.Subject
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"what": ..., "why": ...}
    gt_root: Optional[Path] = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable summary (cohort.json keeps it)."""
        return {"bids_root": str(self.root), "gt_derivative": str(self.gt_root) if self.gt_root else None,
                "matched": [s.id for s in self.subjects], "skipped": self.skipped}  # fmt: skip


def is_bids_dataset(path: str | os.PathLike) -> bool:
    """Return True if ``path`` is a folder holding dataset_description.json (a BIDS dataset)."""
    p = Path(path)
    return p.is_dir() and (p / DESCRIPTION_FILE).is_file()


def _strip(label: str, prefix: str) -> str:
    label = str(label).strip()
    return label[len(prefix) :] if label.startswith(prefix) else label


def _layout(root: Path, derivative: bool = False):
    try:
        from bids import BIDSLayout
    except ImportError:  # pragma: no cover - the 'cohort' extra is missing
        raise ParameterError("BIDS input needs pybids: pip install 'lesionxai[cohort]'") from None
    logging.getLogger("bidsschematools").setLevel(logging.WARNING)  # it reports which schema it loads, at INFO
    try:
        if derivative:
            return BIDSLayout(str(root), validate=False, is_derivative=True)
        return BIDSLayout(str(root), validate=True)
    except Exception as exc:  # pybids raises ValueError/BIDSValidationError/... with its own wording
        kind = "derivatives dataset" if derivative else "BIDS dataset"
        raise ParameterError(f"'{root}' is not a readable {kind}: {exc}") from None


def _gt_root(root: Path, name: str) -> Path:
    candidates = [root / "derivatives" / name, Path(name)]
    for c in candidates:
        if c.is_dir():
            if not (c / DESCRIPTION_FILE).is_file():
                raise ParameterError(f"--gt-derivative '{name}': '{c}' has no {DESCRIPTION_FILE} (a derivatives dataset needs one)")
            return c
    have = sorted(p.name for p in (root / "derivatives").iterdir() if p.is_dir()) if (root / "derivatives").is_dir() else []
    raise ParameterError(f"--gt-derivative '{name}': no folder '{root / 'derivatives' / name}' (derivatives here: {', '.join(have) or 'none'})")


def _entities(f) -> dict[str, Any]:
    return f.get_entities()


def _ambiguity(what: str, files: Sequence, suffix: str, choosable: bool = True) -> str:
    names = ", ".join(Path(f.path).name for f in files)
    differing = [k for k in _CHOOSERS if len({str(_entities(f).get(k)) for f in files}) > 1]
    if not differing:
        return f"{what}: {len(files)} {suffix} images ({names}) and no BIDS entity tells them apart; keep one"
    hints = []
    for k in differing:
        values = sorted({str(_entities(f).get(k)) for f in files})
        option = _CHOOSERS[k]
        hint = f"'{k}' ({', '.join(values)})"
        if option and choosable:
            hint += f": choose with {option} {suffix}=<label>"
        hints.append(hint)
    return f"{what}: {len(files)} {suffix} images ({names}); they differ in " + "; ".join(hints)


def output_entities(flair_entities: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Return the (file-name key, label) pairs of the FLAIR that output file names carry, in BIDS order."""
    return tuple((key, str(flair_entities[name])) for name, key in ENTITY_KEYS if flair_entities.get(name) not in (None, ""))


def discover_bids_subjects(root: str | os.PathLike, query: BidsQuery = BidsQuery()) -> BidsMatch:
    """Return the BidsMatch of a BIDS dataset: one Subject per subject and session, and what was skipped and why.

    Raises ParameterError for a label that names nothing, an unknown pipeline, or two images for one role.
    """
    from bids.layout import Query

    from LesionXAILib.cohort.subjects import Subject

    query = query.check()
    root = Path(root)
    layout = _layout(root)
    match = BidsMatch(root)
    subjects_here = sorted(layout.get_subjects())
    wanted = [_strip(p, "sub-") for p in query.participant_label]
    unknown = [p for p in wanted if p not in subjects_here]
    if unknown:
        raise ParameterError(f"--participant-label {' '.join(unknown)}: no such subject in '{root}' (it has {', '.join(subjects_here) or 'none'})")
    sessions_wanted = [_strip(s, "ses-") for s in query.session_label]
    all_sessions = set(layout.get_sessions())
    unknown = [s for s in sessions_wanted if s not in all_sessions]
    if unknown:
        raise ParameterError(f"--session-label {' '.join(unknown)}: no such session in '{root}' (it has {', '.join(sorted(all_sessions)) or 'none'})")
    derivative = None
    if query.gt_derivative:
        match.gt_root = _gt_root(root, query.gt_derivative)
        derivative = _layout(match.gt_root, derivative=True)

    errors: list[str] = []
    for sub in subjects_here:
        if wanted and sub not in wanted:
            match.skipped.append({"what": f"sub-{sub}", "why": "not in --participant-label"})
            continue
        sessions = sorted(layout.get_sessions(subject=sub)) or [None]
        for ses in sessions:
            where = f"sub-{sub}" + (f"/ses-{ses}" if ses else "")
            if sessions_wanted and ses not in sessions_wanted:
                match.skipped.append({"what": where, "why": "not in --session-label" if ses else "has no session (--session-label given)"})
                continue
            common = {"subject": sub, "session": ses if ses else Query.NONE, "datatype": "anat", "extension": NIFTI, "scope": "raw"}
            picked: dict[str, Optional[str]] = {}
            flair_entities: dict[str, Any] = {}
            problems = []
            for role, suffix in ROLES:
                acq = query.acq_for(suffix)
                files = layout.get(suffix=suffix, **common, **({"acquisition": acq} if acq else {}))
                if len(files) > 1:
                    errors.append(_ambiguity(where, files, suffix))
                    picked[role] = None
                elif not files:
                    picked[role] = None
                    problems.append(f"no {suffix} image in {where}/anat" + (f" with acq-{acq}" if acq else ""))
                else:
                    picked[role] = files[0].path
                    if role == "flair":
                        flair_entities = _entities(files[0])
            if picked["flair"] is None and picked["t1"] is None and not any(where in e for e in errors):
                match.skipped.append({"what": where, "why": "; ".join(problems)})
                continue
            gt = None
            if derivative is not None:
                gt, gt_error = _lesion_mask(derivative, sub, ses, flair_entities, where)
                if gt_error:
                    errors.append(gt_error)
            sid = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
            entities = output_entities(flair_entities) if flair_entities else (("sub", sub),) + ((("ses", ses),) if ses else ())
            match.subjects.append(Subject(sid, picked["flair"], picked["t1"], gt, "; ".join(problems) or None, entities))
    if errors:
        raise ParameterError(f"BIDS input '{root}': " + " | ".join(errors))
    if not match.subjects:
        why = "; ".join(f"{s['what']}: {s['why']}" for s in match.skipped[:5])
        raise ParameterError(f"BIDS input '{root}' gave no subject to run ({why or 'no sub-* folders'})")
    for s in match.subjects:
        log.info("cohort: BIDS %s: FLAIR %s, T1w %s, lesion mask %s%s", s.id, _name(s.flair), _name(s.t1), _name(s.gt),
                 f" (cannot run: {s.problem})" if s.problem else "")  # fmt: skip
    for s in match.skipped:  # skipped by the user's own filter: info; for want of images: a warning
        level = logging.INFO if s["why"].startswith(("not in --", "has no session")) else logging.WARNING
        log.log(level, "cohort: BIDS %s skipped: %s", s["what"], s["why"])
    return match


def _name(path: Optional[str]) -> str:
    return Path(path).name if path else "none"


def _lesion_mask(derivative, sub: str, ses: Optional[str], flair_entities: dict[str, Any], where: str) -> tuple[Optional[str], Optional[str]]:
    """Return (mask path or None, error or None) for one subject and session of the lesion-mask pipeline."""
    from bids.layout import Query

    files = derivative.get(subject=sub, session=ses if ses else Query.NONE, suffix=list(MASK_SUFFIXES), extension=NIFTI)
    files = [f for f in files if str(_entities(f).get("label", "")).lower() in LESION_LABELS
             or str(_entities(f).get("desc", "")).lower() in LESION_LABELS]  # fmt: skip
    if len(files) > 1 and flair_entities.get("acquisition"):
        same = [f for f in files if _entities(f).get("acquisition") == flair_entities["acquisition"]]
        files = same or files
    if len(files) > 1:
        return None, _ambiguity(f"{where} (--gt-derivative)", files, "lesion mask", choosable=False)
    return (files[0].path if files else None), None


__all__ = ["BidsMatch", "BidsQuery", "discover_bids_subjects", "is_bids_dataset", "output_entities"]
