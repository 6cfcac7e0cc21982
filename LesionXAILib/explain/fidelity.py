"""The fidelity guard: every crop explanation states how much of its whole-volume attribution it holds.

A crop is exact only if it holds the model's whole reach for the target (docs/methods.md#crop-fidelity), and
that reach depends on the weights. So:

* **Which margin.** A model calibrated with ``lesionxai calibrate`` carries its margins in its config.
  An uncalibrated model is calibrated automatically the first time it is explained (a quick
  :func:`~LesionXAILib.explain.margin_calibration.calibrate_margin` on a few lesions of that subject,
  one noise sample), and the result is cached per model: keyed by a hash of the weights and the
  network config (:func:`model_fingerprint`), in memory and in ``<cache>/margins/<hash>.json``
  (``<cache>``: ``$LESIONXAI_CACHE_DIR``, else ``$XDG_CACHE_HOME/lesionxai``, else
  ``~/.cache/lesionxai``). If no measured margin passes, the model is explained on the whole volume. No margin is assumed.
* **Per lesion, checked.** Before a lesion is explained on its crop (margin m), one plain gradient of
  its target (no noise; for max aggregation, of the logit of the lesion voxel nearest its centroid and
  of the voxel farthest from that one) is taken on the working crop and on a wider crop (margin
  ``WIDEN_FACTOR`` x m, at least m + ``MIN_WIDEN_MM``); the wider crop is the reference:
  ``captured`` = share of its |gradient| (all channels) inside the working crop, ``pearson_r`` = r of
  the two gradients over the wider crop. Both are *estimates* of the whole-volume figures (attribution
  beyond the wider crop is not seen), except when the wider crop is the whole volume (then they are
  measured exactly, ``reference: "whole volume"``). Below the rule (r >= ``MIN_PEARSON_R``, captured
  >= ``MIN_CAPTURED``) the margin is widened to the reference's and checked again; once the reference
  would cover most of the volume it becomes the whole volume, and a lesion that still fails is
  explained on the whole volume (exact). Every Explanation records the result (``Explanation.fidelity``).
* **CAMs** take their layer activations from the whole volume and the layer gradient from the crop,
  so the crop's loss is the layer gradient it cuts off: ``cam_captured`` is the share of the wider
  crop's |dS/dA| (at the CAM layer) inside the working crop, from the same two passes.

Over 400 lines on purpose: margin resolution, the per-lesion check and the widening loop implement
one rule (docs/methods.md#crop-fidelity) whose thresholds and figures must stay consistent; batched
first checks live in explain/grouping.py and the calibration itself in explain/margin_calibration.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from LesionXAILib.atomic_write import write_text
from LesionXAILib.errors import ParameterError
from LesionXAILib.explain.margin_calibration import MIN_CAPTURED, MIN_PEARSON_R, pearson_r
from LesionXAILib.lesion_model import LesionModel
from LesionXAILib.crop import CropBox, full_box, grow_aligned, ladder_size

log = logging.getLogger(__name__)

# The per-lesion reference crop: margin x 1.5, at least 6 mm more (x 2 measured +98 % wall on the demo model at n = 4;
# its cost is one pass on this crop plus one on the working crop, against n passes of SmoothGrad).
WIDEN_FACTOR = 1.5
MIN_WIDEN_MM = 6.0
# Reference crops are grown to cubes whose side is on this ladder of sizes (x1.25 steps), so that most share a shape.
REFERENCE_LADDER = 1.25
# A reference crop holding at least this share of the padded volume is replaced by the whole volume.
WHOLE_VOLUME_SHARE = 0.5
# Auto-calibration: margins measured and lesions used (quick: one noise sample, few lesions).
AUTO_MARGINS_MM = (4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0)
AUTO_LESIONS = 3
AUTO_MAX_VOXELS = 30  # max aggregation's reference is one whole-volume pass per voxel: small lesions only
AUTO_SAMPLES = 1

# how each explanation's margin came to be (Explanation.fidelity["obtained"])
OBTAINED = ("verified", "calibrated", "auto-calibrated", "chosen", "whole-volume")

_memory: dict[str, dict] = {}
_lock = threading.Lock()


def model_fingerprint(model: LesionModel) -> str:
    """Return a hex hash of the network's weights/buffers (values and dtypes) and its config (margins excluded)."""
    from LesionXAILib.model_config import MARGIN_KEYS
    from LesionXAILib.models.identity import weights_hash

    # margins excluded: calibrating a model must not change the key its calibration is cached under
    return weights_hash(model, MARGIN_KEYS)[:32]


def cache_dir() -> Path:
    """Return the user cache directory of LesionXAI (``$LESIONXAI_CACHE_DIR`` overrides)."""
    env = os.environ.get("LESIONXAI_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lesionxai"


# Calibrations of shipped models, by fingerprint (the weights as loaded, float32). The demo model's were
# measured with `lesionxai calibrate` on phantom 1 (4 lesions per aggregation, n = 2; README, benchmarks/explain_margin_fidelity.py):
# sum 12 mm (worst r 1.0000, captured 0.997), max 10 mm around each voxel (worst r 0.9976, captured 0.988).
SHIPPED_CALIBRATIONS: dict[str, dict] = {
    "3351e23c5a47d959e44f80d9a1142088": {
        "model": "lesionxai-demo",
        "source": "calibrated",
        "file": "shipped with LesionXAI (lesionxai calibrate, phantom 1, 4 lesions, n = 2)",
        "sum": {"margin_mm": 12.0, "min_r": 1.0, "min_captured": 0.997},
        "max": {"margin_mm": 10.0, "min_r": 0.9976, "min_captured": 0.988},
    },
}


def _key(aggregation: str) -> str:
    return "max" if aggregation == "max" else "sum"  # sum and mean share the crop margin


def calibration_record(fingerprint: str) -> Optional[dict]:
    """Return the stored calibration of a model (shipped records, memory, user cache), or None."""
    if fingerprint in SHIPPED_CALIBRATIONS:
        return SHIPPED_CALIBRATIONS[fingerprint]
    with _lock:
        if fingerprint in _memory:
            return _memory[fingerprint]
    for folder in [cache_dir() / "margins"]:
        path = folder / f"{fingerprint}.json"
        if path.is_file():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError) as exc:  # a broken cache entry is recomputed, never trusted
                log.warning("ignoring unreadable margin cache %s: %s", path, exc)
                continue
            record["file"] = str(path)
            with _lock:
                _memory[fingerprint] = record
            return record
    return None


def model_margin(model: LesionModel, aggregation: str, fingerprint: Optional[str] = None) -> tuple[Optional[float], str, bool]:
    """Return (margin mm or None, where it comes from, known) for an explanation with no chosen margin.

    ``known`` is False when the model has neither a calibrated margin nor an auto-calibration for this
    aggregation (the caller calibrates or explains on the whole volume); a known None margin means
    that no measured margin passed, i.e. the whole volume.
    """
    config = model.config
    calibrated = getattr(config, "explain_voxel_margin_mm" if aggregation == "max" else "explain_margin_mm", None)
    if calibrated is not None:
        return float(calibrated), "calibrated", True
    record = calibration_record(fingerprint or model_fingerprint(model))
    entry = (record or {}).get(_key(aggregation))
    if entry is None:
        return None, "uncalibrated", False
    margin = entry.get("margin_mm")
    return (None if margin is None else float(margin)), record.get("source", "auto-calibrated"), True


def auto_calibrate(
    model: LesionModel,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    geometry,
    aggregation: str,
    progress=None,
    cancel=None,
) -> dict:
    """Return (and cache) a quick margin calibration of ``model`` for ``aggregation`` on lesions of this subject."""
    from LesionXAILib.explain.margin_calibration import calibrate_margin, pick_lesions

    fingerprint = model_fingerprint(model)
    max_voxels = AUTO_MAX_VOXELS if aggregation == "max" else None
    picks = pick_lesions(masks, AUTO_LESIONS, max_voxels)
    if not picks and aggregation == "max":  # every lesion larger: calibrate on the smallest
        picks = pick_lesions(masks, 1)
    if not picks:
        raise ParameterError("no lesion to calibrate the crop margin on")
    started = time.perf_counter()
    cal = calibrate_margin(
        model, image, [masks[i] for i in picks], geometry, _key(aggregation), AUTO_MARGINS_MM, AUTO_SAMPLES,
        progress=progress, cancel=cancel,
    )  # fmt: skip
    entry = {
        "margin_mm": cal.margin_mm,
        "seconds": round(time.perf_counter() - started, 3),
        "calibration": cal.to_dict(),
    }
    record = calibration_record(fingerprint) or {"fingerprint": fingerprint, "model": model.config.name}
    record = {k: v for k, v in record.items() if k != "file"}
    record[_key(aggregation)] = entry
    record["lesionxai_version"] = __import__("LesionXAILib").__version__
    folder = cache_dir() / "margins"
    path = folder / f"{fingerprint}.json"
    try:
        write_text(path, json.dumps(record, indent=2))
        record["file"] = str(path)
    except OSError as exc:  # an unwritable cache keeps the result for this process only
        log.warning("could not write the margin cache %s: %s", path, exc)
    with _lock:
        _memory[fingerprint] = record
    margin = entry["margin_mm"]
    log.info(
        "model '%s' auto-calibrated for %s targets on %d lesions in %.0f s: %s",
        model.config.name, aggregation, len(picks), entry["seconds"],
        f"margin {margin:g} mm" if margin is not None else "no margin up to 48 mm passes: whole volume",
    )  # fmt: skip
    return record


def forget_memory() -> None:
    """Drop the in-memory calibration cache (the files stay)."""
    with _lock:
        _memory.clear()


# --- the per-lesion check ---------------------------------------------------------------------------


def check_voxels(mask: np.ndarray, aggregation: str) -> list[np.ndarray]:
    """Return the single-target masks a lesion is checked with: the lesion (sum/mean) or two of its voxels (max)."""
    if aggregation != "max":
        return [np.asarray(mask, dtype=bool)]
    idx = np.argwhere(mask)
    centre = idx.mean(0)
    nearest = int(np.argmin(((idx - centre) ** 2).sum(1)))
    picks = sorted({nearest, int(np.argmax(((idx - idx[nearest]) ** 2).sum(1)))})  # and the farthest from it
    out = []
    for p in picks:
        m = np.zeros(mask.shape, bool)
        m[tuple(idx[p])] = True
        out.append(m)
    return out


def _gradients(model: LesionModel, crop_image: torch.Tensor, crop_mask: torch.Tensor, layer) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Return (dS/dx (C, ...), dS/dA at ``layer`` or None) of the sum target on one crop, one pass."""
    gx, ga = batch_gradients(model, crop_image[None], crop_mask[None], layer)
    return gx[0], None if ga is None else ga[0]


def batch_gradients(model: LesionModel, images: torch.Tensor, masks: torch.Tensor, layer) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Return (dS_b/dx_b (B, C, ...), dS_b/dA_b at ``layer`` or None) of each crop b's own sum target, one pass.

    One backward pass of sum_b S_b: in eval mode the batch elements do not interact, so the gradient
    with respect to crop b is exactly that of its own target S_b.
    """
    from LesionXAILib.explain.pass_network import channels_last, pass_model

    captured: list[torch.Tensor] = []
    handle = None
    # the pass runs on the folded channels-last copy; the hooked layer keeps its own output there
    name = next((n for n, m in model.network.named_modules() if m is layer), None) if layer is not None else None
    model = pass_model(model, () if name is None else (name,))
    if layer is not None:
        layer = dict(model.network.named_modules()).get(name, layer) if name is not None else layer
        handle = layer.register_forward_hook(lambda m, a, out: captured.append(out))
    try:
        x = channels_last(images.detach()).clone().requires_grad_(True)
        z = model.lesion_logit(model(x))
        score = (z[:, 0] * masks.to(z.dtype)).sum()
        wrt = [x] + captured[:1]
        grads = torch.autograd.grad(score, wrt, allow_unused=True)
    finally:
        if handle is not None:
            handle.remove()
    ga = grads[1] if len(grads) > 1 and grads[1] is not None else None
    return grads[0].detach(), None if ga is None else ga.detach()


def _crop(model: LesionModel, image: np.ndarray, mask: np.ndarray, box: CropBox) -> tuple[torch.Tensor, torch.Tensor]:
    from LesionXAILib.explain.model_state import model_dtype

    img = np.ascontiguousarray(box.extract(image, 0.0))
    m = np.ascontiguousarray(box.extract(mask, False))
    return torch.from_numpy(img).to(model.device, model_dtype(model)), torch.from_numpy(m).to(model.device)


def _offset(inner: CropBox, outer: CropBox) -> tuple[slice, ...]:
    """Return the slices of ``inner``'s padded grid inside ``outer``'s padded grid (both start on the image)."""
    return tuple(slice(a.start - b.start, a.start - b.start + n) for a, b, n in zip(inner.slices, outer.slices, inner.shape))


def reference_box(mask: np.ndarray, spacing_kji, margin_mm: float, divisor: int) -> tuple[CropBox, float, bool]:
    """Return (reference box, its least margin, is the whole volume) for checking a crop at ``margin_mm``.

    The box holds at least ``WIDEN_FACTOR`` x the margin around the lesion and is grown to a cube whose side
    is the next size of a x1.25 ladder (:func:`~LesionXAILib.crop.ladder_size`; clipped to the padded volume):
    a wider reference is as valid, and lesions whose references share a shape share one batched pass
    (explain/grouping.py).
    """
    from LesionXAILib.explain.region import explain_box

    wide_mm = max(margin_mm * WIDEN_FACTOR, margin_mm + MIN_WIDEN_MM)
    wide = explain_box(mask, spacing_kji, wide_mm, divisor)
    full = full_box(mask.shape, divisor)
    side = ladder_size(max(wide.shape), divisor, REFERENCE_LADDER)
    rung = tuple(min(side, f) for f in full.shape)
    if rung != wide.shape:
        wide = grow_aligned(wide, rung, divisor)
    if np.prod(wide.shape) >= WHOLE_VOLUME_SHARE * np.prod(full.shape):
        return full, float("inf"), True
    return wide, wide_mm, False


def check_crop(
    model: LesionModel,
    image: np.ndarray,
    mask: np.ndarray,
    spacing_kji,
    margin_mm: float,
    layer=None,
) -> dict[str, Any]:
    """Return the fidelity figures of the sum target of ``mask`` on its crop at ``margin_mm`` against a wider crop.

    Keys: captured, pearson_r, cam_captured (None without ``layer``), reference_margin_mm (inf: whole
    volume), whole_volume_reference, passes.
    """
    from LesionXAILib.explain.region import explain_box

    divisor = model.size_divisor
    work = explain_box(mask, spacing_kji, margin_mm, divisor)
    wide, wide_mm, exact = reference_box(mask, spacing_kji, margin_mm, divisor)
    gw, aw = _gradients(model, *_crop(model, image, mask, work), layer)
    gr, ar = _gradients(model, *_crop(model, image, mask, wide), layer)
    return check_figures(work, wide, wide_mm, exact, gw, gr, ar)


def check_figures(work: CropBox, wide: CropBox, wide_mm: float, exact: bool, gw: torch.Tensor, gr: torch.Tensor,
                  ar: Optional[torch.Tensor]) -> dict[str, Any]:  # fmt: skip
    """Return :func:`check_crop`'s figures from the gradients on the working crop (gw) and the reference crop (gr, ar)."""
    region = _offset(work, wide)
    inner = (slice(None),) + tuple(slice(s.start, min(s.stop, n)) for s, n in zip(region, wide.shape))
    gw_in = torch.zeros_like(gr)
    gw_in[inner] = gw[(slice(None),) + tuple(slice(0, s.stop - s.start) for s in inner[1:])]
    # only the image part of the reference counts (its end padding is not part of the volume)
    img = (slice(None),) + wide.inner
    ref, roi = gr[img].to(torch.float64), gw_in[img].to(torch.float64)
    total = float(ref.abs().sum())
    captured = float(ref.abs()[inner].sum() / total) if total > 0 else 1.0
    r = pearson_r(ref.cpu().numpy(), roi.cpu().numpy())
    cam_captured = None
    if ar is not None:
        scale = [w / a for w, a in zip(wide.shape, ar.shape[1:])]
        cam_region = (slice(None),) + tuple(
            slice(int(round(s.start / f)), int(round(s.stop / f))) for s, f in zip(region, scale)
        )
        cam_total = float(ar.abs().sum(dtype=torch.float64))
        cam_captured = float(ar.abs()[cam_region].sum(dtype=torch.float64) / cam_total) if cam_total > 0 else 1.0
    return {
        "captured": captured,
        "pearson_r": r,
        "cam_captured": cam_captured,
        "reference_margin_mm": wide_mm,
        "whole_volume_reference": exact,
        "passes": bool(r >= MIN_PEARSON_R and captured >= MIN_CAPTURED),
    }


def guard_margin(
    model: LesionModel,
    image: np.ndarray,
    mask: np.ndarray,
    spacing_kji,
    margin_mm: float,
    aggregation: str,
    layer=None,
    first: Optional[list[dict[str, Any]]] = None,
    first_seconds: float = 0.0,
) -> tuple[Optional[float], dict[str, Any]]:
    """Return (margin that passes the rule, or None for the whole volume; the fidelity figures and checks).

    Widens ``margin_mm`` to each failed check's reference margin until a check passes; a failure
    against the whole volume means the whole volume (exact, captured 1, r 1). ``first``: the
    :func:`check_crop` results at ``margin_mm`` computed before (batched with other lesions,
    :mod:`LesionXAILib.explain.grouping`), taking ``first_seconds``.
    """
    started = time.perf_counter() - first_seconds
    checks = []
    margin: Optional[float] = float(margin_mm)
    masks = check_voxels(mask, aggregation)
    while True:
        if first is not None:
            results, first = first, None
        else:
            results = [check_crop(model, image, m, spacing_kji, margin, layer) for m in masks]
        worst = min(results, key=lambda c: (c["passes"], c["captured"], c["pearson_r"]))
        worst = {**worst, "captured": min(c["captured"] for c in results), "pearson_r": min(c["pearson_r"] for c in results)}
        cams = [c["cam_captured"] for c in results if c["cam_captured"] is not None]
        worst["cam_captured"] = min(cams) if cams else None
        worst["passes"] = all(c["passes"] for c in results)
        checks.append({"margin_mm": margin, **{k: worst[k] for k in ("captured", "pearson_r", "cam_captured", "passes")}})
        if worst["passes"]:
            break
        if worst["whole_volume_reference"]:
            margin = None
            break
        margin = worst["reference_margin_mm"]
    last = checks[-1]
    out = {
        "captured": 1.0 if margin is None else last["captured"],
        "pearson_r": 1.0 if margin is None else last["pearson_r"],
        "cam_captured": 1.0 if margin is None else last["cam_captured"],
        "reference": "whole volume" if margin is None or worst["whole_volume_reference"] else f"crop, margin {worst['reference_margin_mm']:g} mm",
        "measured": "exact" if margin is None or worst["whole_volume_reference"] else "estimate",
        "checked_on": "lesion" if aggregation != "max" else f"{len(masks)} lesion voxel(s)",
        "checks": checks,
        "check_seconds": round(time.perf_counter() - started, 4),
    }
    return margin, out


# --- the guard as the explainers run it -------------------------------------------------------------


def ensure_margin(
    model: LesionModel,
    image: np.ndarray,
    masks: Sequence[np.ndarray],
    geometry,
    aggregation: str,
    progress=None,
    cancel=None,
) -> tuple[Optional[float], str]:
    """Return (margin mm or None = whole volume, source) for ``model``, auto-calibrating it on ``masks`` if it has none.

    source: "calibrated" (the model's config), "auto-calibrated" (measured on first use, cached).
    """
    fingerprint = None if _config_margin(model, aggregation) is not None else model_fingerprint(model)
    margin, source, known = model_margin(model, aggregation, fingerprint)
    if not known:
        auto_calibrate(model, image, masks, geometry, aggregation, progress, cancel)
        margin, source, known = model_margin(model, aggregation, fingerprint)
    return margin, source


def _config_margin(model: LesionModel, aggregation: str) -> Optional[float]:
    return getattr(model.config, "explain_voxel_margin_mm" if aggregation == "max" else "explain_margin_mm", None)


def unchecked_fidelity(model: LesionModel, margin: Optional[float], source: str, aggregation: str) -> dict[str, Any]:
    """Return the fidelity record of an explanation whose crop was not checked per lesion (figures from the calibration)."""
    if margin is None:
        return whole_volume_fidelity(source)
    out: dict[str, Any] = {"obtained": source, "margin_mm": margin, "captured": None, "pearson_r": None, "cam_captured": None,
                           "measured": None, "reference": None}  # fmt: skip
    if source != "chosen":
        entry = (calibration_record(model_fingerprint(model)) or {}).get(_key(aggregation)) or {}
        points = (entry.get("calibration") or {}).get("curve", []) or ([entry] if "min_r" in entry else [])
        for point in points:
            if point["margin_mm"] == margin:
                out.update(captured=point["min_captured"], pearson_r=point["min_r"], measured="calibration (worst lesion)")
    passes = out["captured"] is not None and out["captured"] >= MIN_CAPTURED and out["pearson_r"] >= MIN_PEARSON_R
    out["passes"] = passes if out["captured"] is not None else None
    out["flag"] = "" if passes else ("not checked per lesion" if out["captured"] is None else "below the fidelity rule")
    return out


def whole_volume_fidelity(source: str = "whole-volume") -> dict[str, Any]:
    """Return the fidelity record of a whole-volume explanation (exact by construction)."""
    return {"obtained": "whole-volume", "margin_mm": None, "margin_source": source, "captured": 1.0, "pearson_r": 1.0,
            "cam_captured": 1.0, "measured": "exact", "reference": "whole volume", "passes": True, "flag": ""}  # fmt: skip


def checked_fidelity(
    model: LesionModel,
    image: np.ndarray,
    mask: np.ndarray,
    spacing_kji,
    margin_mm: float,
    source: str,
    aggregation: str,
    layer=None,
    memo: Optional[dict] = None,
    layer_name: Optional[str] = None,
    first: Optional[list[dict[str, Any]]] = None,
    first_seconds: float = 0.0,
) -> tuple[Optional[float], dict[str, Any]]:
    """Return (margin to explain on or None = whole volume, fidelity record) of one lesion after the per-lesion check.

    ``first``/``first_seconds``: see :func:`guard_margin`. A record put in ``memo`` by
    :func:`LesionXAILib.explain.grouping.prefill_checks` is returned once with its check time, then as a reuse.
    """
    key = None
    if memo is not None:
        key = memo_key(mask, margin_mm, aggregation, layer_name)
        if key in memo:  # the same lesion checked before (e.g. an earlier stage): same margin, no new passes
            margin, fid = memo[key]
            if fid.get("prefilled"):  # checked moments ago in a batch for this very call: its time is this lesion's
                fid = {k: v for k, v in fid.items() if k != "prefilled"}
                memo[key] = (margin, fid)
                return margin, fid
            return margin, {**fid, "check_seconds": 0.0}
    margin, fid = guard_margin(model, image, mask, spacing_kji, margin_mm, aggregation, layer, first, first_seconds)
    if margin is None:
        fid = {**whole_volume_fidelity(source), "checks": fid["checks"], "check_seconds": fid["check_seconds"],  # fmt: skip
               "note": "crops failed the fidelity rule: explained on the whole volume"}  # fmt: skip
    else:
        widened = margin != float(margin_mm)
        fid = {"obtained": "verified", "margin_mm": margin, "margin_source": source, **fid, "passes": True, "flag": "",
               "note": f"margin widened from {margin_mm:g} mm" if widened else ""}  # fmt: skip
    if layer is None:
        fid["cam_captured"] = None
    if memo is not None:
        memo[key] = (margin, fid)
    return margin, fid


def memo_key(mask: np.ndarray, margin_mm: float, aggregation: str, layer_name: Optional[str]) -> tuple:
    """Return the key of one lesion's check in a fidelity memo (mask hash, margin, target kind, CAM layer)."""
    return (hashlib.sha1(np.packbits(np.asarray(mask, bool)).tobytes()).hexdigest(), float(margin_mm), _key(aggregation), layer_name)


def write_run_calibration(model: LesionModel, out_dir, protected=()) -> Optional[Path]:
    """Write the model's stored calibration record (if any, not a config one) as ``<out_dir>/margin_calibration.json``."""
    record = calibration_record(model_fingerprint(model))
    if record is None:
        return None
    path = Path(out_dir) / "margin_calibration.json"
    if any(Path(p).resolve() == path.resolve() for p in protected if p is not None):
        raise ParameterError(f"refusing to overwrite the input file {path}")
    write_text(path, json.dumps({"fingerprint": model_fingerprint(model), **record}, indent=2))
    return path
