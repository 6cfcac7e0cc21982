"""train_model: fit a segmentation U-Net on phantoms with lesion-biased patches, within a step or time budget."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from LesionXAILib.errors import ParameterError
from LesionXAILib.lesion_model import LesionModel, build_network
from LesionXAILib.model_config import MARGIN_KEYS, ModelConfig, get_config
from LesionXAILib.progress import CancelToken, ProgressCallback, as_reporter
from LesionXAILib.training.data import TRAIN_SEED_START, PatchSampler, check_patch_fractions, make_subjects
from LesionXAILib.training.loss import binary_lesion_logit, dice_bce_loss

# JSON network configs for the demo models of the anchor's comparison, trainable by name
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class TrainSettings:
    """How the demo segmenter is trained; the defaults with ``mimics=False`` reproduce the shipped lesionxai-demo-unet.

    Every ``anisotropic_every``-th training phantom is made with 1 x 1 x 3 mm voxels (0: none), so the
    model also sees thick-slice data. Training stops after ``steps`` or ``max_minutes``, whichever
    comes first; the learning rate follows a cosine schedule over that budget.
    """

    config: str = "lesionxai-demo"
    train_seeds: tuple[int, ...] = tuple(range(TRAIN_SEED_START, TRAIN_SEED_START + 48))
    fov_mm: Optional[tuple[float, float, float]] = None
    anisotropic_every: int = 4
    patch_size: tuple[int, int, int] = (64, 64, 64)
    batch_size: int = 2
    steps: int = 8000
    max_minutes: Optional[float] = None
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    lesion_fraction: float = 0.6
    mimic_fraction: float = 0.0
    seed: int = 0
    threads: Optional[int] = None
    log_every: int = 50
    checkpoint_minutes: float = 10.0
    mimics: bool = True
    lookalikes: bool = True
    float16: bool = False
    init: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.train_seeds:
            raise ParameterError("training needs at least one phantom seed")
        low = [s for s in self.train_seeds if s < TRAIN_SEED_START]
        if low:
            raise ParameterError(
                f"training seeds must be >= {TRAIN_SEED_START} (lower seeds are kept for evaluation), got {low[:5]}"
            )
        if self.steps < 1 or self.batch_size < 1:
            raise ParameterError("steps and batch size must be >= 1")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ParameterError(f"max minutes must be > 0, got {self.max_minutes}")
        check_patch_fractions(self.lesion_fraction, self.mimic_fraction)
        if self.mimic_fraction > 0 and not self.mimics:
            raise ParameterError("mimic-centred patches need phantoms with mimics (drop --no-mimics or --mimic-fraction)")

    def model_config(self) -> ModelConfig:
        """Return the network configuration to train (a preset, a JSON file, or a name in training/configs)."""
        shipped = CONFIG_DIR / f"{self.config}.json"
        return get_config(shipped if shipped.is_file() else self.config)

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (seed ranges compressed)."""
        d = asdict(self)
        seeds = list(self.train_seeds)
        contiguous = seeds == list(range(seeds[0], seeds[0] + len(seeds)))
        d["train_seeds"] = f"{seeds[0]}-{seeds[-1]}" if contiguous else seeds
        return d


@dataclass
class TrainResult:
    """The trained model and a record of how it was trained (written into the checkpoint metadata)."""

    model: LesionModel
    steps: int
    seconds: float
    data_seconds: float
    losses: list[float] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)


def phantom_settings_for(settings: TrainSettings):
    """Return a function seed -> PhantomSettings (thick slices for every ``anisotropic_every``-th seed)."""
    from LesionXAILib.phantom import PhantomSettings

    def for_seed(seed: int) -> PhantomSettings:
        thick = settings.anisotropic_every > 0 and (seed - TRAIN_SEED_START) % settings.anisotropic_every == settings.anisotropic_every - 1
        spacing = (1.0, 1.0, 3.0) if thick else (1.0, 1.0, 1.0)
        return PhantomSettings(spacing=spacing, fov_mm=settings.fov_mm, mimics=settings.mimics, lookalikes=settings.lookalikes)

    return for_seed


def _learning_rate(settings: TrainSettings, step: int, elapsed: float) -> float:
    done = step / settings.steps
    if settings.max_minutes:
        done = max(done, elapsed / (60.0 * settings.max_minutes))
    warmup = min(1.0, (step + 1) / 100.0)
    return settings.learning_rate * warmup * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))


def train_model(
    settings: TrainSettings = TrainSettings(),
    checkpoint: Optional[str | os.PathLike] = None,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    command: Optional[str] = None,
) -> TrainResult:
    """Return a model trained on phantoms; with ``checkpoint`` it is also saved there periodically and at the end."""
    from LesionXAILib.model_loading import save_checkpoint

    reporter = as_reporter(progress, cancel)
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    torch.manual_seed(settings.seed)
    config = settings.model_config()
    if any(p % config.size_divisor for p in settings.patch_size):
        raise ParameterError(f"patch size {settings.patch_size} must be a multiple of {config.size_divisor}")
    t0 = time.perf_counter()
    subjects = make_subjects(settings.train_seeds, phantom_settings_for(settings), reporter.sub(0.0, 0.05))
    data_seconds = time.perf_counter() - t0
    sampler = PatchSampler(
        subjects, settings.patch_size, settings.lesion_fraction, seed=settings.seed, mimic_fraction=settings.mimic_fraction
    )
    model = LesionModel(build_network(config), config, source="lesionxai train")
    initialised_from = _initialise(model, settings.init) if settings.init else None
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    losses: list[float] = []
    running: list[float] = []
    start = time.perf_counter()
    last_save = start
    step = 0

    def metadata() -> dict:
        # plain JSON types only: checkpoints are read back with torch.load(weights_only=True)
        return json.loads(json.dumps({
            "trained_by": "lesionxai train",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": settings.to_dict(),
            "steps": step,
            "train_seconds": round(time.perf_counter() - start, 1),
            "phantom_seconds": round(data_seconds, 1),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "final_loss": losses[-1] if losses else None,
            "command": command,
            **({"weights_stored_as": "float16"} if settings.float16 else {}),
            **({"initialised_from": initialised_from} if initialised_from else {}),
        }))

    model.train()
    while step < settings.steps:
        elapsed = time.perf_counter() - start
        if settings.max_minutes and elapsed >= 60.0 * settings.max_minutes:
            break
        reporter.check()
        lr = _learning_rate(settings, step, elapsed)
        for group in optimiser.param_groups:
            group["lr"] = lr
        images, labels = sampler.batch(settings.batch_size)
        output = model(torch.from_numpy(images))
        logits = binary_lesion_logit(output, config.head, config.lesion_index)
        loss = dice_bce_loss(logits, torch.from_numpy(labels))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        running.append(loss.item())
        step += 1
        if step % settings.log_every == 0 or step == settings.steps:
            losses.append(float(np.mean(running)))
            running = []
            budget = settings.steps if not settings.max_minutes else None
            frac = step / budget if budget else elapsed / (60.0 * settings.max_minutes)
            reporter(0.05 + 0.95 * min(frac, 1.0), f"step {step} loss {losses[-1]:.4f} lr {lr:.2e}")
        if checkpoint is not None and time.perf_counter() - last_save > 60.0 * settings.checkpoint_minutes:
            model.eval()
            save_checkpoint(model, checkpoint, {**metadata(), "partial": True}, float16=settings.float16)
            model.train()
            last_save = time.perf_counter()
    if running:
        losses.append(float(np.mean(running)))
    model.eval()
    meta = metadata()
    if checkpoint is not None:
        save_checkpoint(model, checkpoint, meta, float16=settings.float16)
    reporter(1.0, f"trained {step} steps")
    return TrainResult(model, step, time.perf_counter() - start, data_seconds, losses, meta)


def _initialise(model: LesionModel, path: str) -> dict:
    """Load the weights of the LesionXAI checkpoint ``path`` into ``model`` (same network); return where they came from.

    Continuing a run this way keeps both runs on record: the new card names this checkpoint, its hash and its
    own training (steps, minutes, command), so the model can be rebuilt with the two commands in order.
    """
    from LesionXAILib.model_loading import load_model
    from LesionXAILib.models.identity import file_hash

    def network_fields(config: ModelConfig) -> dict:
        return {k: v for k, v in config.to_dict().items() if k not in MARGIN_KEYS}

    start = load_model(path)
    mine, theirs = network_fields(model.config), network_fields(start.config)
    if mine != theirs:
        differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ParameterError(f"--init '{path}' is a different network than config '{model.config.name}' (differs in {', '.join(differ)})")
    model.network.load_state_dict(start.network.state_dict(), strict=True)
    earlier = checkpoint_metadata(path)
    return {
        "path": str(path),
        "sha256": file_hash(path),
        "steps": earlier.get("steps"),
        "train_seconds": earlier.get("train_seconds"),
        "command": earlier.get("command"),
        "initialised_from": earlier.get("initialised_from"),
    }


def checkpoint_metadata(path: str | os.PathLike) -> dict:
    """Return the metadata dict stored in a LesionXAI checkpoint (empty if none)."""
    obj = torch.load(str(Path(path)), map_location="cpu", weights_only=True)
    return dict(obj.get("metadata") or {}) if isinstance(obj, dict) else {}
