"""Descriptions of the lesion-table columns, for the JSON sidecars of the BIDS-Derivatives TSV tables.

Columns are named by the engine (``analysis.LesionAnalysis.summary``, ``metrics.evaluate``): fixed names,
and names built from a map key (``<method>_<sequence>`` for gradient maps, ``<method>`` for CAMs) or a
method plus a metric. ``describe_column`` returns a BIDS column description (``Description`` and, where
it applies, ``Units`` or ``Levels``); a column it does not know gets a description saying so, which the
tests treat as a defect (every column the cohort writes is described here).
"""

from __future__ import annotations

import re
from typing import Any

UNKNOWN = "Column without a documented description"

_FIXED: dict[str, dict[str, Any]] = {
    "index": {"Description": "Label value of this lesion in the desc-lesions dseg image (the lesion id).", "Format": "integer"},
    "name": {"Description": "Name of the label: 'lesion-<id>'."},
    "subject": {"Description": "Cohort subject id: sub-<label>[_ses-<label>] for BIDS input."},
    "id": {"Description": "Lesion (instance) id: its label value in the desc-lesions dseg image."},
    "status": {"Description": "Instance status against the ground-truth lesion mask.",
               "Levels": {"TP": "predicted lesion overlapping a ground-truth lesion", "FP": "predicted lesion with no ground-truth overlap",
                          "FN": "ground-truth lesion the model missed", "predicted": "predicted lesion; no ground truth given"}},
    "voxels": {"Description": "Number of voxels of the lesion."},
    "volume_mm3": {"Description": "Lesion volume.", "Units": "mm^3"},
    "centroid_r": {"Description": "Lesion centroid, right coordinate (RAS world coordinates of the FLAIR).", "Units": "mm"},
    "centroid_a": {"Description": "Lesion centroid, anterior coordinate (RAS world coordinates of the FLAIR).", "Units": "mm"},
    "centroid_s": {"Description": "Lesion centroid, superior coordinate (RAS world coordinates of the FLAIR).", "Units": "mm"},
    "mean_probability": {"Description": "Mean predicted lesion probability over the lesion's voxels."},
    "max_probability": {"Description": "Largest predicted lesion probability over the lesion's voxels."},
    "fidelity": {"Description": "How the cropped explanation compares with the full-volume one: 'verified' when checked, else how it was obtained."},
    "margin_mm": {"Description": "Crop margin around the lesion used for the explanations.", "Units": "mm"},
    "captured": {"Description": "Share of the full-volume gradient attribution that the crop captures (fidelity check)."},
    "cam_captured": {"Description": "Share of the full-volume CAM attribution that the crop captures (fidelity check; empty without a CAM)."},
    "pearson_r": {"Description": "Pearson correlation between the cropped and the full-volume explanation inside the crop (fidelity check)."},
    "fidelity_passes": {"Description": "True when the crop passed the fidelity check."},
    "fidelity_flag": {"Description": "Why the fidelity check flagged this lesion (empty when it passed)."},
    "context_status": {"Description": "Context-probe outcome.",
                       "Levels": {"needs_context": "detected only once enough surrounding tissue is kept",
                                  "detected_without_context": "detected from the lesion alone (radius 0)",
                                  "not_detected": "not detected even with the full image"}},
    "context_needed_mm": {"Description": "Smallest kept radius around the lesion from which it is detected at every larger radius (empty: not finite).", "Units": "mm"},
    "context_needed_beyond_max_radius": {"Description": "True when the lesion is detected with full context but not within the largest probed radius."},
    "full_context_mean_probability": {"Description": "Mean predicted probability over the lesion with the whole image kept (context probe reference)."},
    "seconds": {"Description": "Wall-clock time of the lesion's explanations and context probe.", "Units": "s"},
    "participant_id": {"Description": "BIDS participant label (sub-<label>)."},
    "session_id": {"Description": "BIDS session label (ses-<label>)."},
    "state": {"Description": "Cohort state of this subject and session.",
              "Levels": {"finished": "computed in the latest run", "skipped": "finished in an earlier run with the same settings and model",
                         "failed": "could not be computed (see error)", "pending": "not computed yet"}},
    "instances": {"Description": "Number of lesion instances (TP + FP + FN, or predicted without ground truth)."},
    "TP": {"Description": "Number of true-positive lesions."},
    "FP": {"Description": "Number of false-positive lesions."},
    "FN": {"Description": "Number of false-negative (missed) lesions."},
    "predicted": {"Description": "Number of predicted lesions without ground truth."},
    "cpu_seconds": {"Description": "CPU time of the process that computed this subject.", "Units": "s"},
    "error": {"Description": "Why this subject failed (empty otherwise)."},
}

_SEQ = r"(?P<key>[a-z0-9_]+?)"
_STATISTICS = {
    "inside_sum": ("Sum of {key} attribution over the lesion's voxels.", None),
    "inside_mean": ("Mean {key} attribution over the lesion's voxels.", None),
    "inside_peak": ("Largest {key} attribution over the lesion's voxels.", None),
    "ring_sum": ("Sum of {key} attribution over the perilesional ring.", None),
    "ring_mean": ("Mean {key} attribution over the perilesional ring.", None),
    "ring_trough": ("Smallest {key} attribution over the perilesional ring.", None),
    "outside_sum": ("Sum of {key} attribution outside the lesion and its ring (within the crop).", None),
    "flair_share": ("Share of the total absolute {key} attribution that falls on the FLAIR channel.", None),
    "infidelity_normalized": ("Infidelity of the {key} explanation (Yeh et al. 2019), with the optimal scaling of the map.", None),
    "infidelity_relative": ("Infidelity of the {key} explanation divided by the mean squared output change of the perturbations.", None),
    "infidelity": ("Infidelity of the {key} explanation (Yeh et al. 2019): mean squared error between the map's predicted and the model's actual output change under perturbations; lower is better.", None),
    "max_sensitivity": ("Max-sensitivity of the {key} explanation (Yeh et al. 2019): largest relative map change under small input perturbations; lower is better.", None),
    "ap_top_k": ("Activation precision of the {key} map at its top-k percent voxels: share of them inside the lesion mask.", None),
    "ap": ("Activation precision of the {key} map: share of the positive attribution inside the lesion mask.", None),
    "deletion_auc": ("Area under the deletion curve of the {key} ranking (normalised score as the most attributed features are removed); lower is better.", None),
    "insertion_auc": ("Area under the insertion curve of the {key} ranking (normalised score as the most attributed features are restored); higher is better.", None),
    "randomisation_spearman_abs_brain": ("Spearman correlation of absolute {key} maps from the trained and a weight-randomised model, over brain voxels; lower is better.", None),
    "randomisation_spearman_abs": ("Spearman correlation of absolute {key} maps from the trained and a weight-randomised model; lower is better.", None),
    "randomisation_spearman_brain": ("Spearman correlation of {key} maps from the trained and a weight-randomised model, over brain voxels; lower is better.", None),
    "randomisation_spearman": ("Spearman correlation of {key} maps from the trained and a weight-randomised model (Adebayo et al. 2018); lower is better.", None),
    "forward_passes": ("Network forward passes spent on the {key} metric for this lesion.", None),
    "backward_passes": ("Vector-Jacobian products (backward passes) spent on the {key} metric for this lesion.", None),
    "seconds": ("Wall-clock time spent on the {key} metric for this lesion.", "s"),
}
# longest statistic names first so that 'infidelity_relative' is not read as '<key>_infidelity' + '_relative'
_PATTERNS = [(re.compile(rf"^{_SEQ}_{re.escape(stat)}$"), text, unit)
             for stat, (text, unit) in sorted(_STATISTICS.items(), key=lambda kv: -len(kv[0]))]  # fmt: skip


def describe_column(name: str) -> dict[str, Any]:
    """Return the BIDS sidecar entry describing column ``name`` (Description, and Units/Levels where they apply)."""
    if name in _FIXED:
        return dict(_FIXED[name])
    for pattern, text, unit in _PATTERNS:
        m = pattern.match(name)
        if m:
            key = m.group("key")
            what = "random-ranking (control)" if key == "random" else f"'{key}'"
            entry: dict[str, Any] = {"Description": text.format(key=what)}
            if unit:
                entry["Units"] = unit
            return entry
    return {"Description": f"{UNKNOWN}: '{name}'."}


def describe_columns(columns: list[str]) -> dict[str, dict[str, Any]]:
    """Return {column: description} for every column of a TSV table."""
    return {c: describe_column(c) for c in columns}
