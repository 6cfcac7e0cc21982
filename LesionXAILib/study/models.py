"""The shipped demo models by short name (``unet``, ``unet-anchor``, ``dynunet``, ``swinunetr``) for ``--model NAME``."""

from __future__ import annotations

from pathlib import Path

from LesionXAILib.errors import ModelLoadError
from LesionXAILib.resources import resources_dir

PREFIX = "lesionxai-demo-"
# the anchor's comparison (U-Net, nnU-Net-style DynUNet, Swin UNETR), trained on phantoms with mimics
ANCHOR_COMPARISON = ("unet-anchor", "dynunet", "swinunetr")


def shipped_models() -> dict[str, Path]:
    """Return {short name: checkpoint} of every demo model in Resources/models."""
    folder = resources_dir() / "models"
    if not folder.is_dir():
        return {}
    return {p.stem[len(PREFIX):]: p for p in sorted(folder.glob(f"{PREFIX}*.pt"))}


def resolve_model(spec: str) -> Path:
    """Return the checkpoint a shipped short name stands for, or ``spec`` as a path (ModelLoadError if neither exists)."""
    shipped = shipped_models()
    if spec in shipped:
        return shipped[spec]
    path = Path(spec)
    if path.exists():
        return path
    known = ", ".join(sorted(shipped)) or "none installed"
    raise ModelLoadError(f"model '{spec}' is neither a file/folder nor a shipped demo model (shipped: {known})")


def is_shipped_name(spec: str) -> bool:
    """Return True when ``spec`` names a shipped demo model rather than a path."""
    return spec in shipped_models() and not Path(spec).exists()
