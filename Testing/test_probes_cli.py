"""The `lesionxai probe` command on a hand-built TorchScript detector (no shipped model needed)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from LesionXAILib.cli.common import parse_instances
from LesionXAILib.cli.main import main
from LesionXAILib.errors import ParameterError
from LesionXAILib.geometry import Geometry
from probes_fixtures import write_detector_model, write_subject

# the hand-built detector travels as TorchScript, which torch now flags as deprecated
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture()
def subject(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    model, config = write_detector_model(inputs, h=2)
    flair, t1, mask = write_subject(inputs, spacing=(1.0, 1.0, 1.5))
    return {"flair": flair, "t1": t1, "model": model, "config": config, "mask": mask, "tmp": tmp_path}


def probe_args(s, out, *extra):
    return ["-q", "probe", "--flair", str(s["flair"]), "--t1", str(s["t1"]), "--out", str(out), "--model", str(s["model"]),
            "--config", str(s["config"]), "--trust-model", "--min-size", "1", *extra]  # fmt: skip


def test_probe_writes_curves_shells_and_summary_on_the_input_grid(subject):
    out = subject["tmp"] / "out"
    before = subject["flair"].read_bytes()
    assert main(probe_args(subject, out, "--max-radius", "8")) == 0
    assert subject["flair"].read_bytes() == before
    ref = Geometry.from_image(sitk.ReadImage(str(subject["flair"])))
    for name in ("instances.nii.gz", "probability.nii.gz", "instances.csv", "instances.json"):
        assert (out / name).exists()
    rows = list(csv.DictReader(open(out / "context_probe.csv")))
    assert [int(r["id"]) for r in rows] == [1, 2]
    # instance 1: 3x3x3 lesion, its centre's cube corner 1 voxel diagonal beyond the lesion: sqrt(1+1+1.5^2) = 2.06 mm
    # instance 2: one voxel, corner at 2 * sqrt(1 + 1 + 2.25) = 4.12 mm (1 x 1 x 1.5 mm voxels)
    assert [r["context_needed_mm"] for r in rows] == ["3.0", "5.0"]
    summary = json.loads((out / "context_probe.json").read_text())
    assert summary["distribution"]["context_needed_mm"] == [3.0, 5.0]
    for i in (1, 2):
        d = out / f"instance_{i}"
        assert sorted(p.name for p in d.iterdir()) == [
            "context_curve.csv", "context_curve.json", "context_curve.png", "context_shells.nii.gz"
        ]  # fmt: skip
        shells_image = sitk.ReadImage(str(d / "context_shells.nii.gz"))
        assert Geometry.from_image(shells_image).almost_equal(ref)
        shells = sitk.GetArrayFromImage(shells_image)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "instances.nii.gz")))
        assert np.all(shells[labels == i] == 1) and shells.max() == 9  # radii 0..8 -> labels 1..9
    assert not list(out.rglob("*.partial*"))


def test_probe_selected_instances_and_explicit_radii(subject):
    out = subject["tmp"] / "sel"
    assert main(probe_args(subject, out, "--instances", "2", "--radii", "6", "0", "3", "--fill", "mean")) == 0
    rows = list(csv.DictReader(open(out / "context_probe.csv")))
    assert [r["id"] for r in rows] == ["2"]
    curve = json.loads((out / "instance_2" / "context_curve.json").read_text())
    assert curve["radii_mm"] == [0.0, 3.0, 6.0] and curve["fill"] == "mean"
    assert not (out / "instance_1").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--instances", "2,9"), "instance 9 does not exist"),
        (("--instances", "x"), "'x' is not an instance id"),
        (("--radii", "-1", "2"), ">= 0 mm"),
        (("--max-radius", "-3"), "maximum radius"),
        (("--fill", "zero", "--batch-size", "0"), "batch size"),
    ],
)
def test_probe_bad_input_is_one_clear_line(subject, capsys, extra, message):
    code = main(probe_args(subject, subject["tmp"] / "bad", *extra))
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err and "Traceback" not in err


def test_parse_instances():
    assert parse_instances("all") is None and parse_instances(" ALL ") is None
    assert parse_instances("3,7,3") == [3, 7]
    with pytest.raises(ParameterError):
        parse_instances("0")
    with pytest.raises(ParameterError):
        parse_instances(",")


def test_probe_without_lesions_writes_an_empty_summary(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    model, config = write_detector_model(inputs, h=1)
    flair, t1, _ = write_subject(inputs, lesions=())
    s = {"flair": flair, "t1": t1, "model": model, "config": config}
    out = tmp_path / "out"
    assert main(probe_args(s, out)) == 0
    assert list(csv.DictReader(open(out / "context_probe.csv"))) == []
    summary = json.loads((out / "context_probe.json").read_text())
    assert summary["instances"] == [] and summary["distribution"]["context_needed_mm"] == []


def test_probe_with_the_anchor_element_counts_18_connected_steps(subject):
    out = subject["tmp"] / "anchor"
    assert main(probe_args(subject, out, "--probe-element", "anchor", "--max-radius", "8", "--connectivity", "18")) == 0
    curve = json.loads((out / "instance_1" / "context_curve.json").read_text())
    assert curve["radii_mm"] == [float(n) for n in range(1, 9)]  # steps 1 ... 8 (the anchor's start at 1)
    settings = curve["settings"]
    assert (settings["element"], settings["detection"], settings["connectivity"]) == ("anchor", "any", 18)
    rows = list(csv.DictReader(open(out / "context_probe.csv")))
    assert [int(r["id"]) for r in rows] == [1, 2]
    # with the anchor element, "context needed" is a whole number of dilation steps
    assert all(r["context_needed_mm"] == "" or float(r["context_needed_mm"]).is_integer() for r in rows)
