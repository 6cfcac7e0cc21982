"""``lesionxai explain`` end to end on a small synthetic subject with a tiny saved network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from explain_fixtures import synthetic_image, tiny_unet, unit_geometry
from LesionXAILib.cli.main import main
from LesionXAILib.geometry import array_to_image
from LesionXAILib.image_io import load_pair
from LesionXAILib.model_loading import load_model, save_checkpoint
from LesionXAILib.segmentation import segment

SHAPE = (24, 28, 24)


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    d = tmp_path_factory.mktemp("explain_cli")
    geo = unit_geometry(SHAPE, spacing=(1.0, 1.0, 1.2))
    img = synthetic_image(SHAPE, seed=3, dtype=np.float32) + 5.0
    img[:, :2] = 0
    for name, arr in (("flair", img[0]), ("t1", img[1])):
        sitk.WriteImage(array_to_image(arr, geo), str(d / f"{name}.nii.gz"))
    model_path = save_checkpoint(tiny_unet(seed=4, dtype=torch.float32), d / "tiny.pt")
    # a threshold at which this random network yields a few small components
    result = segment(load_pair(d / "flair.nii.gz", d / "t1.nii.gz"), load_model(model_path))
    threshold = float(np.quantile(result.probability, 0.995))
    return d, model_path, threshold


def test_explain_cli_writes_maps_segmentation_and_statistics(subject, tmp_path):
    d, model_path, threshold = subject
    out = tmp_path / "out"
    code = main([
        "-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(out),
        "--model", str(model_path), "--threshold", f"{threshold}", "--min-size", "1",
        "--methods", "smoothgrad,gradcampp", "--samples", "2", "--margin-mm", "6", "--seed", "3", "--instances", "2,1",
    ])  # fmt: skip
    assert code == 0
    doc = json.loads((out / "explanations.json").read_text())
    seg = json.loads((out / "instances.json").read_text())
    assert len(seg["instances"]) >= 2
    ids = [1, 2]
    assert [r["instance_id"] for r in doc["instances"]] == ids
    assert doc["settings"]["samples"] == 2 and doc["settings"]["seed"] == 3
    for r in doc["instances"]:
        folder = out / f"instance_{r['instance_id']}"
        for key in ("smoothgrad_flair", "smoothgrad_mprage", "gradcampp"):
            img = sitk.ReadImage(str(folder / f"{key}.nii.gz"))
            assert img.GetSpacing() == pytest.approx((1.0, 1.0, 1.2))
            assert sitk.GetArrayFromImage(img).shape == SHAPE
        assert {"inside_sum", "inside_peak", "ring_sum", "ring_peak", "outside_sum"} <= set(r["statistics"]["smoothgrad_flair"])
        assert 0 <= r["statistics"]["flair_share"]["smoothgrad"] <= 1
    assert (out / "instances.nii.gz").exists() and (out / "probability.nii.gz").exists()
    assert (out / "explanations.csv").read_text().count("\n") == 3 * len(ids) + 1


def test_explain_cli_rejects_unknown_instances_and_methods(subject, tmp_path, capsys):
    d, model_path, threshold = subject
    base = ["-q", "explain", "--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--out", str(tmp_path / "o"),
            "--model", str(model_path), "--threshold", f"{threshold}"]  # fmt: skip
    assert main(base + ["--instances", "999"]) == 2
    assert "lesion instance 999 does not exist" in capsys.readouterr().err
    assert main(base + ["--instances", "3,x"]) == 2
    assert "'x' is not an instance id" in capsys.readouterr().err
    assert main(base + ["--methods", "smoothgrad,shap"]) == 2
    assert "unknown explanation method" in capsys.readouterr().err
