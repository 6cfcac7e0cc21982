"""Analysing a segmented subject and writing it, lesion by lesion: the loop the demo and the cohort share.

For every lesion: explain + probe (``analysis.analyse_lesions``, which shares the per-subject work),
hand the analysis to the caller (the cohort scores it there), write its maps, then release the
full-grid arrays while keeping their names (``explanations.json`` lists them); finally write the run
files (``analysis.write_analysis_run``), laid out like the ``explain`` and ``probe`` commands' outputs.
Memory stays one lesion's maps however many lesions the subject has.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from LesionXAILib.progress import CancelToken, ProgressCallback

# stage names reported to ``on_stage`` (the demo times them)
ANALYSE_STAGE = "explain + probe"
WRITE_STAGE = "write maps"


def analyse_and_write_subject(
    model: Any,
    result: Any,
    out_dir: str | os.PathLike,
    settings: Any,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    on_lesion: Optional[Callable[[Any], None]] = None,
    write_lesion_files: bool = True,
    protected: Iterable[Optional[str | os.PathLike]] = (),
    on_stage: Optional[Callable[[str], None]] = None,
) -> list[Any]:
    """Return the LesionAnalysis of every lesion of ``result`` (maps released), after writing them into ``out_dir``.

    ``on_lesion(analysis)`` runs before the lesion's maps are written and released; ``protected`` lists
    input files no output may overwrite; ``on_stage(name)`` reports ``ANALYSE_STAGE`` / ``WRITE_STAGE``.
    """
    from LesionXAILib.analysis import analyse_lesions, write_analysis_run

    out = Path(out_dir)
    guard = list(protected)
    stage = on_stage if on_stage is not None else (lambda name: None)
    analyses = []
    stage(ANALYSE_STAGE)
    for analysis in analyse_lesions(model, result, None, settings, progress, cancel):
        if on_lesion is not None:
            on_lesion(analysis)
        stage(WRITE_STAGE)
        if write_lesion_files:
            analysis.write(out / f"instance_{analysis.id}", result.geometry, guard)
        if analysis.explanation is not None:
            analysis.explanation.maps = dict.fromkeys(analysis.explanation.maps)
        analyses.append(analysis)
        stage(ANALYSE_STAGE)
    stage(WRITE_STAGE)
    write_analysis_run(out, result, analyses, settings, guard)
    return analyses
