"""``lesionxai cohort --library LIB`` writes the same lesion library as ``lesionxai library build --cohort OUT``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from LesionXAILib.cli.main import main
from LesionXAILib.library.store import LesionLibrary

from phantom_fixtures import small_phantom

FAST = ["--methods", "none", "--metrics", "none", "--no-context", "--no-lesion-files", "--workers", "0"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cohort-library")
    for seed in (5, 6):
        small_phantom(seed=seed).write(root / "in" / f"sub{seed}")
    code = main(["-q", "cohort", "--input", str(root / "in"), "--out", str(root / "out"), "--library", str(root / "lib"), *FAST])
    return root, code


def _sorted(table):
    order = np.lexsort((table.id, table.subject.astype(str)))
    return table.take(order)


def test_cohort_library_equals_library_build_from_the_cohort(cohort):
    root, code = cohort
    assert code == 0
    assert main(["-q", "library", "build", "--cohort", str(root / "out"), "--out", str(root / "lib2")]) == 0
    a, b = LesionLibrary.open(root / "lib"), LesionLibrary.open(root / "lib2")
    assert a.identity == b.identity and a.subjects() == b.subjects() == ["sub5", "sub6"]
    ta, tb = _sorted(a.load()), _sorted(b.load())
    assert len(ta) > 0
    for column in ("subject", "id", "status", "voxels"):
        assert list(getattr(ta, column)) == list(getattr(tb, column)), column
    assert np.array_equal(ta.embedding, tb.embedding)
    assert np.array_equal(ta.crop, tb.crop) and np.array_equal(ta.crop_mask, tb.crop_mask)
    assert np.allclose(ta.volume_mm3, tb.volume_mm3) and np.allclose(ta.centroid_ras, tb.centroid_ras)
    # the library's statuses are the cohort's
    import csv

    with open(root / "out" / "instances.csv", newline="") as fh:
        rows = sorted((r["subject"], int(r["id"]), r["status"]) for r in csv.DictReader(fh))
    assert rows == sorted(zip(ta.subject, (int(i) for i in ta.id), ta.status))


def test_a_library_of_another_model_is_refused_before_the_run(cohort, tmp_path, capsys):
    root, _ = cohort
    from LesionXAILib.model_loading import load_model, save_checkpoint

    other = load_model()
    with torch.no_grad():
        next(other.network.parameters()).add_(0.01)
    save_checkpoint(other, tmp_path / "other.pt", {"note": "other weights"})
    out = tmp_path / "out"
    code = main(["-q", "cohort", "--input", str(root / "in"), "--out", str(out), "--library", str(root / "lib"),
                 "--model", str(tmp_path / "other.pt"), *FAST])  # fmt: skip
    assert code == 2
    assert "another model" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was computed
    assert main(["-q", "cohort", "--input", str(root / "in"), "--out", str(out), "--library", str(out / "lib"), *FAST]) == 2
    assert "outside the cohort output" in capsys.readouterr().err
