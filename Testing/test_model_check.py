"""``lesionxai check-model`` and what ``--model`` may point at (format detection, one-line errors)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from engine_fixtures import tiny_model
from LesionXAILib.cli.main import main
from LesionXAILib.errors import ModelLoadError
from LesionXAILib.model_loading import load_model, save_checkpoint
from LesionXAILib.models import formats
from LesionXAILib.models.formats import ModelFormat, detect_format
from probes_fixtures import detector_config, write_subject

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # TorchScript is flagged as deprecated


class _Shifted(torch.nn.Module):
    """logit = normalised FLAIR - 2: lesions (z > 2) pass 0.5, and every probability is known in closed form."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0:1] - 2.0


def _sigmoid(v: float) -> float:
    return float(1.0 / (1.0 + np.exp(-v)))


def test_check_model_reports_contract_range_and_lesions(tmp_path, capsys):
    flair, t1, mask = write_subject(tmp_path)  # lesions: a 3x3x3 cube at k,j,i (12,14,10) and one voxel at (12,14,28)
    model_path = tmp_path / "shifted.pt"
    torch.jit.script(_Shifted()).save(str(model_path))
    config = tmp_path / "shifted.json"
    config.write_text(json.dumps(detector_config().to_dict()))
    out_json = tmp_path / "check.json"
    code = main(["-q", "check-model", "--model", str(model_path), "--config", str(config), "--trust-model",
                 "--flair", str(flair), "--t1", str(t1), "--json", str(out_json)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0
    for expected in ("channels: FLAIR, MPRAGE", "k, j, i (SimpleITK order)", "sigmoid head", "2 components, 28 voxels"):
        assert expected in text, expected
    # expected probabilities from the z-score of the FLAIR over its non-zero voxels, computed here
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(flair))).astype(np.float64)
    values = raw[raw != 0]
    z_lesion = (400.0 - values.mean()) / values.std()
    z_brain = (100.0 - values.mean()) / values.std()
    doc = json.loads(out_json.read_text())
    assert doc["probability_max"] == pytest.approx(_sigmoid(z_lesion - 2.0), abs=1e-5)
    assert doc["probability_min"] == pytest.approx(min(_sigmoid(z_brain - 2.0), _sigmoid(-2.0)), abs=1e-5)
    largest = doc["components"][0]
    assert largest["voxels"] == 27 and doc["components"][1]["voxels"] == 1
    # the cube's centre in RAS mm, from SimpleITK's own index-to-physical transform (LPS) flipped to RAS
    x, y, z = sitk.ReadImage(str(flair)).TransformContinuousIndexToPhysicalPoint((10.0, 14.0, 12.0))
    assert largest["centre_ras"] == pytest.approx([-x, -y, z], abs=1e-6)
    assert "centre RAS (%.1f, %.1f, %.1f) mm" % (-x, -y, z) in text


def test_check_model_names_the_anchor_order(tmp_path, capsys):
    flair, t1, _ = write_subject(tmp_path, shape=(16, 16, 32))
    weights = tmp_path / "w.pt"
    from LesionXAILib.lesion_model import build_network
    from LesionXAILib.model_config import PRESETS

    torch.manual_seed(0)
    torch.save(torch.nn.DataParallel(build_network(PRESETS["ies-unet"])).state_dict(), weights)
    assert main(["-q", "check-model", "--config", "ies-unet", "--weights", str(weights), "--flair", str(flair), "--t1", str(t1)]) == 0
    text = capsys.readouterr().out
    assert "i, j, k (nibabel / MONAI LoadImage order)" in text and "canonical i, j, k" in text and "threshold 0.3" in text


def test_model_paths_are_detected_by_content_and_unknown_ones_name_the_formats(tmp_path):
    ckpt = save_checkpoint(tiny_model(), tmp_path / "renamed.bin")
    assert detect_format(ckpt).name == "checkpoint" and load_model(ckpt).config.name == "tiny"
    scripted = tmp_path / "net.pth"
    torch.jit.script(_Shifted()).save(str(scripted))
    assert detect_format(scripted).name == "torchscript"
    nnunet = tmp_path / "Dataset001_MS" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (nnunet / "fold_0").mkdir(parents=True)
    (nnunet / "plans.json").write_text("{}")
    (nnunet / "dataset.json").write_text("{}")
    assert detect_format(nnunet).name == "nnunet"
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text("{}")
    assert detect_format(bundle).name == "monai-bundle"
    for junk in (tmp_path / "notes.txt", tmp_path / "empty_dir"):
        if junk.suffix:
            junk.write_text("hello")
        else:
            junk.mkdir()
        with pytest.raises(ModelLoadError) as info:
            load_model(junk)
        msg = str(info.value)
        assert "\n" not in msg and junk.name in msg
        for name in ("LesionXAI checkpoint", "state dict", "TorchScript", "nnU-Net", "MONAI bundle"):
            assert name in msg


def test_a_recognised_format_without_its_loader_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    fmt = ModelFormat("future", "a future model folder", lambda p: p == folder, "LesionXAILib.models.no_such_loader:load")
    monkeypatch.setattr(formats, "FORMATS", [fmt, *formats.FORMATS])
    with pytest.raises(ModelLoadError, match="is a future model folder, which this version of LesionXAI cannot load yet"):
        load_model(folder)
