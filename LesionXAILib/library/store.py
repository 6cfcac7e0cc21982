"""The lesion library on disk: a folder of Parquet files (one per subject) tied to the model that embedded them.

Layout of LIB:
  library.json              format, the model identity (weights sha256, config, embedding layers and
                            settings), embedding dimension, crop size
  subjects/<subject>.parquet  one row per lesion (columns of ``LesionTable``; the embedding a
                            fixed-size list of float32, crops as raw uint8 bytes), the same identity
                            in the file's key-value metadata
Adding a subject writes (or replaces) one file atomically, so a library grows without rewriting
what it holds. Embeddings from different models are not comparable: opening a library with a model
whose identity differs is refused, naming the differences.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from LesionXAILib.records import record_differences
from LesionXAILib.atomic_write import atomic_path, write_json
from LesionXAILib.cohort.subjects import check_subject_id
from LesionXAILib.errors import ParameterError
from LesionXAILib.library.table import LesionTable, concat_tables, empty_table

FORMAT = "lesionxai-lesion-library-v1"
INDEX_FILE = "library.json"
SUBJECTS_DIR = "subjects"
METADATA_KEY = b"lesionxai.library"
PARQUET_INSTALL_HINT = "the lesion library needs pyarrow: pip install 'lesionxai[library]'"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - the 'library' extra is missing
        raise ParameterError(PARQUET_INSTALL_HINT) from None
    return pa, pq


def table_to_arrow(table: LesionTable, identity: dict[str, Any]) -> Any:
    """Return a pyarrow Table of ``table`` with ``identity`` in its schema metadata."""
    pa, _ = _pyarrow()
    n, dim = len(table), table.dimension
    crop_bytes = table.crop.reshape(n, -1) if n else np.zeros((0, 0), np.uint8)
    mask_bytes = table.crop_mask.reshape(n, -1) if n else np.zeros((0, 0), np.uint8)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(table.embedding, np.float32).ravel()), dim)
    columns = {
        "subject": pa.array([str(s) for s in table.subject], pa.string()),
        "id": pa.array(table.id.astype(np.int64)),
        "status": pa.array([str(s) for s in table.status], pa.string()),
        "voxels": pa.array(table.voxels.astype(np.int64)),
        "volume_mm3": pa.array(table.volume_mm3.astype(np.float64)),
        "centroid_r": pa.array(table.centroid_ras[:, 0].astype(np.float64)),
        "centroid_a": pa.array(table.centroid_ras[:, 1].astype(np.float64)),
        "centroid_s": pa.array(table.centroid_ras[:, 2].astype(np.float64)),
        "mean_probability": pa.array(table.mean_probability.astype(np.float64)),
        "embedding": emb,
        "crop": pa.array([bytes(r) for r in crop_bytes], pa.binary()),
        "crop_mask": pa.array([bytes(r) for r in mask_bytes], pa.binary()),
    }
    meta = {METADATA_KEY: json.dumps({"format": FORMAT, "identity": identity, "crop_size": int(table.crop.shape[-1])}).encode()}
    return pa.table(columns).replace_schema_metadata(meta)


def arrow_to_table(arrow: Any, crop_size: int) -> LesionTable:
    """Return the LesionTable held by a pyarrow Table written by :func:`table_to_arrow`."""
    n = arrow.num_rows
    if n == 0:
        return empty_table(crop_size=crop_size)
    emb_col = arrow.column("embedding").combine_chunks()
    dim = emb_col.type.list_size
    emb = emb_col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, dim)

    def crops(name: str) -> np.ndarray:
        raw = b"".join(arrow.column(name).to_pylist())
        return np.frombuffer(raw, dtype=np.uint8).reshape(n, 3, crop_size, crop_size).copy()

    col = lambda name: arrow.column(name).to_numpy(zero_copy_only=False)  # noqa: E731
    return LesionTable(
        subject=np.array(arrow.column("subject").to_pylist(), dtype=object), id=col("id").astype(np.int64),
        status=np.array(arrow.column("status").to_pylist(), dtype=object), voxels=col("voxels").astype(np.int64),
        volume_mm3=col("volume_mm3").astype(np.float64),
        centroid_ras=np.stack([col(f"centroid_{a}") for a in "ras"], axis=1).astype(np.float64),
        mean_probability=col("mean_probability").astype(np.float64), embedding=emb,
        crop=crops("crop"), crop_mask=crops("crop_mask"),
    )  # fmt: skip


def write_parquet(path: str | os.PathLike, table: LesionTable, identity: dict[str, Any]) -> Path:
    """Write ``table`` as one Parquet file atomically (identity in its metadata) and return its path."""
    _, pq = _pyarrow()
    arrow = table_to_arrow(table, identity)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, str(tmp), compression="zstd")
    return Path(path)


def read_parquet(path: str | os.PathLike) -> tuple[LesionTable, dict[str, Any]]:
    """Return (table, file metadata) of a Parquet file written by :func:`write_parquet`."""
    _, pq = _pyarrow()
    try:
        arrow = pq.read_table(str(path))
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise ParameterError(f"library file '{path}' cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
    raw = (arrow.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ParameterError(f"'{path}' is a Parquet file but not part of a LesionXAI lesion library (no library metadata)")
    meta = json.loads(raw)
    return arrow_to_table(arrow, int(meta["crop_size"])), meta


class LesionLibrary:
    """A lesion library folder: its identity record and its subjects' Parquet files."""

    def __init__(self, path: str | os.PathLike, index: dict[str, Any]) -> None:
        self.path = Path(path)
        self.index = index

    @property
    def identity(self) -> dict[str, Any]:
        """Return the identity of the model (and embedding) every lesion of this library was embedded with."""
        return self.index["identity"]

    @classmethod
    def open(cls, path: str | os.PathLike) -> "LesionLibrary":
        """Return the library at ``path`` (ParameterError if it is not one)."""
        p = Path(path)
        index_path = p / INDEX_FILE
        if not p.is_dir() or not index_path.is_file():
            raise ParameterError(f"'{p}' is not a lesion library (no {INDEX_FILE}); build one with `lesionxai library build`")
        try:
            index = json.loads(index_path.read_text())
        except ValueError as exc:
            raise ParameterError(f"lesion library '{p}': {INDEX_FILE} is not valid JSON ({exc})") from None
        if index.get("format") != FORMAT:
            raise ParameterError(f"lesion library '{p}': unknown format '{index.get('format')}' (expected {FORMAT})")
        return cls(p, index)

    @classmethod
    def create_or_open(cls, path: str | os.PathLike, identity: dict[str, Any]) -> "LesionLibrary":
        """Return the library at ``path`` for adding lesions embedded by ``identity`` (a new one if there is none)."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise ParameterError(f"library '{p}' exists and is not a folder")
        if (p / INDEX_FILE).exists():
            lib = cls.open(p)
            lib.check_identity(identity)
            return lib
        if p.is_dir() and any(p.iterdir()):
            raise ParameterError(f"'{p}' is a non-empty folder that is not a lesion library; choose a new --out")
        index = {"format": FORMAT, "identity": identity}
        write_json(p / INDEX_FILE, index)
        return cls(p, index)

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Raise ParameterError unless ``identity`` (model + embedding) is the one this library was built with."""
        if identity == self.identity:
            return
        diff = record_differences(self.identity, identity)
        mine = str(self.identity.get("weights_sha256", ""))[:12]
        theirs = str(identity.get("weights_sha256", ""))[:12]
        raise ParameterError(
            f"lesion library '{self.path}' holds embeddings of another model or embedding (library weights sha256 {mine}, "
            f"this model {theirs}; differences: {', '.join(diff[:6])}); embeddings of different models are not comparable: "
            "use the model the library was built with, or build a new library"
        )

    def subject_path(self, subject: str) -> Path:
        """Return the Parquet file of ``subject``."""
        return self.path / SUBJECTS_DIR / f"{check_subject_id(subject)}.parquet"

    def subjects(self) -> list[str]:
        """Return the subject names held, sorted."""
        folder = self.path / SUBJECTS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(".parquet")] for p in folder.glob("*.parquet") if not p.name.startswith("."))

    def add(self, subject: str, table: LesionTable) -> Path:
        """Write (or replace) ``subject``'s lesions; return the file written."""
        if len(table) and self.index.get("dimension") not in (None, table.dimension):
            raise ParameterError(
                f"lesion library '{self.path}': embeddings of length {table.dimension} do not fit its {self.index['dimension']}"
            )
        if len(table) and "dimension" not in self.index:
            self.index = {**self.index, "dimension": table.dimension, "crop_size": int(table.crop.shape[-1])}
            write_json(self.path / INDEX_FILE, self.index)
        return write_parquet(self.subject_path(subject), table, self.identity)

    def load(self, exclude: Optional[set[str]] = None) -> LesionTable:
        """Return every lesion of the library (subjects sorted by name); each file's identity is checked."""
        parts = []
        for subject in self.subjects():
            if exclude and subject in exclude:
                continue
            table, meta = read_parquet(self.subject_path(subject))
            if meta.get("identity") != self.identity:
                raise ParameterError(
                    f"lesion library '{self.path}': subject file '{subject}.parquet' was embedded by another model "
                    "than the library's; remove it or rebuild the library"
                )
            parts.append(table)
        return concat_tables(parts)
