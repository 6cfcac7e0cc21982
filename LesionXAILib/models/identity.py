"""One identity per model: a content hash of what defines it (file or folder), and a hash of weights as loaded.

Two questions get asked about a model, and each has one function here:

- *Is this the same model source as last time?* (cohort resume, run fingerprints) —
  :func:`source_hash`: SHA-256 over the bytes of the files that define the model, never over
  names of other files, sizes or modification times. A checkpoint or TorchScript file is its
  bytes. An nnU-Net v2 folder is ``plans.json``, ``dataset.json`` and the selected folds'
  checkpoints (``fold_X/<checkpoint>``; the same folds the loader picks). A MONAI bundle is every
  file under ``configs/`` plus ``models/model.pt`` / ``models/model.ts``. Files are taken in sorted
  order of their path relative to the folder, each preceded by that path and its length, so
  moving the folder keeps the hash and renaming or editing any defining file changes it.
- *Are these the same weights?* (calibrated margins cached per network) — :func:`weights_hash`:
  SHA-256 over the loaded network's state dict (names, dtypes, values) and its config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from LesionXAILib.errors import ModelLoadError

_BLOCK = 1 << 20


def _update_with_file(h: Any, path: Path, name: str) -> None:
    h.update(name.encode())
    h.update(str(path.stat().st_size).encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)


def file_hash(path: str | Path) -> str:
    """Return the hex SHA-256 of a file's bytes (a checkpoint, a TorchScript archive)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def nnunet_defining_files(folder: Path, options: Optional[Mapping[str, Any]] = None) -> list[str]:
    """Return the relative paths defining an nnU-Net model: plans, dataset and the selected folds' checkpoints."""
    from LesionXAILib.models.nnunet import DEFAULT_CHECKPOINT, PLANS_FILE, DATASET_FILE, _fold_dirs, _parse_folds

    options = dict(options or {})
    checkpoint = str(options.get("checkpoint") or DEFAULT_CHECKPOINT)
    folds = _parse_folds(options.get("folds")) or _fold_dirs(folder, checkpoint)
    return [PLANS_FILE, DATASET_FILE] + [f"fold_{f}/{checkpoint}" for f in folds]


def bundle_defining_files(folder: Path) -> list[str]:
    """Return the relative paths defining a MONAI bundle: every file under configs/ and models/model.pt|ts."""
    files = [p.relative_to(folder).as_posix() for p in (folder / "configs").rglob("*") if p.is_file()]
    files += [f"models/{n}" for n in ("model.pt", "model.ts") if (folder / "models" / n).is_file()]
    return files


def folder_hash(folder: str | Path, relative_paths: Iterable[str]) -> str:
    """Return the hex SHA-256 over the named files of ``folder`` (sorted; each as path, size, bytes)."""
    root = Path(folder)
    h = hashlib.sha256()
    for rel in sorted(set(relative_paths)):
        p = root / rel
        if not p.is_file():
            raise ModelLoadError(f"model folder '{root}': '{rel}' is missing")
        _update_with_file(h, p, rel)
    return h.hexdigest()


def source_hash(path: str | Path, options: Optional[Mapping[str, Any]] = None) -> str:
    """Return the content hash of the model at ``path`` (file bytes, or a folder's defining files for ``options``)."""
    from LesionXAILib.models.formats import is_monai_bundle, is_nnunet_folder

    p = Path(path)
    if p.is_file():
        return file_hash(p)
    if is_nnunet_folder(p):
        return folder_hash(p, nnunet_defining_files(p, options))
    if is_monai_bundle(p):
        return folder_hash(p, bundle_defining_files(p))
    raise ModelLoadError(f"model '{p}': not a file, an nnU-Net v2 folder or a MONAI bundle folder")


def weights_hash(model: Any, exclude_config_keys: Iterable[str] = ()) -> str:
    """Return the hex SHA-256 of a loaded LesionModel: its config (minus ``exclude_config_keys``) and its network's state dict."""
    h = hashlib.sha256()
    cfg = model.config.to_dict()
    for key in exclude_config_keys:
        cfg.pop(key, None)
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    for name, t in model.network.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
