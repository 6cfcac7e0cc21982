"""One lesion's counterfactual problem: the crop the network sees, the region that may change, and rendering.

``render(velocity, intensity)`` turns the free control points into the counterfactual: the displacement
(exp of the smooth velocity), the raw FLAIR/MPRAGE pulled back through it plus the smooth intensity
change, and the network input on the crop (original normalised input outside the changed box, the
fixed normalisation of the changed raw images inside it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from LesionXAILib.counterfactual.normalisation import ChannelNormaliser, channel_normaliser
from LesionXAILib.counterfactual.lattice import ControlLattice, lesion_lattice
from LesionXAILib.counterfactual.settings import CounterfactualSettings
from LesionXAILib.counterfactual.warp import SmoothField, exp_velocity, identity_grid, sample, warp_crop
from LesionXAILib.errors import ModelLoadError
from LesionXAILib.geometry import Geometry
from LesionXAILib.crop import CropBox, align_box, box_around, full_box, margin_voxels

ROLES = ("flair", "t1")  # the raw images a counterfactual changes, in output order
ROLE_NAMES = {"flair": "FLAIR", "t1": "MPRAGE"}


@dataclass
class Rendered:
    """A counterfactual on the changed box: displacement (3, box; voxels, components i, j, k), raw images and intensity change (2, box), network input (C, crop)."""

    displacement: torch.Tensor
    raw: torch.Tensor
    intensity: torch.Tensor
    network_input: torch.Tensor


def model_roles(input_order: Sequence[str]) -> list[int]:
    """Return, per model input channel, the index in ROLES of the sequence it reads."""
    from LesionXAILib.segmentation import SEQUENCE_ALIASES

    roles = []
    for name in input_order:
        role = SEQUENCE_ALIASES.get(str(name).upper().replace("-", "").replace("_", ""))
        if role not in ROLES:
            raise ModelLoadError(f"model input channel '{name}' is not a sequence LesionXAI reads")
        roles.append(ROLES.index(role))
    return roles


def crop_around(lattice: ControlLattice, shape: Sequence[int], spacing_kji: Sequence[float], margin_mm: Optional[float], divisor: int) -> CropBox:
    """Return the stride-aligned crop reaching ``margin_mm`` beyond the lattice's box (the whole grid for None)."""
    if margin_mm is None:
        return full_box(shape, divisor)
    mv = np.array(margin_voxels(margin_mm, spacing_kji))
    return align_box(box_around(np.array(lattice.start) - mv, np.array(lattice.stop) + mv, shape, divisor), divisor)


def box_offset(crop: CropBox, lattice: ControlLattice) -> tuple[int, int, int]:
    """Return where the lattice's box starts inside ``crop`` (k, j, i)."""
    return tuple(int(a - s.start + p[0]) for a, s, p in zip(lattice.start, crop.slices, crop.pad))


class LesionProblem:
    """The tensors one lesion's search works on (everything on the crop, float32, CPU or the model's device)."""

    def __init__(
        self,
        raw: np.ndarray,
        normalized: np.ndarray,
        mask: np.ndarray,
        geometry: Geometry,
        roles: Sequence[int],
        normalization: str,
        settings: CounterfactualSettings,
        margin_mm: Optional[float],
        divisor: int,
        device: torch.device = torch.device("cpu"),
    ) -> None:
        spacing = tuple(float(s) for s in geometry.spacing_kji)
        self.settings = settings
        self.geometry = geometry
        self.spacing_kji = spacing
        self.spacing_ijk = tuple(float(v) for v in geometry.spacing)
        self.roles = list(roles)
        self.device = device
        self.lattice = lesion_lattice(mask, spacing, settings.reach_mm, settings.control_spacing_mm)
        self.crop = crop_around(self.lattice, mask.shape, spacing, margin_mm, divisor)
        self.offset = box_offset(self.crop, self.lattice)
        inner = tuple(slice(o, o + n) for o, n in zip(self.offset, self.lattice.shape))
        self.inner = inner
        raw_crop = np.ascontiguousarray(self.crop.extract(raw, 0.0), dtype=np.float32)
        norm_crop = np.ascontiguousarray(self.crop.extract(normalized, 0.0), dtype=np.float32)
        valid = torch.zeros(self.crop.shape, dtype=torch.float32, device=device)
        valid[self.crop.inner] = 1.0
        self.normalisers: list[ChannelNormaliser] = [
            channel_normaliser(normalization, raw[r], normalized[c], self.lattice.slices, inner, valid, ROLE_NAMES[ROLES[r]])
            for c, r in enumerate(self.roles)
        ]
        self.raw_crop = torch.from_numpy(raw_crop).to(device)
        self.normalized_crop = torch.from_numpy(norm_crop).to(device)
        scale = [1.0] * len(ROLES)  # raw intensity per normalised unit, per sequence, on the original image
        for c, r in enumerate(self.roles):
            scale[r] = float(self.normalisers[c].statistics(self.raw_crop[r][inner])[0])
        self.intensity_scale = torch.tensor(scale, dtype=torch.float32, device=device).view(-1, 1, 1, 1)
        self.mask_crop = np.ascontiguousarray(self.crop.extract(mask, False)).astype(bool)
        self.mask_box = self.mask_crop[inner]
        self.mask_box_t = torch.from_numpy(self.mask_box.astype(np.float32)).to(device)
        self.lesion_voxels = int(mask.sum())
        self.free_shape = self.lattice.free_shape
        self.field = SmoothField(self.lattice, torch.float32, device)

    def zeros(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return zero control points: velocity in mm (3, free; components i, j, k), intensity in normalised units (2, free)."""
        v = torch.zeros((3,) + tuple(self.free_shape), dtype=torch.float32, device=self.device)
        c = torch.zeros((len(ROLES),) + tuple(self.free_shape), dtype=torch.float32, device=self.device)
        return v, c

    def velocity_voxels(self, velocity_mm: torch.Tensor) -> torch.Tensor:
        """Return the smooth (3, box) velocity in voxel units of (3, free) control points in mm."""
        s = torch.tensor(self.spacing_ijk, dtype=velocity_mm.dtype, device=velocity_mm.device).view(3, 1, 1, 1)
        return self.field(velocity_mm) / s

    def render(self, velocity_mm: torch.Tensor, intensity: torch.Tensor) -> Rendered:
        """Return the counterfactual of these control points (differentiable in both)."""
        u = exp_velocity(self.velocity_voxels(velocity_mm), self.settings.squaring_steps)
        warped = warp_crop(self.raw_crop, u, self.offset)
        brain = (warped != 0).to(warped.dtype).detach()  # no intensity is added to the zero background
        delta = self.field(intensity) / self.intensity_scale * brain
        raw = warped + delta
        x = torch.stack([norm(self.raw_crop[r], raw[r]) for norm, r in zip(self.normalisers, self.roles)])
        return Rendered(u, raw, delta, x)

    def warped_mask(self, displacement: torch.Tensor) -> torch.Tensor:
        """Return the lesion mask pulled back through ``displacement`` (box; linear interpolation, 0..1)."""
        base = identity_grid(displacement.shape[1:], displacement.dtype, displacement.device)
        return sample(self.mask_box_t[None], base + displacement.permute(1, 2, 3, 0))[0]

    def region_crop(self, displacement: torch.Tensor) -> np.ndarray:
        """Return the crop mask of the lesion where it was and where the warp took it (the detection region)."""
        region = self.mask_crop.copy()
        region[self.inner] |= self.warped_mask(displacement).detach().cpu().numpy() >= 0.5
        return region
