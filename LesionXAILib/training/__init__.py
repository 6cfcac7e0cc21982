"""Training and evaluating the demo segmenter on phantoms (``lesionxai train`` / ``lesionxai evaluate``).

Training uses phantom seeds >= ``TRAIN_SEED_START``; evaluation and tests use seeds below it, so a
model is never evaluated on a subject it has seen.
"""

from LesionXAILib.training.data import TRAIN_SEED_START, PatchSampler, TrainingSubject, make_subjects
from LesionXAILib.training.evaluation import EvaluationResult, evaluate_model
from LesionXAILib.training.trainer import TrainSettings, TrainResult, train_model

__all__ = [
    "TRAIN_SEED_START",
    "EvaluationResult",
    "PatchSampler",
    "TrainResult",
    "TrainSettings",
    "TrainingSubject",
    "evaluate_model",
    "make_subjects",
    "train_model",
]
