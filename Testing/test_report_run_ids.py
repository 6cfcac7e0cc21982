"""A report never mixes runs: every JSON carries run and segmentation ids, a re-run clears the summaries it
rewrites, and a folder holding results of two segmentations is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from explain_fixtures import saved_subject
from LesionXAILib.cli.main import main
from LesionXAILib.errors import InputImageError
from LesionXAILib.report.data import load_run
from LesionXAILib.run_identity import segmentation_id


@pytest.fixture(scope="module")
def explained(tmp_path_factory):
    """A subject explained and probed into one folder (the documented explain + probe + report workflow)."""
    root = tmp_path_factory.mktemp("run_ids")
    d, model_path, threshold = saved_subject(root, (24, 28, 24))
    common = ["--flair", str(d / "flair.nii.gz"), "--t1", str(d / "t1.nii.gz"), "--model", str(model_path),
              "--min-size", "1"]  # fmt: skip
    run = root / "run"
    assert main(["-q", "explain", *common, "--out", str(run), "--threshold", f"{threshold}", "--methods", "gradient",
                 "--margin-mm", "4"]) == 0  # fmt: skip
    assert main(["-q", "probe", *common, "--out", str(run), "--threshold", f"{threshold}", "--max-radius", "2"]) == 0
    return run, common, threshold


def _json(path):
    return json.loads(path.read_text())


def test_every_json_carries_the_ids_of_one_segmentation(explained):
    run, _, _ = explained
    seg, expl, probe = (_json(run / n) for n in ("instances.json", "explanations.json", "context_probe.json"))
    import SimpleITK as sitk

    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(run / "instances.nii.gz")))
    assert seg["segmentation_id"] == segmentation_id(labels)  # the id is the hash of the map written beside it
    assert expl["segmentation_id"] == seg["segmentation_id"] == probe["segmentation_id"]
    for doc in (seg, expl, probe):
        assert doc["run_id"]
    data = load_run(run)
    assert data.explanations is not None and data.probe is not None
    assert not [n for n in data.notes if "segmentation id" in n]


def test_segmentation_id_depends_on_the_labels_only():
    a = np.zeros((3, 4, 5), np.int32)
    a[1, 2, 3] = 1
    assert segmentation_id(a) == segmentation_id(a.astype(np.int16))
    b = a.copy()
    b[0, 0, 0] = 2
    assert segmentation_id(a) != segmentation_id(b)
    assert segmentation_id(a) != segmentation_id(a.reshape(4, 3, 5))


def test_report_refuses_results_of_another_segmentation(explained, tmp_path, capsys):
    run, common, threshold = explained
    mixed = tmp_path / "mixed"
    shutil.copytree(run, mixed)
    # a later `segment` with another threshold rewrites the segmentation; explanations.json stays behind
    assert main(["-q", "segment", *common, "--out", str(mixed), "--threshold", f"{threshold * 0.9}"]) == 0
    assert _json(mixed / "instances.json")["segmentation_id"] != _json(mixed / "explanations.json")["segmentation_id"]
    assert main(["-q", "report", "--run", str(mixed), "--export", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "mixes runs" in err and "explanations.json" in err and "\n" not in err
    assert not (mixed / "report.html").exists()


def test_interrupted_re_run_clears_the_summary_it_rewrites(explained, tmp_path, monkeypatch, capsys):
    run, common, threshold = explained
    again = tmp_path / "again"
    shutil.copytree(run, again)
    old_maps = sorted(p.relative_to(again) for p in again.glob("instance_*/gradient_*.nii.gz"))
    assert old_maps

    from LesionXAILib.explain import api

    real = api.iter_explanations

    def interrupted(*args, **kwargs):
        for n, explanation in enumerate(real(*args, **kwargs)):
            yield explanation
            raise KeyboardInterrupt  # Ctrl-C after the first lesion's maps were written

    monkeypatch.setattr(api, "iter_explanations", interrupted)
    code = main(["-q", "explain", *common, "--out", str(again), "--threshold", f"{threshold * 0.9}",
                 "--methods", "smoothgrad", "--samples", "2", "--margin-mm", "4"])  # fmt: skip
    assert code == 130
    assert not (again / "explanations.json").exists() and not (again / "explanations.csv").exists()
    assert (again / "context_probe.json").exists()  # another command's results are not this run's to clear
    # the report sees no explanations (not the old ones beside the new segmentation) and refuses the old probe
    with pytest.raises(InputImageError, match="mixes runs: context_probe.json"):
        load_run(again)
    (again / "context_probe.json").unlink()
    data = load_run(again)
    assert data.explanations is None and all(not lesion.maps for lesion in data.lesions)
    assert all(lesion.curve is None for lesion in data.lesions)  # curve files without their summary are ignored


def test_legacy_files_without_ids_are_noted_not_refused(explained, tmp_path):
    run, _, _ = explained
    old = tmp_path / "old"
    shutil.copytree(run, old)
    doc = _json(old / "explanations.json")
    del doc["segmentation_id"], doc["run_id"]
    (old / "explanations.json").write_text(json.dumps(doc))
    data = load_run(old)
    assert data.explanations is not None
    assert any("explanations.json" in n and "segmentation id" in n for n in data.notes)
