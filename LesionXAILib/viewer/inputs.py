"""What the viewer shows: checked input paths, or the phantom + demo-model default.

Paths are checked here, before anything heavy is imported or the server starts, so a typo gives a
one-line error in the terminal instead of a broken web page.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from LesionXAILib.errors import InputImageError, ModelLoadError, ParameterError

DEFAULT_PHANTOM_SEED = 7
# a 120 x 140 x 100 mm box around the brain centre: a realistic slab with enough lesions, segmented in seconds on a CPU
DEFAULT_PHANTOM_FOV_MM = (120.0, 140.0, 100.0)
DEFAULT_PHANTOM_LESIONS = 14


@dataclass(frozen=True)
class ViewerInputs:
    """FLAIR/MPRAGE (and optional ground truth) paths, or a phantom seed when no images were given."""

    flair: Optional[Path] = None
    t1: Optional[Path] = None
    gt: Optional[Path] = None
    phantom_seed: Optional[int] = None
    phantom_fov_mm: Optional[tuple[float, float, float]] = DEFAULT_PHANTOM_FOV_MM
    phantom_lesions: int = DEFAULT_PHANTOM_LESIONS

    @property
    def is_phantom(self) -> bool:
        """Return True when the viewer shows a generated phantom (with its ground truth)."""
        return self.phantom_seed is not None

    def describe(self) -> str:
        """Return a one-line description for the terminal and the page title."""
        if self.is_phantom:
            return f"phantom seed {self.phantom_seed}"
        assert self.flair is not None
        return self.flair.name


def check_inputs(
    flair: Optional[str | os.PathLike] = None,
    t1: Optional[str | os.PathLike] = None,
    gt: Optional[str | os.PathLike] = None,
    phantom_seed: Optional[int] = None,
) -> ViewerInputs:
    """Return checked ViewerInputs; no images at all selects the phantom default (seed ``phantom_seed``).

    Raises InputImageError for a missing/unsupported file and ParameterError for a FLAIR without an
    MPRAGE (or the reverse) or a ground truth without images.
    """
    from LesionXAILib.image_io import check_image_path

    if flair is None and t1 is None:
        if gt is not None:
            raise ParameterError("--gt needs --flair and --t1 (the phantom default brings its own ground truth)")
        seed = DEFAULT_PHANTOM_SEED if phantom_seed is None else int(phantom_seed)
        if seed < 0:
            raise ParameterError(f"--phantom-seed must be >= 0, got {seed}")
        return ViewerInputs(phantom_seed=seed)
    if flair is None or t1 is None:
        missing = "--flair" if flair is None else "--t1"
        raise ParameterError(f"{missing} is missing: give both --flair and --t1, or neither for the phantom demo")
    paths = [check_image_path(flair, "FLAIR"), check_image_path(t1, "MPRAGE/T1")]
    gt_path = check_image_path(gt, "ground truth") if gt is not None else None
    if paths[0].resolve() == paths[1].resolve():
        raise InputImageError(f"--flair and --t1 are the same file '{paths[0]}'")
    return ViewerInputs(flair=paths[0], t1=paths[1], gt=gt_path)


def check_model_path(model: Optional[str | os.PathLike]) -> Optional[Path]:
    """Return the model path after checking it exists (None: the demo model, which must be installed)."""
    if model is None:
        from LesionXAILib.resources import default_model_path

        return default_model_path()  # raises ModelLoadError naming the missing demo model
    p = Path(model)
    if not (p.is_file() or p.is_dir()):  # model folders (nnU-Net, MONAI bundle) are models too
        raise ModelLoadError(f"model '{p}': file not found" if not p.exists() else f"model '{p}': not a regular file or folder")
    return p
