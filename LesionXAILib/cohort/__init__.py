"""The cohort study: every subject of a folder or manifest through segmentation, per-lesion analysis and
explanation metrics, resumable, serial or on Dask distributed, with TP/FP/FN group statistics and an
offline HTML report.
"""

from LesionXAILib.cohort.p_adjust import adjust, benjamini_hochberg, holm
from LesionXAILib.cohort.runner import CohortResult, run_cohort
from LesionXAILib.cohort.settings import CohortSettings, ModelSpec
from LesionXAILib.cohort.statistics import group_statistics
from LesionXAILib.cohort.subject_run import SubjectOutcome, process_subject
from LesionXAILib.cohort.subjects import Subject, discover_subjects

__all__ = [
    "CohortResult",
    "CohortSettings",
    "ModelSpec",
    "Subject",
    "SubjectOutcome",
    "adjust",
    "benjamini_hochberg",
    "discover_subjects",
    "group_statistics",
    "holm",
    "process_subject",
    "run_cohort",
]
