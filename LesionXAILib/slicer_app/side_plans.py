"""The module's counterfactual and similar-lesions work, split like the other long tasks (prepare / compute / finish).

``compute`` touches no MRML (the job runner's worker runs it); the controller's ``finish_*`` shows the
outcome in the scene on the main thread and returns the texts the panel shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from LesionXAILib.counterfactual import CounterfactualSettings
from LesionXAILib.errors import LesionXAIError
from LesionXAILib.session.counterfactual import CounterfactualView, compute_counterfactual
from LesionXAILib.session.similar import LibraryLink, SimilarPanel


@dataclass
class CounterfactualPlan:
    """A checked counterfactual request: ``compute`` it anywhere, then ``ModuleController.finish_counterfactual``."""

    session: Any
    lesion_id: int
    settings: CounterfactualSettings = CounterfactualSettings()

    def compute(self, progress: Any = None, cancel: Any = None) -> CounterfactualView:
        """Search the lesion's counterfactual on the session's model and segmentation (no MRML)."""
        return compute_counterfactual(self.session, self.lesion_id, self.settings, progress, cancel)


@dataclass
class CounterfactualPanel:
    """What the panel shows after a counterfactual: the lesion, the summary text and the overlay's colour scale."""

    lesion_id: int
    text: str
    legend_text: str
    summary: dict = field(default_factory=dict)


def similar_panel(link: Optional[LibraryLink], session: Any, lesion_id: int) -> Optional[SimilarPanel]:
    """Return the lesion's similar-lesions panel (None without a library); a failure becomes the panel's message."""
    if link is None:
        return None
    try:
        return link.neighbours(session, lesion_id)
    except LesionXAIError as exc:  # the explanation still shows; the panel says why it has no neighbours
        return SimilarPanel(int(lesion_id), message=str(exc), library=str(link.path))
