"""Folder models (nnU-Net v2, MONAI bundle) in `lesionxai cohort`: end to end, resume, and one content identity per source.

The identity (LesionXAILib.models.identity.source_hash) is checked against hashes computed here with
hashlib over the files a folder model is defined by; the cohort's resume against its DONE marker.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LesionXAILib.cli.main import main
from LesionXAILib.cohort.settings import ModelSpec
from LesionXAILib.cohort.store import DONE_MARKER
from LesionXAILib.models.identity import source_hash

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _run_cohort(tmp_path, model_args, flair, t1, name):
    manifest = tmp_path / f"{name}.csv"
    manifest.write_text(f"subject,flair,t1,gt\ns1,{flair},{t1},\n")
    out = tmp_path / f"out_{name}"
    args = ["-q", "cohort", "--input", str(manifest), "--out", str(out), *model_args, "--methods", "gradient", "--no-context",
            "--metrics", "none", "--workers", "0", "--no-lesion-files", "--no-gt"]  # fmt: skip
    assert main(args) == 0
    subjects = _rows(out / "subjects.csv")
    assert [s["state"] for s in subjects] == ["finished"], subjects
    marker = out / "subjects" / "s1" / DONE_MARKER
    first = marker.stat().st_mtime_ns
    assert main(args) == 0  # resumed: the finished subject is reused, not recomputed
    assert marker.stat().st_mtime_ns == first
    assert [s["state"] for s in _rows(out / "subjects.csv")] == ["skipped"]  # finished earlier, reused
    return out, subjects[0]


def _hash_files(folder, names):
    h = hashlib.sha256()
    for rel in sorted(names):
        data = (folder / rel).read_bytes()
        h.update(rel.encode())
        h.update(str(len(data)).encode())
        h.update(data)
    return h.hexdigest()


def test_cohort_runs_and_resumes_on_an_nnunet_folder(tmp_path):
    pytest.importorskip("nnunetv2")
    from nnunet_fixtures import tiny_nnunet_case

    folder, flair, t1, _ = tiny_nnunet_case()
    out, row = _run_cohort(tmp_path, ["--model", str(folder), "--folds", "1"], flair, t1, "nnunet")
    assert int(row["instances"]) >= 1
    expected = _hash_files(folder, ["plans.json", "dataset.json", "fold_1/checkpoint_final.pth"])
    recorded = json.loads((out / "cohort.json").read_text())["model"]
    assert recorded["sha256"] == expected and recorded["options"] == {"folds": "1"}
    assert source_hash(folder, {"folds": "1"}) == expected
    assert ModelSpec(str(folder), options={"folds": "1"}).identity()["sha256"] == expected


def test_nnunet_identity_follows_the_selected_checkpoints_not_paths_or_times(tmp_path):
    pytest.importorskip("nnunetv2")
    from nnunet_fixtures import tiny_nnunet_case

    folder, *_ = tiny_nnunet_case()
    copy = tmp_path / "moved" / folder.name
    shutil.copytree(folder, copy)
    both = source_hash(folder)
    assert source_hash(copy) == both  # another place, new modification times: the same model
    assert both == _hash_files(folder, ["plans.json", "dataset.json", "fold_0/checkpoint_final.pth", "fold_1/checkpoint_final.pth"])
    only1 = source_hash(copy, {"folds": "1"})
    ckpt = torch.load(copy / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    first = next(iter(ckpt["network_weights"]))
    ckpt["network_weights"][first] = ckpt["network_weights"][first] + 1.0
    torch.save(ckpt, copy / "fold_0" / "checkpoint_final.pth")
    assert source_hash(copy) != both  # a changed fold checkpoint is another model
    assert source_hash(copy, {"folds": "1"}) == only1  # ... unless that fold is not used
    (copy / "fold_1" / "notes.txt").write_text("not part of the model")
    assert source_hash(copy, {"folds": "1"}) == only1


def test_cohort_runs_and_resumes_on_a_monai_bundle(tmp_path):
    from phantom_fixtures import small_phantom
    from test_model_bundle import DIRECTION, SPACING, inference_config, write_bundle

    from LesionXAILib.geometry import array_to_image

    ph = small_phantom(spacing=(2.0, 2.0, 2.0))
    geometry = dataclasses.replace(ph.geometry, spacing=SPACING, direction=DIRECTION)
    paths = []
    for name, arr in (("flair", ph.flair), ("t1", ph.t1)):
        p = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(array_to_image(arr.astype(np.float32), geometry), str(p))
        paths.append(p)
    bundle = write_bundle(tmp_path, inference_config())
    out, row = _run_cohort(tmp_path, ["--model", str(bundle)], *paths, "bundle")
    expected = _hash_files(bundle, ["configs/inference.json", "configs/metadata.json", "models/model.pt"])
    assert source_hash(bundle) == expected
    assert json.loads((out / "cohort.json").read_text())["model"]["sha256"] == expected  # what the resume check compares
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    config["inferer"]["overlap"] = 0.25
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    assert source_hash(bundle) != expected  # the bundle's config is part of the model
