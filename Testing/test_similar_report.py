"""The report's "Similar lesions" section: shown when `lesionxai similar` wrote into the run folder, refused
(with a note) when that file belongs to another segmentation, absent otherwise."""

from __future__ import annotations

import json

from LesionXAILib.cli.main import main

from phantom_fixtures import small_phantom


def test_report_shows_the_similar_lesions_of_its_own_segmentation(tmp_path):
    subject = tmp_path / "sub"
    small_phantom(seed=6).write(subject)
    inputs = ["--flair", str(subject / "flair.nii.gz"), "--t1", str(subject / "t1.nii.gz"), "--gt", str(subject / "lesions.nii.gz")]
    run = tmp_path / "run"
    assert main(["-q", "segment", *inputs, "--out", str(run)]) == 0
    assert main(["-q", "report", "--run", str(run), "--export", "none"]) == 0
    assert 'id="similar-lesions"' not in (run / "report.html").read_text()

    lib = tmp_path / "lib"
    assert main(["-q", "library", "build", *inputs, "--subject", "sub6", "--out", str(lib)]) == 0
    assert main(["-q", "similar", "--library", str(lib), *inputs, "--out", str(run), "--k", "2"]) == 0
    assert main(["-q", "report", "--run", str(run), "--export", "none"]) == 0
    page = (run / "report.html").read_text()
    doc = json.loads((run / "similar_lesions.json").read_text())
    section = page[page.index('id="similar-lesions"') : page.index('id="lesions"')]
    assert 'id="similar-lesions-plot"' in section and "data:image/png;base64," in section
    assert section.count("<tr>") == 1 + len(doc["lesions"])  # header + one row per lesion
    assert f"sub6#{doc['lesions'][0]['neighbours'][0]['id']}" in section

    doc["segmentation_id"] = "0" * 16  # as if computed on another segmentation
    (run / "similar_lesions.json").write_text(json.dumps(doc))
    assert main(["-q", "report", "--run", str(run), "--export", "none"]) == 0
    page = (run / "report.html").read_text()
    section = page[page.index('id="similar-lesions"') : page.index('id="lesions"')]
    assert "another segmentation" in section and "similar-table" not in section
