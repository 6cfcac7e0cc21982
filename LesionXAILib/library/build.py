"""Filling a lesion library: one subject from its images (segment, embed, crop), or every finished subject of a cohort.

A cohort folder (``LesionXAILib.cohort.store``) keeps, per finished subject, the instance label map
(``subjects/<id>/instances.nii.gz``, FN lesions included under their own ids), the instance table
(``instances.json``) and, in ``DONE.json``, the input files. The library re-reads the inputs, prepares
them as the model's contract says and embeds every lesion of the stored label map, so its TP/FP/FN
statuses are exactly the cohort's.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from LesionXAILib.errors import InputImageError, ParameterError
from LesionXAILib.geometry import Geometry
from LesionXAILib.instances import Instance
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.library.crops import intensity_window, lesion_crops
from LesionXAILib.library.embedding import EmbeddingSettings, embed_lesions, identity_record
from LesionXAILib.library.store import LesionLibrary
from LesionXAILib.library.table import LesionTable, empty_table

log = logging.getLogger(__name__)


def lesion_table(
    model: LesionModel,
    subject: str,
    normalized: np.ndarray,
    flair: np.ndarray,
    labels: np.ndarray,
    instances: Sequence[Instance],
    geometry: Geometry,
    settings: EmbeddingSettings = EmbeddingSettings(),
) -> LesionTable:
    """Return the LesionTable of ``instances`` (rows of the label map ``labels``) of one subject: embeddings and crops."""
    if not instances:
        return empty_table()
    ids = [r.id for r in instances]
    spacing = geometry.spacing_kji
    emb = embed_lesions(model, normalized, labels, ids, spacing, settings)
    window = intensity_window(flair)
    crops, outlines = [], []
    for r in instances:
        centre = tuple(reversed(r.centroid_ijk))  # k, j, i
        c, m = lesion_crops(flair, labels == r.id, centre, spacing, window)
        crops.append(c)
        outlines.append(m)
    n = len(instances)
    return LesionTable(
        subject=np.array([subject] * n, dtype=object), id=np.array(ids, dtype=np.int64),
        status=np.array([r.status for r in instances], dtype=object), voxels=np.array([r.voxels for r in instances], dtype=np.int64),
        volume_mm3=np.array([r.volume_mm3 for r in instances], dtype=np.float64),
        centroid_ras=np.array([r.centroid_ras for r in instances], dtype=np.float64).reshape(n, 3),
        mean_probability=np.array([r.mean_probability for r in instances], dtype=np.float64),
        embedding=emb, crop=np.stack(crops), crop_mask=np.stack(outlines),
    )  # fmt: skip


def result_table(model: LesionModel, subject: str, result: Any, settings: EmbeddingSettings = EmbeddingSettings(),
                 ids: Optional[Sequence[int]] = None) -> LesionTable:  # fmt: skip
    """Return the LesionTable of a SegmentationResult's lesions (``ids``: a subset, default all)."""
    inst = result.instances
    rows = inst.instances if ids is None else [inst.get(i) for i in ids]
    return lesion_table(model, subject, result.normalized, result.pair.flair, inst.labels, rows, result.geometry, settings)


def library_identity(model: LesionModel, settings: EmbeddingSettings) -> dict[str, Any]:
    """Return the identity record a library built with ``model`` and ``settings`` carries."""
    return identity_record(model, settings)


def add_subject(library: LesionLibrary, model: LesionModel, subject: str, result: Any,
                settings: EmbeddingSettings = EmbeddingSettings()) -> LesionTable:  # fmt: skip
    """Embed every lesion of a segmented subject into ``library`` (replacing an entry of the same name); return its table."""
    table = result_table(model, subject, result, settings)
    if subject in library.subjects():
        log.info("library: subject '%s' was already in the library; its lesions are replaced", subject)
    library.add(subject, table)
    return table


def cohort_model_record(cohort: str | os.PathLike) -> dict[str, Any]:
    """Return the ``model`` record of a cohort folder's cohort.json (path, sha256, config)."""
    from LesionXAILib.cohort.store import COHORT_FILE

    p = Path(cohort) / COHORT_FILE
    if not p.is_file():
        raise ParameterError(f"'{cohort}' is not a cohort output folder (no {COHORT_FILE}); run `lesionxai cohort` first")
    try:
        record = json.loads(p.read_text())
    except ValueError as exc:
        raise ParameterError(f"cohort '{cohort}': {COHORT_FILE} is not valid JSON ({exc})") from None
    return record


def check_cohort_model(record: dict[str, Any], model_path: Optional[str]) -> None:
    """Raise ParameterError if the cohort was computed with a model other than ``model_path`` (by content hash)."""
    from LesionXAILib.models.identity import source_hash

    model = record.get("model") or {}
    expected = model.get("sha256")
    if model_path is None or expected is None or not Path(model_path).exists():
        return
    # a folder model (nnU-Net, bundle) is identified by its defining files under the cohort's format options
    actual = source_hash(model_path, model.get("options") or None)
    if actual != expected:
        raise ParameterError(
            f"cohort was computed with another model (sha256 {expected[:12]}, --model {actual[:12]}); "
            "its lesions (TP/FP/FN) belong to that model: build the library with the cohort's model"
        )


def finished_subjects(cohort: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """Return (subject id, DONE.json content) of every finished subject of a cohort folder, sorted by id."""
    from LesionXAILib.cohort.store import CohortStore

    store = CohortStore(cohort)
    record = cohort_model_record(cohort)
    fingerprint = record.get("fingerprint")
    out = []
    if store.subjects_root.is_dir():
        for d in sorted(p for p in store.subjects_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            done = store.done_marker(d.name)
            if done is not None and done.get("fingerprint") == fingerprint:
                out.append((d.name, done))
    if not out:
        raise ParameterError(f"cohort '{cohort}' holds no finished subject (run or resume `lesionxai cohort` first)")
    return out


def cohort_subject_table(model: LesionModel, cohort: str | os.PathLike, subject: str, done: dict[str, Any],
                         settings: EmbeddingSettings = EmbeddingSettings()) -> LesionTable:  # fmt: skip
    """Return the LesionTable of one finished cohort subject (its stored instances, re-embedded from its inputs)."""
    from LesionXAILib.image_io import load_pair, read_label_volume
    from LesionXAILib.segmentation import prepare_input

    folder = Path(cohort) / "subjects" / subject
    inputs = done.get("inputs") or {}
    flair, t1 = inputs.get("flair"), inputs.get("t1")
    if not flair or not t1:
        raise InputImageError(f"cohort subject '{subject}': DONE.json lists no input images")
    pair = load_pair(flair, t1)
    summary = json.loads((folder / "instances.json").read_text())
    label_image = read_label_volume(folder / "instances.nii.gz", "cohort instance map")
    labels = _labels_on(label_image, pair.geometry, subject)
    rows = [_instance_from_dict(d) for d in summary.get("instances", [])]
    model.bind(pair.geometry)
    x = prepare_input(pair, model)
    return lesion_table(model, subject, x, pair.flair, labels, rows, pair.geometry, settings)


def _labels_on(image: Any, geometry: Geometry, subject: str) -> np.ndarray:
    import SimpleITK as sitk

    g = Geometry.from_image(image)
    if not g.almost_equal(geometry):
        raise InputImageError(f"cohort subject '{subject}': instances.nii.gz is not on its FLAIR's grid (inputs moved or changed?)")
    return sitk.GetArrayFromImage(image).astype(np.int32)


def _instance_from_dict(d: dict[str, Any]) -> Instance:
    keys = ("id", "status", "voxels", "volume_mm3", "centroid_ijk", "centroid_ras", "bbox_ijk_min", "bbox_ijk_max",
            "mean_probability", "max_probability", "source")  # fmt: skip
    kw = {k: d[k] for k in keys if k in d}
    for k in ("centroid_ijk", "centroid_ras", "bbox_ijk_min", "bbox_ijk_max"):
        kw[k] = tuple(kw[k])
    for k in ("mean_probability", "max_probability"):
        kw[k] = float("nan") if kw.get(k) is None else float(kw[k])
    return Instance(**kw)


def build_from_cohort(
    cohort: str | os.PathLike,
    library_path: str | os.PathLike,
    model: LesionModel,
    settings: EmbeddingSettings = EmbeddingSettings(),
    progress: Optional[Callable[[int, int, str], None]] = None,
) -> tuple[LesionLibrary, dict[str, int]]:
    """Return (library, {subject: lesion count}) after embedding every finished subject of ``cohort`` into it."""
    subjects = finished_subjects(cohort)
    library = LesionLibrary.create_or_open(library_path, library_identity(model, settings))
    counts = {}
    for n, (sid, done) in enumerate(subjects):
        table = cohort_subject_table(model, cohort, sid, done, settings)
        library.add(sid, table)
        counts[sid] = len(table)
        if progress is not None:
            progress(n + 1, len(subjects), sid)
    return library, counts
