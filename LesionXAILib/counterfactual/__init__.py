"""Per-lesion counterfactuals by optimisation: the smallest smooth change that makes the model drop, or find, a lesion.

For one lesion, a stationary velocity field on a coarse control grid (integrated by scaling and
squaring into a diffeomorphic warp) and a smooth additive intensity change are optimised until the
segmentation's detection rule flips (``search``); the result is re-segmented by the same model to
confirm the flip (``check``) and described by its displacement, log-Jacobian and intensity maps
(``result``, ``output``).
"""

from LesionXAILib.counterfactual.api import iter_counterfactuals, lesion_counterfactual, plan
from LesionXAILib.counterfactual.result import Counterfactual
from LesionXAILib.counterfactual.settings import CHANGES, CHECKS, MODES, CounterfactualSettings

__all__ = [
    "CHANGES", "CHECKS", "MODES", "Counterfactual", "CounterfactualSettings", "iter_counterfactuals",
    "lesion_counterfactual", "plan",
]  # fmt: skip
