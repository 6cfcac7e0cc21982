"""Checking that a model loads right on a subject: its contract, one window, the probability range, the lesions found.

A model fed the wrong axis order or normalisation often still produces a plausible-looking map, so
the check shows what LesionXAI will feed it (the contract and the resolved model space on this FLAIR)
next to what came out of one sliding window at the centre of the brain: a user who knows where the
subject's lesions are sees at once whether the model found them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from LesionXAILib.image_io import InputPair
from LesionXAILib.inference import effective_roi
from LesionXAILib.instances import label_components
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.crop import box_around
from LesionXAILib.segmentation import prepare_input

AXES_NAMES = {"kji": "k, j, i (SimpleITK order)", "ijk": "i, j, k (nibabel / MONAI LoadImage order)"}


@dataclass
class Component:
    """One connected component above the threshold inside the checked window."""

    voxels: int
    volume_mm3: float
    centre_ras: tuple[float, float, float]
    max_probability: float


@dataclass
class ModelCheck:
    """What one window of the model gave on a subject, with the contract it was run under."""

    contract: dict[str, Any]
    window_start_kji: tuple[int, int, int]
    window_stop_kji: tuple[int, int, int]
    probability_min: float
    probability_max: float
    probability_mean: float
    threshold: float
    voxels_above: int
    components: list[Component] = field(default_factory=list)

    def lines(self, top: int = 3) -> list[str]:
        """Return the human-readable report, one finding per line."""
        c = self.contract
        out = [f"model: {c['source']} (config '{c['name']}', network {c['network']}, {c['parameters']:,} parameters)"]
        out.append(f"  channels: {', '.join(c['channels'])}; normalisation: {c['normalization']}")
        out.append(f"  array axes: {AXES_NAMES.get(c['axes'], c['axes'])}; orientation: {c['orientation']}; spacing: {c['spacing']}")
        out.append(f"  output: {c['head']} head, lesion channel {c['lesion_index']}; threshold {self.threshold:g}")
        out.append(f"  window {c['roi_size']} (model axes) overlap {c['overlap']:g}; size divisor {c['size_divisor']}; crop rule {c['crop_rule']}")
        if c.get("resampling") or c.get("crop_nonzero"):
            out.append(f"  format pipeline: {'crop to the non-zero box; ' if c.get('crop_nonzero') else ''}"
                       f"{(c['resampling'] + ' resampling, differentiated through') if c.get('resampling') else 'no resampling'}")  # fmt: skip
        out.append(f"  on this FLAIR the model's axes 0, 1, 2 are canonical {c['model_space']}")
        start, stop = self.window_start_kji, self.window_stop_kji
        where = "the whole volume (the model runs in its own space)" if c.get("whole_volume") else "one window at the brain's centre"
        out.append(
            where + ": k {}-{}, j {}-{}, i {}-{}".format(start[0], stop[0], start[1], stop[1], start[2], stop[2])
        )
        out.append(f"probability: min {self.probability_min:.4f}, max {self.probability_max:.4f}, mean {self.probability_mean:.4f}")
        out.append(f"lesions (p >= {self.threshold:g}): {len(self.components)} components, {self.voxels_above} voxels")
        for n, comp in enumerate(self.components[:top], 1):
            x, y, z = comp.centre_ras
            out.append(f"  {n}. {comp.voxels} voxels ({comp.volume_mm3:.1f} mm3), max p {comp.max_probability:.3f}, centre RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm")
        if self.probability_max < self.threshold:
            out.append("note: no voxel reaches the threshold; if this subject has lesions, check the contract (axes, normalisation)")
        return out


def contract_summary(model: LesionModel) -> dict[str, Any]:
    """Return the model's whole input contract (config fields and resolved model space) as a flat dict."""
    cfg = model.config
    contract = cfg.contract
    space = model.space
    if space is None:
        described = "(resolved per image)"
    else:
        d = space.describe()
        flips = d["flipped_model_axes"]
        described = f"{', '.join(d['model_axes'])}" + (f", model axes {flips} flipped" if flips else ", no flips")
        if d["zoom"] is not None:
            described += f", zoom {d['zoom']}"
    return {
        "source": model.source,
        "name": cfg.name,
        "network": "TorchScript" if isinstance(model.network, torch.jit.ScriptModule) else cfg.network,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "channels": list(cfg.input_order),
        "normalization": cfg.normalization,
        "axes": contract.axes,
        "orientation": contract.orientation,
        "spacing": "as is" if contract.target_spacing is None else f"resampled to {list(contract.target_spacing)} mm",
        "head": cfg.head,
        "lesion_index": cfg.lesion_index,
        "roi_size": "x".join(str(v) for v in cfg.roi_size),
        "overlap": cfg.overlap,
        "size_divisor": cfg.size_divisor,
        "crop_rule": contract.crop_rule,
        "resampling": contract.resampling if contract.resamples else None,
        "crop_nonzero": contract.crop_nonzero,
        "whole_volume": model.runs_in_model_space,
        "model_space": described,
    }


def check_model(model: LesionModel, pair: InputPair, threshold: Optional[float] = None) -> ModelCheck:
    """Return the check of ``model`` on one sliding window centred on the subject's brain (non-zero FLAIR)."""
    model.bind(pair.geometry, pair)
    x = prepare_input(pair, model)
    shape = tuple(int(s) for s in x.shape[1:])
    divisor = model.size_divisor
    roi = effective_roi(shape, model.canonical_roi(), divisor)
    brain = np.argwhere(pair.flair != 0)
    centre = (brain.min(0) + brain.max(0)) // 2 if len(brain) else np.array(shape) // 2
    lo = [int(c) - r // 2 for c, r in zip(centre, roi)]
    box = box_around(lo, [a + r for a, r in zip(lo, roi)], shape, 1, roi)
    if model.runs_in_model_space:  # the network only runs on the whole (cropped, resampled) volume: check all of it
        from LesionXAILib.inference import predict_probability

        box = box_around([0, 0, 0], list(shape), shape, 1, shape)
        inner = predict_probability(model, x)
    else:
        window = torch.from_numpy(np.ascontiguousarray(box.extract(x, 0.0)))[None].to(model.device)
        with torch.inference_mode():
            prob = model.probability(model(window))[0, 0].float().cpu().numpy()
        inner = prob[box.inner]
    threshold = model.config.threshold if threshold is None else float(threshold)
    labels, n = label_components(inner >= threshold, 26, 1)
    components = []
    if n:
        counts = np.bincount(labels.ravel(), minlength=n + 1)
        offset = np.array([s.start for s in box.slices])
        for lab in np.argsort(counts[1:])[::-1][:10] + 1:
            vox = np.argwhere(labels == lab)
            centre_kji = vox.mean(0) + offset
            ras = pair.geometry.ijk_to_ras_points(centre_kji[::-1])[0]
            components.append(
                Component(
                    voxels=int(counts[lab]),
                    volume_mm3=float(counts[lab] * pair.geometry.voxel_volume),
                    centre_ras=tuple(float(v) for v in ras),
                    max_probability=float(inner[labels == lab].max()),
                )
            )
    return ModelCheck(
        contract=contract_summary(model),
        window_start_kji=tuple(int(s.start) for s in box.slices),
        window_stop_kji=tuple(int(s.stop) for s in box.slices),
        probability_min=float(inner.min()),
        probability_max=float(inner.max()),
        probability_mean=float(inner.mean()),
        threshold=threshold,
        voxels_above=int((inner >= threshold).sum()),
        components=components,
    )
