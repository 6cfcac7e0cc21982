"""Training data: phantoms turned into normalised network inputs, and a lesion- and mimic-biased random patch sampler."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter

# Seeds at or above this belong to training; evaluation and tests draw from below it.
TRAIN_SEED_START = 10000


@dataclass
class TrainingSubject:
    """One phantom as the network sees it: (2, k, j, i) z-scored input and (k, j, i) lesion mask."""

    seed: int
    image: np.ndarray
    lesions: np.ndarray
    lesion_voxels: np.ndarray  # (n, 3) k,j,i indices of lesion voxels, for lesion-centred patches
    brain_box: tuple[np.ndarray, np.ndarray]  # k,j,i min and max (inclusive) of the brain
    # one (n, 3) k,j,i array per mimic kind present (lesion voxels removed), for hard-negative patches
    mimic_voxels: tuple[np.ndarray, ...] = ()


def subject_from_phantom(phantom) -> TrainingSubject:
    """Return the TrainingSubject of a generated phantom (inputs normalised exactly as at inference)."""
    from LesionXAILib.segmentation import prepare_input

    image = prepare_input(phantom.pair())
    lesions = np.asarray(phantom.lesions, dtype=bool)
    brain = np.argwhere(image[0] != 0)
    return TrainingSubject(
        seed=int(phantom.seed),
        image=image,
        lesions=lesions,
        lesion_voxels=np.argwhere(lesions).astype(np.int32),
        brain_box=(brain.min(0), brain.max(0)),
        mimic_voxels=mimic_voxels_by_kind(phantom.mimics, lesions),
    )


def mimic_voxels_by_kind(mimics: Optional[np.ndarray], lesions: np.ndarray) -> tuple[np.ndarray, ...]:
    """Return one (n, 3) int32 array of k,j,i voxels per mimic label present, lesion voxels excluded."""
    if mimics is None:
        return ()
    labels = np.where(lesions, 0, np.asarray(mimics))
    found = np.argwhere(labels > 0).astype(np.int32)
    kinds = labels[tuple(found.T)]
    return tuple(found[kinds == k] for k in np.unique(kinds))


def make_subjects(
    seeds: Sequence[int],
    settings_for_seed,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> list[TrainingSubject]:
    """Return one TrainingSubject per seed, each phantom made with ``settings_for_seed(seed)``."""
    from LesionXAILib.phantom import generate_phantom

    reporter = as_reporter(progress, cancel)
    subjects = []
    for n, seed in enumerate(seeds):
        reporter(n / max(len(seeds), 1), f"phantom {seed} ({n + 1}/{len(seeds)})")
        subjects.append(subject_from_phantom(generate_phantom(int(seed), settings_for_seed(int(seed)))))
    reporter(1.0, f"{len(subjects)} phantoms")
    return subjects


class PatchSampler:
    """Draws (image, label) patches: a fraction near a random lesion voxel, a fraction near a mimic, the rest anywhere in the brain.

    Mimic-centred patches are hard negatives: a mimic kind is drawn first, then one of its voxels, so a
    large structure (the cortical ribbon) does not crowd out a small one (the septum). A
    ``mimic_fraction`` of 0 draws exactly the patches the sampler drew before mimic sampling existed.

    Augmentation: left-right flips (the i axis) and a small per-channel intensity scale/shift, so the
    network does not latch onto one phantom contrast setting.
    """

    def __init__(
        self,
        subjects: Sequence[TrainingSubject],
        patch_size: Sequence[int],
        lesion_fraction: float = 0.6,
        intensity_jitter: float = 0.1,
        seed: int = 0,
        mimic_fraction: float = 0.0,
    ) -> None:
        if not subjects:
            raise ParameterError("training needs at least one subject")
        check_patch_fractions(lesion_fraction, mimic_fraction)
        self.subjects = list(subjects)
        self.patch = np.asarray(patch_size, dtype=int)
        self.lesion_fraction = float(lesion_fraction)
        self.mimic_fraction = float(mimic_fraction)
        self.jitter = float(intensity_jitter)
        self.rng = np.random.default_rng(seed)

    def _start(self, subject: TrainingSubject) -> np.ndarray:
        shape = np.asarray(subject.lesions.shape)
        rng = self.rng
        has_lesions = len(subject.lesion_voxels) > 0
        has_mimics = self.mimic_fraction > 0 and len(subject.mimic_voxels) > 0
        # one uniform draw picks the patch kind; none is drawn when only random patches are possible
        u = rng.random() if has_lesions or has_mimics else 1.0
        if has_lesions and u < self.lesion_fraction:
            centre = subject.lesion_voxels[rng.integers(len(subject.lesion_voxels))]
            # the lesion lands anywhere in the patch, not always at its centre
            start = centre - rng.integers(self.patch // 8, self.patch - self.patch // 8)
        elif has_mimics and u >= 1.0 - self.mimic_fraction:
            voxels = subject.mimic_voxels[rng.integers(len(subject.mimic_voxels))]
            centre = voxels[rng.integers(len(voxels))]
            start = centre - rng.integers(self.patch // 8, self.patch - self.patch // 8)
        else:
            lo, hi = subject.brain_box
            centre = np.array([rng.integers(a, b + 1) for a, b in zip(lo, hi)])
            start = centre - self.patch // 2
        return np.clip(start, 0, np.maximum(shape - self.patch, 0))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Return one (2, *patch) float32 image patch and its (1, *patch) float32 label, zero-padded if needed."""
        subject = self.subjects[self.rng.integers(len(self.subjects))]
        start = self._start(subject)
        stop = np.minimum(start + self.patch, subject.lesions.shape)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
        image = np.zeros((subject.image.shape[0], *self.patch), dtype=np.float32)
        label = np.zeros((1, *self.patch), dtype=np.float32)
        inner = tuple(slice(0, int(b - a)) for a, b in zip(start, stop))
        image[(slice(None), *inner)] = subject.image[(slice(None), *sl)]
        label[(0, *inner)] = subject.lesions[sl]
        if self.rng.random() < 0.5:
            image, label = image[..., ::-1], label[..., ::-1]
        if self.jitter > 0:
            brain = image != 0
            scale = 1.0 + self.rng.uniform(-self.jitter, self.jitter, size=(image.shape[0], 1, 1, 1))
            shift = self.rng.uniform(-self.jitter, self.jitter, size=(image.shape[0], 1, 1, 1))
            image = np.where(brain, image * scale + shift, 0.0)
        return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(label)

    def batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Return a (B, 2, *patch) image batch and its (B, 1, *patch) labels."""
        pairs = [self.sample() for _ in range(int(size))]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def check_patch_fractions(lesion_fraction: float, mimic_fraction: float) -> None:
    """Raise ParameterError unless both fractions are in 0..1 and together at most 1."""
    for name, value in (("lesion", lesion_fraction), ("mimic", mimic_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ParameterError(f"{name} fraction must be in 0..1, got {value}")
    if lesion_fraction + mimic_fraction > 1.0 + 1e-9:
        raise ParameterError(
            f"lesion fraction {lesion_fraction} + mimic fraction {mimic_fraction} exceed 1 (the rest are random brain patches)"
        )
