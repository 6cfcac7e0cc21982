"""The `lesionxai segment` command: outputs, geometry, one-line errors, input protection."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import SimpleITK as sitk

from engine_fixtures import tiny_model, write_pair
from LesionXAILib.cli.main import main
from LesionXAILib.geometry import Geometry
from LesionXAILib.model_loading import save_checkpoint


def test_segment_writes_outputs_on_input_grid(tmp_path, capsys):
    flair, t1, gt = write_pair(tmp_path, spacing=(0.9, 1.0, 2.0))
    model_path = save_checkpoint(tiny_model(threshold=0.5), tmp_path / "m.pt")
    out = tmp_path / "out"
    before = flair.read_bytes()
    code = main(["-q", "segment", "--flair", str(flair), "--t1", str(t1), "--gt", str(gt), "--out", str(out),
                 "--model", str(model_path), "--threshold", "0.5", "--min-size", "2"])
    assert code == 0
    assert flair.read_bytes() == before
    ref = Geometry.from_image(sitk.ReadImage(str(flair)))
    for name in ("probability.nii.gz", "instances.nii.gz"):
        g = Geometry.from_image(sitk.ReadImage(str(out / name)))
        assert g.almost_equal(ref), name
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "instances.nii.gz")))
    summary = json.loads((out / "instances.json").read_text())
    ids = [r["id"] for r in summary["instances"]]
    assert sorted(set(np.unique(labels)) - {0}) == sorted(ids)
    assert summary["metrics"] is not None and summary["geometry"]["spacing"] == list(ref.spacing)
    rows = (out / "instances.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(ids)
    assert rows[0].startswith("id,status,source,voxels,volume_mm3")


def test_segment_errors_are_one_line_with_exit_code(tmp_path, capsys):
    flair, t1, _ = write_pair(tmp_path)
    model_path = save_checkpoint(tiny_model(), tmp_path / "m.pt")
    code = main(["segment", "--flair", str(tmp_path / "nope.nii.gz"), "--t1", str(t1), "--out", str(tmp_path / "o"),
                 "--model", str(model_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "nope.nii.gz" in err and "not found" in err and "Traceback" not in err
    # refuses to write next to its inputs unless asked
    code = main(["segment", "--flair", str(flair), "--t1", str(t1), "--out", str(tmp_path), "--model", str(model_path)])
    assert code == 2 and "holds the input" in capsys.readouterr().err
    # a checkpoint that does not fit the named config
    code = main(["segment", "--flair", str(flair), "--t1", str(t1), "--out", str(tmp_path / "o2"),
                 "--config", "ies-unet", "--weights", str(model_path)])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit" in err


def test_console_script_runs_as_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "LesionXAILib", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "segment" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "LesionXAILib", "segment", "--flair", "a.png", "--t1", "b.png",
                           "--out", str(tmp_path / "x"), "--model", "m.pt"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("lesionxai: error:")
    assert "Traceback" not in proc.stderr
