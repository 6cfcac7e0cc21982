"""Locating shipped assets (demo model, colour tables) in a checkout, a pip install or a Slicer install."""

from __future__ import annotations

import os
from pathlib import Path

from LesionXAILib.errors import ModelLoadError

DEMO_MODEL_NAME = "lesionxai-demo-unet.pt"


def resources_dir() -> Path:
    """Return the directory holding LesionXAI's shipped Resources (override with LESIONXAI_RESOURCES)."""
    env = os.environ.get("LESIONXAI_RESOURCES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    # a checkout / editable install keeps Resources/ beside the package; Slicer installs it the same way
    for candidate in (here.parent / "Resources", here / "Resources"):
        if candidate.is_dir():
            return candidate
    return here.parent / "Resources"


def default_model_path() -> Path:
    """Return the path of the shipped demo segmenter, or raise if it is not installed."""
    p = resources_dir() / "models" / DEMO_MODEL_NAME
    if not p.exists():
        raise ModelLoadError(
            f"no model given and the demo model '{p}' is not installed; pass --model (or --config/--weights)"
        )
    return p
