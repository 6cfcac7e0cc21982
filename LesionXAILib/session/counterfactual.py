"""A session's counterfactual of one lesion, for the front ends: full-grid images to show and a short summary.

The search itself is :func:`LesionXAILib.counterfactual.lesion_counterfactual` (what ``lesionxai
counterfactual`` runs), on the session's model and segmentation, so a front end needs no second model
load or second segmentation. :func:`compute_counterfactual` touches no scene (a worker thread may run
it); the arrays it returns lie on the FLAIR grid and are written into new nodes by
:meth:`LesionXAILib.mrml.writer.SceneWriter.show_counterfactual`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from LesionXAILib.counterfactual import Counterfactual, CounterfactualSettings, lesion_counterfactual, plan
from LesionXAILib.counterfactual.output import LOG_FLOOR, original_raw


@dataclass
class CounterfactualView:
    """One lesion's counterfactual for display: the search result, full-grid (k, j, i) maps, summary and text."""

    lesion_id: int
    key: Optional[str]  # the session key it was computed under (inputs, model, settings)
    counterfactual: Counterfactual
    flair: np.ndarray  # counterfactual FLAIR on the FLAIR grid (raw units)
    log_jacobian: np.ndarray  # log of the anatomy's volume change: < 0 shrinkage, > 0 growth
    summary: dict

    @property
    def text(self) -> str:
        """Return the panel's short summary (see :func:`summary_text`)."""
        return summary_text(self.summary)


def compute_counterfactual(
    session: Any,
    lesion_id: int,
    settings: CounterfactualSettings = CounterfactualSettings(),
    progress: Any = None,
    cancel: Any = None,
) -> CounterfactualView:
    """Return the counterfactual of one lesion of the session's last run (no scene: a worker thread may run it)."""
    result = session.check_current()
    lesion_id = int(lesion_id)
    [(instance_id, direction)] = plan(result.instances, [lesion_id], settings.mode)  # unknown id / wrong mode: InstanceError
    key = session.key
    cf = lesion_counterfactual(session.model, result, instance_id, direction, settings, progress, cancel)
    flair = original_raw(result, cf)[0]
    log_jacobian = cf.full(cf.log_jacobian(LOG_FLOOR))
    return CounterfactualView(lesion_id, key, cf, flair, log_jacobian, cf.summary())


def _number(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(float(value), fmt)


def summary_text(summary: dict) -> str:
    """Return a few lines: flipped or not, probability before/after, volume change, largest displacement."""
    name = f"Lesion {summary['instance_id']} ({summary.get('status', '')})"
    if summary.get("flipped"):
        outcome = "the model no longer detects it" if summary.get("mode") == "remove" else "the model now detects it"
        head = f"{name}: flipped, {outcome}"
    else:
        head = f"{name}: not flipped within the search budget"
    p = summary.get("probability") or {}
    v = summary.get("lesion_volume") or {}
    change = v.get("change_percent")
    lines = [
        head,
        f"Mean probability {_number(p.get('mean_before'), '.3f')} -> {_number(p.get('mean_after'), '.3f')}",
        f"Lesion volume {_number(v.get('before_mm3'), '.1f')} -> {_number(v.get('after_mm3'), '.1f')} mm³"
        + ("" if change is None else f" ({float(change):+.1f} %)"),
        f"Largest displacement {_number(summary.get('largest_displacement_mm'), '.2f')} mm",
    ]
    if not (summary.get("jacobian") or {}).get("positive", True):
        lines.append("Warning: the warp folds (Jacobian <= 0 somewhere)")
    return "\n".join(lines)
