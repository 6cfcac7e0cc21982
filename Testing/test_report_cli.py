"""``lesionxai report --run`` on the outputs of ``segment``, ``explain`` and ``probe`` (hand-built TorchScript detector)."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from probes_fixtures import cube_mask, write_detector_model, write_subject
from test_report import parse

from LesionXAILib.cli.main import main

# the hand-built detector travels as TorchScript, which torch flags as deprecated
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    d = tmp_path_factory.mktemp("report_cli")
    inputs = d / "in"
    inputs.mkdir()
    model, config = write_detector_model(inputs, h=1)
    flair, t1, mask = write_subject(inputs, spacing=(1.0, 1.0, 1.5))
    gt = mask | cube_mask(mask.shape, (12, 8, 20), 1)  # a third, invisible lesion: a false negative
    reference = sitk.ReadImage(str(flair))
    image = sitk.GetImageFromArray(gt.astype(np.uint8))
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(inputs / "gt.nii.gz"))
    common = ["--flair", str(flair), "--t1", str(t1), "--gt", str(inputs / "gt.nii.gz"), "--model", str(model),
              "--config", str(config), "--trust-model", "--min-size", "1"]  # fmt: skip
    run = d / "run"
    assert main(["-q", "explain", *common, "--out", str(run), "--methods", "smoothgrad", "--samples", "2", "--margin-mm", "6"]) == 0
    assert main(["-q", "probe", *common, "--out", str(run), "--max-radius", "5"]) == 0
    seg = d / "seg"
    assert main(["-q", "segment", *common, "--out", str(seg)]) == 0
    return {"dir": d, "run": run, "seg": seg, "flair": flair, "t1": t1}


def test_report_from_segment_explain_probe_outputs(subject):
    run = subject["run"]
    assert main(["-q", "report", "--run", str(run), "--export", "none"]) == 0
    p = parse(run / "report.html")
    statuses = [r["data-status"] for r in p.table_rows]
    assert statuses == ["TP", "TP", "FN"]
    assert [int(s["data-lesion-id"]) for s in p.panels] == [1, 2, 3]
    assert p.notes == []
    text = (run / "report.html").read_text()
    assert "no CAM" in text  # the explain run had SmoothGrad only: the panels say so instead of failing
    with open(run / "context_probe.csv") as fh:
        needed = {int(r["id"]): r["context_needed_mm"] for r in csv.DictReader(fh)}
    for i, value in needed.items():
        assert f'<a href="#lesion-{i}">{i}</a>' in text
        if value:
            assert f"<td>{float(value):g}</td>" in text
    assert not (run / "figures").exists()


def test_report_from_a_segmentation_alone_names_the_missing_parts(subject):
    seg = subject["seg"]
    assert main(["-q", "report", "--run", str(seg), "--export", "none"]) == 0
    p = parse(seg / "report.html")
    assert len(p.panels) == 3
    notes = " ".join(p.notes)
    assert "no explanations" in notes and "lesionxai explain" in notes
    assert "no context probe" in notes and "lesionxai probe" in notes


def test_input_overrides_and_errors(subject, tmp_path, capsys):
    moved = tmp_path / "moved"
    moved.mkdir()
    flair = shutil.copy(subject["flair"], moved / "f.nii.gz")
    t1 = shutil.copy(subject["t1"], moved / "t.nii.gz")
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["-q", "report", "--run", str(subject["seg"]), "--flair", str(flair), "--t1", str(t1), "--out", str(out),
                 "--export", "none", "--title", "Override test"]) == 0  # fmt: skip
    text = out.read_text()
    assert str(flair) in text and "<title>Override test</title>" in text
    assert main(["-q", "report", "--run", str(subject["seg"]), "--flair", str(moved / "nope.nii.gz")]) == 2
    assert "nope.nii.gz': file not found" in capsys.readouterr().err
    assert main(["-q", "report", "--run", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["-q", "report", "--run", str(moved)]) == 2
    assert "not a LesionXAI run directory" in capsys.readouterr().err
