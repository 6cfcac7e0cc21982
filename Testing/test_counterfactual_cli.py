"""``lesionxai counterfactual`` end to end: files on the FLAIR grid, replayed with SimpleITK, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LesionXAILib.cli.main import main
from test_counterfactual_support import ConstantDetector, SizeDetector, geometry, subject_arrays, write_image, write_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OBLIQUE = tuple(np.array(sitk.VersorTransform((0.2, -0.3, 0.4), 0.35).GetMatrix(), dtype=float).tolist())
FILES = ("counterfactual_flair.nii.gz", "counterfactual_mprage.nii.gz", "displacement.nii.gz", "log_jacobian.nii.gz",
         "intensity_change.nii.gz", "counterfactual.json")  # fmt: skip




def write_subject(directory, radius: float = 3.0):
    flair, t1, blob = subject_arrays(radius=radius)
    grid = geometry(flair.shape, spacing=(1.0, 1.1, 0.9), direction=OBLIQUE)
    return write_image(flair, grid, directory / "flair.nii.gz"), write_image(t1, grid, directory / "t1.nii.gz"), grid


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("cf")
    flair, t1, grid = write_subject(d)
    model, config = write_model(d, SizeDetector(90))
    out = d / "out"
    code = main(["-q", "counterfactual", "--flair", str(flair), "--t1", str(t1), "--out", str(out), "--model", str(model),
                 "--config", str(config), "--trust-model"])  # fmt: skip
    return code, out, flair, grid, (model, config)


def test_writes_one_complete_folder_per_lesion_on_the_flair_grid(run):
    code, out, flair, grid, _ = run
    assert code == 0
    folder = out / "instance_1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    reference = sitk.ReadImage(str(flair))
    for name in FILES[:-1]:
        img = sitk.ReadImage(str(folder / name))
        assert img.GetSize() == reference.GetSize(), name
        assert np.allclose(img.GetOrigin(), reference.GetOrigin(), atol=1e-5), name
        assert np.allclose(img.GetSpacing(), reference.GetSpacing(), atol=1e-6), name
        assert np.allclose(img.GetDirection(), reference.GetDirection(), atol=1e-6), name
    assert sitk.ReadImage(str(folder / "displacement.nii.gz")).GetNumberOfComponentsPerPixel() == 3
    assert sitk.ReadImage(str(folder / "intensity_change.nii.gz")).GetNumberOfComponentsPerPixel() == 2
    row = json.loads((folder / "counterfactual.json").read_text())
    assert row["flipped"] and row["passed"] and row["mode"] == "remove"
    assert row["resegmentation"]["after"]["detected"] is False and row["jacobian"]["positive"] is True
    for key in ("target", "probability", "lesion_volume", "largest_displacement_mm", "change_within_near_share",
                "iterations", "seconds"):  # fmt: skip
        assert key in row
    summary = json.loads((out / "counterfactuals.json").read_text())
    assert [r["folder"] for r in summary["lesions"]] == ["instance_1"]
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]


def test_the_displacement_file_replays_the_warp_in_simpleitk_and_its_jacobian(run):
    code, out, flair, grid, _ = run
    folder = out / "instance_1"
    disp = sitk.ReadImage(str(folder / "displacement.nii.gz"), sitk.sitkVectorFloat64)
    original = sitk.ReadImage(str(flair))
    # ITK's convention: output(p) = input(p + d(p)); the counterfactual is that plus the intensity change
    warped = sitk.GetArrayFromImage(sitk.Resample(original, original, sitk.DisplacementFieldTransform(sitk.Image(disp)), sitk.sitkLinear))
    change = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "intensity_change.nii.gz")))[..., 0]
    cf = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "counterfactual_flair.nii.gz")))
    moved = np.linalg.norm(sitk.GetArrayFromImage(disp), axis=-1) > 0
    assert moved.any()
    inner = (slice(3, -3),) * 3
    assert np.abs(warped + change - cf)[inner].max() < 1e-2 * np.abs(cf).max()
    # the physical Jacobian of p -> p + d(p), by numpy central differences on the index grid mapped to LPS mm
    d = sitk.GetArrayFromImage(disp)  # (k, j, i, 3) LPS mm
    grads = np.stack([np.stack(np.gradient(d[..., a], axis=(2, 1, 0)), -1) for a in range(3)], -2)  # d d_a / d index_(i,j,k)
    to_index = np.linalg.inv(np.asarray(grid.direction).reshape(3, 3) @ np.diag(grid.spacing))
    det = np.linalg.det(np.eye(3) + grads @ to_index)
    log_jac = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "log_jacobian.nii.gz")))
    assert det[inner].min() > 0
    assert np.abs(-np.log(det) - log_jac)[inner].max() < 1e-3  # log volume change = -log det of the pull-back

@pytest.mark.parametrize("case, message", [
    ("no-lesion", "no lesion instance was found"),
    ("unknown-id", "lesion instance 5 does not exist"),
    ("add-without-gt", "--mode add needs missed (FN) lesions"),
])  # fmt: skip
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys, case, message):
    flair, t1, _ = write_subject(tmp_path, radius=0 if case == "no-lesion" else 3.0)
    model, config = write_model(tmp_path, SizeDetector(90))
    out = tmp_path / "out"
    extra = {"unknown-id": ["--instances", "5"], "add-without-gt": ["--mode", "add"]}.get(case, [])
    code = main(["-q", "counterfactual", "--flair", str(flair), "--t1", str(t1), "--out", str(out), "--model", str(model),
                 "--config", str(config), "--trust-model", *extra])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_a_model_that_cannot_be_flipped_fails_clearly_without_a_half_written_folder(tmp_path, capsys):
    flair, t1, grid = write_subject(tmp_path)
    model, config = write_model(tmp_path, ConstantDetector(grid.shape, (15, 16, 17), (22, 23, 24)))
    out = tmp_path / "out"
    code = main(["-q", "counterfactual", "--flair", str(flair), "--t1", str(t1), "--out", str(out), "--model", str(model),
                 "--config", str(config), "--trust-model", "--max-iter", "2"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "instance 1: not dropped within 2 steps" in err[0]
    assert not (out / "instance_1").exists()
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]
    summary = json.loads((out / "counterfactuals.json").read_text())
    assert summary["lesions"][0]["flipped"] is False and summary["lesions"][0]["folder"] is None


def test_the_report_shows_the_counterfactual_panel(run, tmp_path):
    code, out, flair, grid, _ = run
    html = tmp_path / "report.html"
    assert main(["-q", "report", "--run", str(out), "--out", str(html), "--export", "none"]) == 0
    text = html.read_text()
    assert 'id="counterfactuals"' in text and 'id="counterfactual-table"' in text
    assert "1.00 → 0." in text  # the lesion's probability before and after the change
