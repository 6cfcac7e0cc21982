"""The channel weights of each Grad-CAM variant (docs/methods.md#grad-cam), one small function per variant.

Notation: A^c_u the CAM layer's activations, g^c_u = dS_k/dA^c_u for instance k, u over the layer grid.
Most variants' map is ReLU(sum_c w_c A^c) (``cam.cam_from_weights``) with one weight per channel:

  gradcam            w_c = mean_u g^c_u                                   (Selvaraju et al. 2017)
  gradcam_relu       w_c = mean_u ReLU(g^c_u)                             (positive evidence only)
  gradcampp_paper    w_c = sum_u alpha^c_u ReLU(g^c_u),
                     alpha^c_u = g^2 / (2 g^2 + (sum_v A^c_v) g^3), 0 where the denominator is 0,
                     v over the whole brain's layer grid                  (Chattopadhay et al. 2018, closed form)
  gradcampp_local    the same closed form with sum_v A^c_v taken over the lesion's own box on the layer
                     grid (its bounding box mapped to the layer's resolution) instead of the whole brain
  gradcampp_anchor   MONAI's GradCAMpp as the anchor ran it: alpha^c_u = g^2 / (D^c_u + 1e-7) with
                     D^c_u = 2 g^2 + sum_v A^c_v (g^c_v)^3 (1 where that is 0), w_c = sum_u alpha^c_u ReLU(g^c_u);
                     MONAI multiplies g by exp(S) inside the ReLU, a positive constant per instance that
                     overflows float32 for S > 88 and is left out (the map is MONAI's divided by exp(S))
The spatial variants keep one weight per channel *and position*, map = ReLU(sum_c w^c_u A^c_u), so the map
lives where the instance's gradient does (its receptive region) instead of on every lesion of the brain:
  layercam           w^c_u = ReLU(g^c_u)                                  (LayerCAM, Jiang et al. 2021)
  gradcampp_spatial  w^c_u = alpha^c_u ReLU(g^c_u) with gradcampp_local's alpha: Grad-CAM++'s weights
                     before their sum over u
The reach variants keep a per-channel variant's map only on the lesion's crop, the region the fidelity
guard measured to hold the lesion's attribution (captured share >= 0.98): activations beyond it cannot
move this lesion's logits, so a whole-brain map shows every lesion the layer encodes, not this one. In
whole-volume mode the crop is the volume and the map is the per-channel variant's:
  gradcam_reach      gradcam's map x 1[crop]
  gradcampp_reach    gradcampp_local's map x 1[crop]
  gradcampp          the default Grad-CAM++ for one lesion: the variant in ``GRADCAMPP_DEFAULT``, chosen by
                     measurement (benchmarks/bench_cam_variants.py, README "Grad-CAM for one lesion")

Why the paper's form fails for instances: with S_c summed over a whole brain, S_c g >> 2 wherever
g > 0, so alpha ~ 1/(S_c g) and w_c collapses to (number of positive gradients) / S_c, independent of
the gradient's size: every lesion gets nearly the same map. Summing over the lesion's own box keeps
S_c g of order 1, where the closed form still weighs the gradient.

Before this module, ``gradcampp`` meant today's ``gradcampp_paper``; outputs written then carry that
map under the old name (their ``explanations.json`` records the CAM layer; the method was the closed form).
"""

from __future__ import annotations

from typing import Callable

import torch

from LesionXAILib.cam_methods import CAM_METHODS

# Each function takes g (K, C, *grid) float64, the crop's activations a (C, *grid) float64, the number
# of positions of the whole volume's layer grid, the whole volume's per-channel sums (C,) and the
# lesions' boxes on the layer grid (K, *grid) bool; it returns (K, C) float64 weights.
WeightFunction = Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]

# MONAI's GradCAMpp adds this to the denominator (monai.visualize.class_activation_maps)
MONAI_EPSILON = 1e-7


def gradcam_weights(g: torch.Tensor, positions: int) -> torch.Tensor:
    """Return (K, C) Grad-CAM weights: the mean of g over ``positions`` layer positions (g is 0 off the crop)."""
    return g.sum(dim=(2, 3, 4), dtype=torch.float64) / positions


def gradcam_relu_weights(g: torch.Tensor, positions: int) -> torch.Tensor:
    """Return (K, C) weights mean_u ReLU(g^c_u) over ``positions`` layer positions."""
    return torch.relu(g).sum(dim=(2, 3, 4), dtype=torch.float64) / positions


def closed_form_weights(g: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """Return (K, C) Grad-CAM++ closed-form weights sum_u alpha^c_u ReLU(g^c_u) for channel sums ``sums`` ((C,) or (K, C))."""
    g = g.to(torch.float64)
    s = sums.to(torch.float64)
    s = s.view(1, -1, 1, 1, 1) if s.ndim == 1 else s.view(s.shape[0], s.shape[1], 1, 1, 1)
    g2 = g * g
    denom = 2 * g2 + s * g2 * g
    alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))
    return (alpha * torch.relu(g)).sum(dim=(2, 3, 4))


def box_sums(a: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Return (K, C) sums of the activations a (C, *grid) over each lesion box (K, *grid)."""
    return torch.einsum("c...,k...->kc", a.to(torch.float64), boxes.to(torch.float64))


def anchor_weights(g: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Return (K, C) MONAI GradCAMpp weights without the exp(S) factor (a (C, *grid) the activations g belongs to)."""
    g = g.to(torch.float64)
    a = a.to(torch.float64)
    g2 = g * g
    cubes = torch.einsum("c...,kc...->kc", a, g2 * g)
    denom = 2 * g2 + cubes.view(*cubes.shape, 1, 1, 1)
    denom = torch.where(denom != 0, denom, torch.ones_like(denom))
    alpha = g2 / (denom + MONAI_EPSILON)
    return (alpha * torch.relu(g)).sum(dim=(2, 3, 4))


def closed_form_alpha(g: torch.Tensor, sums: torch.Tensor) -> torch.Tensor:
    """Return (K, C, *grid) closed-form alphas g^2 / (2 g^2 + s g^3) (0 where the denominator is 0) for (K, C) sums s."""
    s = sums.to(torch.float64).view(sums.shape[0], sums.shape[1], 1, 1, 1)
    g2 = g * g
    denom = 2 * g2 + s * g2 * g
    return torch.where(denom != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(g))


# Spatial variants: g (K, C, *grid), a (C, *grid), boxes (K, *grid) -> (K, C, *grid) per-position weights.
SpatialWeightFunction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
SPATIAL_VARIANTS: dict[str, SpatialWeightFunction] = {
    "layercam": lambda g, a, boxes: torch.relu(g),
    "gradcampp_spatial": lambda g, a, boxes: closed_form_alpha(g, box_sums(a, boxes)) * torch.relu(g),
}

# reach variant -> the per-channel variant whose map it keeps on the lesion's crop
REACH_VARIANTS: dict[str, str] = {"gradcam_reach": "gradcam", "gradcampp_reach": "gradcampp_local"}

VARIANTS: dict[str, WeightFunction] = {
    "gradcam": lambda g, a, n, sums, boxes: gradcam_weights(g, n),
    "gradcam_relu": lambda g, a, n, sums, boxes: gradcam_relu_weights(g, n),
    "gradcampp_paper": lambda g, a, n, sums, boxes: closed_form_weights(g, sums),
    "gradcampp_local": lambda g, a, n, sums, boxes: closed_form_weights(g, box_sums(a, boxes)),
    "gradcampp_anchor": lambda g, a, n, sums, boxes: anchor_weights(g, a),
}
# The Grad-CAM++ variant `gradcampp` stands for, measured (README "Grad-CAM for one lesion"): the only
# Grad-CAM++ variant that meets the rule (median enrichment >= 3, between-lesion r <= 0.8, randomisation
# |rho| <= 0.5) on the demo model and on the anchor's architecture with realistic batch-norm statistics.
GRADCAMPP_DEFAULT = "gradcampp_reach"
assert set(CAM_METHODS) == {"gradcampp", *VARIANTS, *SPATIAL_VARIANTS, *REACH_VARIANTS}, "cam_methods.CAM_LABELS must name every variant"


def variant_of(method: str) -> str:
    """Return the weight formula a CAM method name uses ('gradcampp' -> the measured default variant)."""
    return GRADCAMPP_DEFAULT if method == "gradcampp" else method
