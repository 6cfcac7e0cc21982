"""What ``--model`` points at: the model formats LesionXAI recognises, detected in order, and their loaders.

Each :class:`ModelFormat` has a cheap ``detect(path)`` that reads names and headers only (never
runs or unpickles anything) and a loader, named as ``"module:function"`` and imported only when
used, taking a :class:`LoadRequest` and returning an eval-mode
:class:`~LesionXAILib.lesion_model.LesionModel` whose ``config`` carries the format's input contract.
A folder format whose module is missing is reported as unsupported, not as unrecognised.
"""

from __future__ import annotations

import importlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from LesionXAILib.errors import ModelLoadError


@dataclass(frozen=True)
class LoadRequest:
    """Everything a format loader gets: the path, an optional config override, the device, trust and format options."""

    path: Path
    config: Any = None  # Optional[ModelConfig]: overrides/completes the format's own description
    device: torch.device = torch.device("cpu")
    trust: bool = False  # the user allowed code from the file to run (TorchScript, pickled checkpoints)
    options: Mapping[str, Any] = field(default_factory=dict)  # format options, e.g. folds / checkpoint (nnU-Net)


@dataclass(frozen=True)
class ModelFormat:
    """One format: its name, a one-phrase description for messages, a detector and a lazily imported loader."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    loader: str  # "package.module:function", function(LoadRequest) -> LesionModel

    def load(self, request: LoadRequest) -> Any:
        """Return the LesionModel this format's loader builds for ``request``."""
        module_name, func_name = self.loader.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise ModelLoadError(f"model '{request.path}' is {self.description}, which this version of LesionXAI cannot load yet") from None
            raise
        return getattr(module, func_name)(request)


def is_torchscript(path: Path) -> bool:
    """Return True if ``path`` is a TorchScript archive (recognised by its zip entries; nothing is loaded)."""
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    return any(n.endswith("constants.pkl") for n in names) or any("/code/" in n for n in names)


def is_checkpoint_file(path: Path) -> bool:
    """Return True for a file torch can read as a checkpoint (zip or legacy pickle) that is not TorchScript."""
    if not path.is_file() or is_torchscript(path):
        return False
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as fh:
        head = fh.read(2)
    return head[:1] == b"\x80"  # pickle protocol marker of torch's legacy format


def is_nnunet_folder(path: Path) -> bool:
    """Return True for an nnU-Net v2 trained-model folder (plans.json, dataset.json, fold_*/checkpoint*.pth)."""
    return (
        path.is_dir()
        and (path / "plans.json").is_file()
        and (path / "dataset.json").is_file()
        and any(p.is_dir() for p in path.glob("fold_*"))
    )


def is_monai_bundle(path: Path) -> bool:
    """Return True for a MONAI bundle folder (configs/inference.json or .yaml, models/)."""
    configs = path / "configs"
    return (
        path.is_dir()
        and any((configs / f"inference.{ext}").is_file() for ext in ("json", "yaml", "yml"))
        and (path / "models").is_dir()
    )


FORMATS: list[ModelFormat] = [
    ModelFormat("nnunet", "an nnU-Net v2 trained-model folder", is_nnunet_folder, "LesionXAILib.models.nnunet:load_nnunet"),
    ModelFormat("monai-bundle", "a MONAI bundle folder", is_monai_bundle, "LesionXAILib.models.monai_bundle:load_bundle"),
    ModelFormat("torchscript", "a TorchScript file", is_torchscript, "LesionXAILib.model_loading:load_torchscript"),
    ModelFormat(
        "checkpoint",
        "a PyTorch checkpoint (LesionXAI checkpoint, or a state dict with --config)",
        is_checkpoint_file,
        "LesionXAILib.model_loading:load_checkpoint",
    ),
]

FORMAT_SUMMARY = (
    "a LesionXAI checkpoint (.pt), a state dict with --config, a TorchScript file (with --trust-model), "
    "an nnU-Net v2 trained-model folder or a MONAI bundle folder"
)


def detect_format(path: Path) -> Optional[ModelFormat]:
    """Return the first format whose detector accepts ``path``, or None."""
    for fmt in FORMATS:
        if fmt.detect(path):
            return fmt
    return None
