"""The search: normalised steepest descent on the control points, stopping at the first counterfactual that flips.

Objective: ``w_t * T + penalties``. The target term T is a hinge on the lesion's log-odds: for 'remove',
``sum (z - logit(threshold) + margin)+`` over the voxels of the thresholded components that still overlap
the lesion (the voxels that keep it detected), for 'add' ``sum (logit(threshold) + margin - z)+`` over the
lesion, both divided by the lesion's voxel count. Penalties: squared displacement (mm^2) and intensity
change (normalised units^2) summed over the box per lesion voxel, squared control-grid differences
(roughness), and a barrier on Jacobian determinants below 0.25 that keeps the warp from folding.
``w_t`` grows by ``target_growth`` per iteration, so penalties cannot stall the search short of a flip.

Each step moves the control point with the largest gradient by ``step_mm`` (intensities are measured
in ``mm / intensity_per_mm``), the others in proportion to their gradient: control points the target
hardly depends on hardly move, which keeps the change near the lesion. The detection rule is applied
to every iterate; at the first flip the segment from the last unflipped iterate is bisected
``refine_steps`` times, so the reported counterfactual goes no further than needed along that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from LesionXAILib.counterfactual.problem import LesionProblem, Rendered
from LesionXAILib.counterfactual.warp import jacobian_determinant
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.probes.detection import overlapping_components, score_prediction
from LesionXAILib.progress import ProgressReporter

JACOBIAN_FLOOR = 0.25  # determinants below this are penalised (folding starts at 0)
JACOBIAN_WEIGHT = 10.0


@dataclass(frozen=True)
class DetectionRule:
    """Threshold, minimum component size and connectivity of the segmentation; 'want' is the detection the search aims for."""

    threshold: float
    min_size_voxels: int
    connectivity: int
    want_detected: bool

    @property
    def log_odds(self) -> float:
        """Return logit(threshold)."""
        t = min(max(self.threshold, 1e-6), 1 - 1e-6)
        return math.log(t / (1 - t))

    def detected(self, probability: np.ndarray, region: np.ndarray) -> bool:
        """Return True if a thresholded component of at least the minimum size overlaps ``region``."""
        return score_prediction(probability, region, self.threshold, self.min_size_voxels, self.connectivity).detected


@dataclass
class SearchState:
    """Control points (velocity in mm, intensity in normalised units) of one iterate."""

    velocity: torch.Tensor
    intensity: torch.Tensor

    def blend(self, other: "SearchState", t: float) -> "SearchState":
        """Return the iterate a fraction ``t`` of the way from this one to ``other``."""
        return SearchState(self.velocity + t * (other.velocity - self.velocity), self.intensity + t * (other.intensity - self.intensity))


@dataclass
class SearchOutcome:
    """Where the search stopped: the flipped iterate (or the last one), its rendering and how long it took."""

    state: SearchState
    rendered: Rendered
    flipped: bool
    iterations: int
    evaluations: int
    last_state: SearchState


def lesion_log_odds(model: LesionModel, output: torch.Tensor) -> torch.Tensor:
    """Return the (B, 1, ...) log-odds of the lesion probability (the logit for sigmoid heads)."""
    if model.config.head == "sigmoid":
        return model.lesion_logit(output)
    i = model.config.lesion_index
    others = torch.cat([output[:, :i], output[:, i + 1 :]], dim=1)
    return output[:, i : i + 1] - torch.logsumexp(others, dim=1, keepdim=True)


def evaluate(model: LesionModel, network_input: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (log-odds, raw output) of one (C, crop) input, each without the batch dimension."""
    out = model(network_input[None].to(model.device))
    return lesion_log_odds(model, out)[0, 0], out[0]


class Search:
    """Runs the normalised steepest descent for one LesionProblem with the model and detection rule."""

    def __init__(self, model: LesionModel, problem: LesionProblem, rule: DetectionRule) -> None:
        self.model = model
        self.problem = problem
        self.rule = rule
        self.settings = problem.settings
        self.evaluations = 0
        self.weight = 1.0  # of the target term; grows by target_growth per step, across restarts

    def is_flipped(self, rendered: Rendered, log_odds: torch.Tensor) -> bool:
        """Return True if this iterate's detection differs from the original's."""
        prob = torch.sigmoid(log_odds.detach()).cpu().numpy()
        return self.rule.detected(prob, self.problem.region_crop(rendered.displacement)) == self.rule.want_detected

    def objective(self, rendered: Rendered, log_odds: torch.Tensor, state: SearchState, weight: float) -> torch.Tensor:
        """Return the scalar loss of one iterate (see the module docstring)."""
        p, s = self.problem, self.settings
        n = float(max(p.lesion_voxels, 1))
        region = p.region_crop(rendered.displacement.detach())
        if self.rule.want_detected:
            hinge = torch.relu(self.rule.log_odds + s.logit_margin - log_odds)
            chosen = region
        else:
            hinge = torch.relu(log_odds - self.rule.log_odds + s.logit_margin)
            prob = torch.sigmoid(log_odds.detach()).cpu().numpy()
            chosen = region | overlapping_components(prob, region, self.rule.threshold, 1, self.rule.connectivity)
        target = hinge[torch.from_numpy(chosen).to(hinge.device)].sum() / n
        spacing = torch.tensor(p.spacing_ijk, dtype=rendered.displacement.dtype).view(3, 1, 1, 1)
        loss = weight * target
        loss = loss + s.displacement_weight * ((rendered.displacement * spacing) ** 2).sum() / n
        normalised_change = rendered.intensity * p.intensity_scale
        loss = loss + s.intensity_weight * (normalised_change**2).sum() / n
        rough = _roughness(state.velocity)
        if s.intensity_per_mm > 0:
            rough = rough + _roughness(state.intensity / s.intensity_per_mm)
        loss = loss + s.roughness_weight * rough
        det = jacobian_determinant(rendered.displacement)
        return loss + JACOBIAN_WEIGHT * (torch.relu(JACOBIAN_FLOOR - det) ** 2).sum()

    def render_and_check(self, state: SearchState) -> tuple[Rendered, bool]:
        """Return the rendering of ``state`` and whether it flips (no gradients)."""
        with torch.no_grad():
            rendered = self.problem.render(state.velocity, state.intensity)
            log_odds, _ = evaluate(self.model, rendered.network_input)
        self.evaluations += 1
        return rendered, self.is_flipped(rendered, log_odds)

    def run(
        self, start: SearchState, reporter: ProgressReporter, max_iter: Optional[int] = None, push: int = 0
    ) -> SearchOutcome:
        """Return the first flipped iterate from ``start`` (refined by bisection), or the last one if none flips.

        ``push``: that many steps are taken before the detection is looked at (and the flip is then not
        refined), to go beyond a flip the search crop saw but a wider re-segmentation did not confirm.
        """
        s = self.settings
        budget = s.max_iter if max_iter is None else max_iter
        state = SearchState(start.velocity.clone(), start.intensity.clone())
        previous: Optional[SearchState] = None
        for iteration in range(budget + 1):
            v = state.velocity.clone().requires_grad_(s.warps)
            c = state.intensity.clone().requires_grad_(s.changes_intensity)
            rendered = self.problem.render(v, c)
            log_odds, _ = evaluate(self.model, rendered.network_input)
            self.evaluations += 1
            if iteration >= push and self.is_flipped(rendered, log_odds):
                return self._refine(previous if push == 0 else None, state, iteration)
            if iteration == budget:
                break
            loss = self.objective(rendered, log_odds, SearchState(v, c), self.weight)
            state = SearchState(*self._step(loss, v, c))
            previous = SearchState(v.detach(), c.detach())
            self.weight *= s.target_growth
            p = float(torch.sigmoid(log_odds.detach())[torch.from_numpy(self.problem.mask_crop)].mean())
            reporter((iteration + 1) / (budget + 1), f"iteration {iteration + 1}, lesion probability {p:.3f}")
        with torch.no_grad():
            rendered = self.problem.render(state.velocity, state.intensity)
        return SearchOutcome(state, rendered, False, budget, self.evaluations, state)

    def _step(self, loss: torch.Tensor, v: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.settings
        inputs = [t for t in (v, c) if t.requires_grad]
        grads = dict(zip((id(t) for t in inputs), torch.autograd.grad(loss, inputs)))
        gv = grads.get(id(v), torch.zeros_like(v))
        gc = grads.get(id(c), torch.zeros_like(c)) * s.intensity_per_mm  # gradient w.r.t. intensity in mm units
        largest = float(max(gv.abs().max(), gc.abs().max()))
        if not math.isfinite(largest) or largest == 0:
            return v.detach(), c.detach()
        scale = s.step_mm / largest
        return (v - scale * gv).detach(), (c - scale * gc * s.intensity_per_mm).detach()

    def _refine(self, previous: Optional[SearchState], flipped: SearchState, iteration: int) -> SearchOutcome:
        """Return the flipped outcome after bisecting the last step ``refine_steps`` times."""
        lo, hi = 0.0, 1.0
        best = flipped
        if previous is not None:
            for _ in range(self.settings.refine_steps):
                mid = 0.5 * (lo + hi)
                _, flips = self.render_and_check(previous.blend(flipped, mid))
                if flips:
                    hi = mid
                else:
                    lo = mid
            best = previous.blend(flipped, hi)
        with torch.no_grad():
            rendered = self.problem.render(best.velocity, best.intensity)
        return SearchOutcome(best, rendered, True, iteration, self.evaluations, flipped)


def _roughness(control: torch.Tensor) -> torch.Tensor:
    """Return the sum of squared differences between neighbouring control points (zero layers included)."""
    from torch.nn import functional as F

    from LesionXAILib.counterfactual.lattice import ZERO_LAYERS

    z = ZERO_LAYERS
    padded = F.pad(control, (z, z, z, z, z, z))
    total = control.new_zeros(())
    for axis in (1, 2, 3):
        total = total + (torch.diff(padded, dim=axis) ** 2).sum()
    return total
