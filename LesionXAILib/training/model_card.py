"""The model card beside a checkpoint: ``<name>.json`` (machine-readable) and ``<name>.md`` rendered from it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

from LesionXAILib.atomic_write import write_json, write_text
from LesionXAILib.lesion_model import LesionModel


NETWORK_TITLES = {
    "unet": "MONAI UNet",
    "dynunet": "MONAI DynUNet (nnU-Net style)",
    "swin-unetr": "MONAI SwinUNETR",
    "mlcsc": "ML-CSC (unfolded ISTA, multimodal)",
}


def card_paths(checkpoint: str | os.PathLike) -> tuple[Path, Path]:
    """Return the (JSON, Markdown) model-card paths of a checkpoint."""
    p = Path(checkpoint)
    return p.with_suffix(".json"), p.with_suffix(".md")


def read_model_card(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Return the model card of a checkpoint ({} if it has none)."""
    path = card_paths(checkpoint)[0]
    return json.loads(path.read_text()) if path.exists() else {}


def output_description(config: Any) -> str:
    """Return the card's description of the network's output head (sigmoid logit or softmax channel)."""
    if getattr(config, "head", "sigmoid") == "softmax":
        return f"{config.out_channels} channels; lesion probability = softmax(channel {config.lesion_index})"
    return "one lesion logit channel; probability = sigmoid(logit)"


def write_model_card(checkpoint: str | os.PathLike, model: LesionModel, training: dict, evaluation: Optional[dict] = None) -> Path:
    """Write the JSON and Markdown card of a freshly trained model; return the JSON path."""
    cfg = model.config
    card = {
        "name": cfg.name,
        "checkpoint": Path(checkpoint).name,
        "architecture": {
            **{k: v for k, v in cfg.to_dict().items() if k not in ("extra", "input_order", "normalization", "roi_size", "overlap", "threshold")},
            "network": NETWORK_TITLES.get(cfg.network, cfg.network),  # after the config's own 'network' key: the title wins
            "parameters": int(sum(p.numel() for p in model.parameters())),
        },
        "inputs": {
            "order": list(cfg.input_order),
            "normalization": "per-channel z-score over non-zero (brain) voxels; background stays 0",
            "registration": "FLAIR and MPRAGE on one grid (MPRAGE is resampled onto the FLAIR by LesionXAI)",
            "skull_stripped": True,
        },
        "output": output_description(cfg),
        "inference": {"roi_size": list(cfg.roi_size), "overlap": cfg.overlap, "blending": "gaussian",
                      "threshold": cfg.threshold, "min_size_voxels": 3, "connectivity": 26},  # fmt: skip
        "training": training,
        "evaluation": evaluation,
        "intended_use": "demonstration, teaching and testing of LesionXAI on synthetic phantoms; NOT for clinical use "
        "and not validated on real MRI",
    }
    return _write(checkpoint, card)


def record_evaluation(checkpoint: str | os.PathLike, evaluation: dict) -> Path:
    """Store an evaluation summary in an existing card (per-subject rows included); return the JSON path."""
    card = read_model_card(checkpoint)
    card["evaluation"] = evaluation
    return _write(checkpoint, card)


def _write(checkpoint: str | os.PathLike, card: dict) -> Path:
    json_path, md_path = card_paths(checkpoint)
    write_json(json_path, card, allow_nan=True)
    write_text(md_path, render_markdown(card))
    return json_path


def render_markdown(card: dict) -> str:
    """Return the Markdown model card rendered from its JSON."""
    arch = card.get("architecture", {})
    tr = card.get("training") or {}
    ev = card.get("evaluation")
    st = tr.get("settings", {})
    lines = [
        f"# Model card: {card.get('name')} (`{card.get('checkpoint')}`)",
        "",
        f"**Intended use:** {card.get('intended_use')}.",
        "",
        "## Architecture",
        _architecture_line(arch, card),
        "",
        "## Inputs and inference",
        f"- channel order: {', '.join(card.get('inputs', {}).get('order', []))}",
        f"- normalisation: {card.get('inputs', {}).get('normalization')}",
        f"- sliding window {card.get('inference', {}).get('roi_size')} (overlap {card.get('inference', {}).get('overlap')}, "
        f"Gaussian blending); threshold {card.get('inference', {}).get('threshold')}; instances = 26-connected components "
        f">= {card.get('inference', {}).get('min_size_voxels')} voxels",
        "",
        "## Training",
        f"- data: phantoms `lesionxai phantom` seeds {st.get('train_seeds')} (every {st.get('anisotropic_every')}th at 1x1x3 mm), "
        f"patches {st.get('patch_size')}, batch {st.get('batch_size')}, {st.get('lesion_fraction')} of patches lesion-centred"
        f"{_mimic_patches(st)}"
        f"{_mimics(st)}",
        f"- optimiser: AdamW lr {st.get('learning_rate')} (cosine), BCE + soft Dice loss, seed {st.get('seed')}",
        f"- {tr.get('steps')} steps in {_minutes(tr.get('train_seconds'))} on {tr.get('threads')} CPU thread(s) "
        f"(+ {tr.get('phantom_seconds')} s generating phantoms), torch {tr.get('torch')}, {tr.get('date')}",
        *_continued_lines(tr.get("initialised_from")),
        f"- reproduce: `{tr.get('command', 'lesionxai train --out model.pt')}`",
        *([f"- weights stored as {tr['weights_stored_as']} (loaded back as float32; the evaluation below is of the stored weights)"]
          if tr.get("weights_stored_as") else []),
        "",
        "## Evaluation (unseen phantoms)",
    ]
    if ev:
        lines += [
            f"- phantoms: seeds {ev.get('seeds')} ({ev.get('subjects')} subjects){_phantoms(ev.get('phantom_settings'))}",
            f"- voxel Dice: mean **{ev['dice_mean']:.3f}** (min {ev['dice_min']:.3f})",
            f"- lesion-wise (pooled): precision **{ev['lesion_precision']:.3f}**, recall **{ev['lesion_recall']:.3f}**, "
            f"F1 **{ev['lesion_f1']:.3f}** (TP {ev['tp']}, FP {ev['fp']}, FN {ev['fn']} of {ev['gt_lesions']} lesions); "
            f"mean per-subject F1 {ev['lesion_f1_mean_per_subject']:.3f}",
            f"- reproduce: `{ev.get('command', 'lesionxai evaluate --seeds 100-109')}`",
        ]
    else:
        lines.append("- not evaluated yet (`lesionxai evaluate --model ... --update-card`)")
    return "\n".join(lines) + "\n"


def _architecture_line(arch: dict, card: dict) -> str:
    """Return the card's one-line architecture summary (U-Net fields, or the network's own arguments)."""
    if arch.get("network") == "MONAI UNet" or not arch.get("architecture"):
        line = (f"{arch.get('network')}: channels {arch.get('channels')}, strides {arch.get('strides')}, "
                f"{arch.get('num_res_units')} residual unit(s), {arch.get('norm')} norm, {arch.get('act')} activation, "
                f"{arch.get('parameters')} parameters")  # fmt: skip
    elif isinstance(arch.get("architecture"), dict):
        args = ", ".join(f"{k}={v}" for k, v in arch["architecture"].items())
        line = f"{arch.get('network')}: {args}; {arch.get('parameters')} parameters"
    else:
        line = f"{arch.get('network')}: {arch.get('architecture')}, {arch.get('parameters')} parameters"
    return f"{line}; head: {card.get('output')}."


def _continued_lines(init: Any) -> list[str]:
    """Return the card lines naming the checkpoint(s) a run continued from, earliest first and numbered."""
    chain = []
    while isinstance(init, dict):
        chain.append(init)
        init = init.get("initialised_from")
    if not chain:
        return []
    # Each run overwrites the checkpoint it continued from, so the path alone does not tell the runs apart.
    lines = [f"- continued from {len(chain)} earlier run(s), earliest first; the figures above are this run's:"]
    for number, earlier in enumerate(reversed(chain), start=1):
        lines.append(f"  {number}. `{earlier.get('path')}` (sha256 {str(earlier.get('sha256'))[:12]}…: {earlier.get('steps')} steps "
                     f"in {_minutes(earlier.get('train_seconds'))}, made by `{earlier.get('command')}`)")
    return lines


def _mimics(settings: dict) -> str:
    """Return ', with lesion mimics and lookalikes' / '(no lookalikes)' / ', without lesion mimics' when recorded."""
    if "mimics" not in settings:
        return ""
    if not settings["mimics"]:
        return ", without lesion mimics"
    # settings written before lookalikes existed have no such key: their phantoms had none
    return ", with lesion mimics" + (" and lookalikes" if settings.get("lookalikes") else " (no lookalikes)")


def _mimic_patches(settings: dict) -> str:
    """Return ', 0.2 centred on mimics' when hard-negative patches were drawn, else ''."""
    share = settings.get("mimic_fraction") or 0
    return f", {share} centred on mimics" if share else ""


def _phantoms(settings: Any) -> str:
    """Return the evaluation phantoms' field of view and mimics, as far as recorded."""
    if not isinstance(settings, dict):
        return ""
    fov = settings.get("fov_mm")
    where = f"; field of view {fov} mm" if fov else "; whole brain"
    return where + _mimics(settings)


def _minutes(seconds: Any) -> str:
    return f"{float(seconds) / 60:.1f} min" if seconds is not None else "?"
