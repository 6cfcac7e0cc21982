"""The study's synthetic-lesion detection curve: lesions of known size and contrast inserted into each model's phantom.

On the first held-out phantom the synthetic-lesion probe (:mod:`LesionXAILib.probes.synthetic`) inserts
each size x FLAIR contrast at the same normal-appearing white-matter positions for every model (kept
away from the phantom's lesions and mimics), so the models' curves differ by the model only.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np


def synthetic_rows(model_name: str, seed: int, model: Any, phantom: Any, positions: int, probe_seed: int,
                   reporter: Optional[Any] = None) -> list[dict[str, Any]]:  # fmt: skip
    """Return the probe's per (volume, contrast) summary rows for ``model`` on ``phantom``, tagged with model and seed."""
    from LesionXAILib.probes.synthetic import SyntheticSettings, synthetic_lesion_probe

    exclude = np.asarray(phantom.lesions, bool)
    if getattr(phantom, "mimics", None) is not None:
        exclude = exclude | (np.asarray(phantom.mimics) > 0)
    result = synthetic_lesion_probe(model, phantom.pair(), SyntheticSettings(n_positions=int(positions), seed=int(probe_seed)),
                                    wm=phantom.wm, exclude=exclude, progress=reporter)  # fmt: skip
    return [{"model": model_name, "seed": int(seed), "positions": result.n_positions, **row} for row in result.summary_rows()]


def detection_rate(rows: Sequence[dict], model_name: str) -> Optional[float]:
    """Return the share of all synthetic lesions of ``model_name`` that were detected (None without trials)."""
    mine = [r for r in rows if r["model"] == model_name and r.get("trials")]
    trials = sum(int(r["trials"]) for r in mine)
    return sum(int(r["detected"]) for r in mine) / trials if trials else None


def smallest_detected_half(rows: Sequence[dict], model_name: str) -> Optional[float]:
    """Return the smallest volume (mm3) at which at least half of the model's synthetic lesions were found, over all contrasts."""
    by_volume: dict[float, list[int]] = {}
    for r in rows:
        if r["model"] == model_name and r.get("trials"):
            tally = by_volume.setdefault(float(r["volume_mm3"]), [0, 0])
            tally[0] += int(r["detected"])
            tally[1] += int(r["trials"])
    found = [v for v, (d, n) in sorted(by_volume.items()) if n and d / n >= 0.5]
    return found[0] if found else None


def curve(rows: Sequence[dict], model_name: str, contrast: float) -> tuple[list[float], list[float]]:
    """Return (volumes, detection rates) of one model at one FLAIR contrast, sizes ascending (NaN where no trial)."""
    mine = sorted((r for r in rows if r["model"] == model_name and float(r["flair_contrast"]) == float(contrast)),
                  key=lambda r: float(r["volume_mm3"]))  # fmt: skip
    rates = [float(r["detection_rate"]) if r.get("trials") else math.nan for r in mine]
    return [float(r["volume_mm3"]) for r in mine], rates
