"""The anchor study's analyses reproduced on held-out phantoms: ``run_study`` over one or more models.

Per model and lesion: context needed (context probe), FLAIR/MPRAGE saliency inside the lesion vs its
1-3 mm ring and where the saliency peaks (explainers), TP/FP/FN status and which mimic an FP sits on.
Everything is computed by the existing probe/explain code through ``analysis.analyse_lesions``.
"""

from LesionXAILib.study.run import StudyResult, StudySettings, run_study
from LesionXAILib.study.summary import ANCHOR_CONTEXT_MM, summarise

__all__ = ["ANCHOR_CONTEXT_MM", "StudyResult", "StudySettings", "run_study", "summarise"]
