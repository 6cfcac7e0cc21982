"""Folder models (nnU-Net v2 folder, MONAI bundle) in every front end: `check-model`, the Slicer module's logic, `lesionxai view`.

Each front end is run on a tiny folder model (Testing/nnunet_fixtures.py, the bundle test's builder)
and its segmentation is compared with `segment()` of the same model on the same files: the lesions
must appear on the FLAIR's grid (same shape, spacing, origin, direction) where segment() puts them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LesionXAILib.cli.main import main
from LesionXAILib.image_io import load_pair
from LesionXAILib.model_loading import load_model
from LesionXAILib.segmentation import segment

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", params=["nnunet", "bundle"])
def folder_case(request, tmp_path_factory):
    """(kind, model folder, FLAIR path, T1 path, segment() probability) for each folder format."""
    if request.param == "nnunet":
        pytest.importorskip("nnunetv2")
        from nnunet_fixtures import tiny_nnunet_case

        folder, flair, t1, _ = tiny_nnunet_case()
    else:
        from phantom_fixtures import small_phantom
        from test_model_bundle import SPACING, inference_config, write_bundle, write_phantom_pair

        root = tmp_path_factory.mktemp("bundle_frontends")
        flair, t1 = write_phantom_pair(root, small_phantom(spacing=(2.0, 2.0, 2.0)), SPACING)
        folder = write_bundle(root, inference_config())
    probability = segment(load_pair(flair, t1), load_model(folder)).probability
    return request.param, folder, flair, t1, probability


def _same_grid(array: np.ndarray, geometry, flair) -> None:
    image = sitk.ReadImage(str(flair))
    assert array.shape == sitk.GetArrayFromImage(image).shape
    assert tuple(geometry.spacing) == pytest.approx(image.GetSpacing())
    assert tuple(geometry.origin) == pytest.approx(image.GetOrigin())
    assert tuple(np.ravel(geometry.direction)) == pytest.approx(image.GetDirection())


def test_check_model_reports_the_folder_models_contract_and_lesions(folder_case, tmp_path, capsys):
    kind, folder, flair, t1, probability = folder_case
    out = tmp_path / "check.json"
    assert main(["-q", "check-model", "--model", str(folder), "--flair", str(flair), "--t1", str(t1), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert str(folder) in text
    if kind == "nnunet":  # nnU-Net crops and resamples in its own space: the whole volume is checked, like segment()
        assert "format pipeline: crop to the non-zero box" in text and "the whole volume" in text
        assert doc["probability_max"] == pytest.approx(float(probability.max()), abs=1e-5)
        assert doc["voxels_above"] == int((probability >= 0.5).sum()) > 0
    else:
        assert "i, j, k (nibabel / MONAI LoadImage order)" in text and "orientation: RAS" in text
        assert 0.0 <= doc["probability_min"] <= doc["probability_max"] <= float(probability.max()) + 1e-5


def test_slicer_module_logic_segments_with_a_folder_model(folder_case):
    slicer = pytest.importorskip("slicer")
    from LesionXAILib.mrml.volumes import array_from_volume_node, load_volume_node
    from LesionXAILib.session.settings import SessionSettings
    from LesionXAILib.slicer_app.controller import ModuleController

    kind, folder, flair, t1, probability = folder_case
    scene = slicer.vtkMRMLScene()
    flair_node = load_volume_node(scene, flair, "FLAIR")
    t1_node = load_volume_node(scene, t1, "MPRAGE")
    logic = ModuleController(scene)
    plan = logic.prepare_run(flair_node, t1_node, None, str(folder), SessionSettings())
    result = plan.compute()
    writer = logic.finish_run(plan, result)
    np.testing.assert_allclose(result.probability, probability, atol=1e-5)
    labels, geometry = array_from_volume_node(writer.labels_node)
    _same_grid(labels, geometry, flair)
    expected = len(result.instances.ids)
    assert expected > 0 and len(np.unique(labels[labels > 0])) == expected
    assert ((labels > 0) <= (probability >= result.threshold)).all()  # lesions where segment() finds them


def test_view_command_takes_a_folder_model(folder_case, monkeypatch):
    pytest.importorskip("slicer")
    from LesionXAILib.mrml.volumes import array_from_volume_node
    from LesionXAILib.viewer import server

    kind, folder, flair, t1, probability = folder_case
    served = []
    monkeypatch.setattr(server, "serve", lambda viewer, host, port: served.append(viewer))  # stop before listening
    assert main(["-q", "view", "--flair", str(flair), "--t1", str(t1), "--model", str(folder), "--precompute", "0", "--port", "0"]) == 0
    viewer = served[0]
    labels, geometry = array_from_volume_node(viewer.writer.labels_node)
    _same_grid(labels, geometry, flair)
    assert (labels > 0).sum() > 0
    assert ((labels > 0) <= (probability >= viewer.session.result.threshold)).all()


def test_nnunet_format_options_on_the_command_line(tmp_path, capsys):
    pytest.importorskip("nnunetv2")
    from nnunet_fixtures import tiny_nnunet_case

    folder, flair, t1, _ = tiny_nnunet_case()
    base = ["--flair", str(flair), "--t1", str(t1), "--model", str(folder)]
    assert main(["-q", "check-model", *base, "--lesion-label", "nope"]) != 0
    err = capsys.readouterr().err
    assert "no label 'nope'" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "seg"
    assert main(["-q", "segment", *base, "--out", str(out), "--folds", "1", "--mirror", "--lesion-label", "lesion"]) == 0
    nnunet = json.loads((out / "instances.json").read_text())["model"]["config"]["extra"]["nnunet"]
    assert nnunet["folds"] == ["1"] and nnunet["mirror_axes"] == [0, 1, 2]
