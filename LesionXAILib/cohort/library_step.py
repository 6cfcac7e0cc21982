"""``lesionxai cohort --library LIB``: the run's lesions embedded into a lesion library, as `library build --cohort` does.

The library is opened (or created) before any subject is computed, so a library of another model, or a
folder that is not a library, is refused at once; once the run ends, every finished subject of the
cohort folder is embedded by :func:`LesionXAILib.library.build.build_from_cohort` -- the very function
behind ``lesionxai library build --cohort OUT --out LIB`` -- so both give the same rows and embeddings.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from LesionXAILib.errors import ParameterError

log = logging.getLogger(__name__)


def open_run_library(path: str | os.PathLike, out: str | os.PathLike, model: Any) -> Any:
    """Return the LesionLibrary at ``path`` for ``model`` (created if missing); refuse the cohort folder or another model's library."""
    from LesionXAILib.library.build import library_identity
    from LesionXAILib.library.embedding import EmbeddingSettings
    from LesionXAILib.library.store import LesionLibrary

    lib, cohort = Path(path).resolve(), Path(out).resolve()
    if lib == cohort or cohort in lib.parents or lib in cohort.parents:
        raise ParameterError(f"--library '{path}' must lie outside the cohort output '{out}' (and not contain it)")
    return LesionLibrary.create_or_open(path, library_identity(model, EmbeddingSettings()))


def fill_run_library(path: str | os.PathLike, out: str | os.PathLike, model: Any) -> dict[str, int]:
    """Embed every finished subject of the cohort folder ``out`` into the library at ``path``; return {subject: lesions}."""
    from LesionXAILib.library.build import build_from_cohort
    from LesionXAILib.library.embedding import EmbeddingSettings

    library, counts = build_from_cohort(out, path, model, EmbeddingSettings(),
                                        progress=lambda n, total, sid: log.info("library: %s (%d/%d)", sid, n, total))  # fmt: skip
    log.info("library %s: %d lesions of %d subjects from this cohort (%d subjects in all)", library.path,
             sum(counts.values()), len(counts), len(library.subjects()))  # fmt: skip
    return counts
