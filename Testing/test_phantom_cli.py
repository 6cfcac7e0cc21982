"""``lesionxai phantom`` writes the phantom files with the asked lesion count and spacing."""

from __future__ import annotations

import json

import SimpleITK as sitk

from LesionXAILib.cli.main import main


def test_phantom_command_writes_flair_t1_lesions_and_json(tmp_path):
    out = tmp_path / "ph"
    rc = main(["-q", "phantom", "--seed", "4", "--out", str(out), "--lesions", "5", "--fov", "64", "64", "64",
               "--spacing", "1", "1", "2"])  # fmt: skip
    assert rc == 0
    for name in ("flair.nii.gz", "t1.nii.gz", "lesions.nii.gz", "lesions.json"):
        assert (out / name).is_file(), name
    flair = sitk.ReadImage(str(out / "flair.nii.gz"))
    assert flair.GetSpacing() == (1.0, 1.0, 2.0) and flair.GetSize() == (64, 64, 32)
    info = json.loads((out / "lesions.json").read_text())
    assert info["seed"] == 4 and len(info["lesions"]) == 5


def test_phantom_command_reports_bad_settings_in_one_line(tmp_path, capsys):
    rc = main(["phantom", "--seed", "4", "--out", str(tmp_path / "x"), "--lesions", "999"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_lesions" in err[0]
