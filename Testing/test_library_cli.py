"""The library and similar commands end to end: a library from a cohort folder (statuses are the cohort's),
one subject added, `similar` outputs, unknown ids and empty libraries, prototypes; k-means and exact search
against independent references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from LesionXAILib.cli.main import main
from LesionXAILib.library.prototypes import kmeans
from LesionXAILib.library.search import nearest
from LesionXAILib.library.store import LesionLibrary

from phantom_fixtures import small_phantom


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A two-subject cohort computed with the demo model (segmentation only), and its input folder."""
    from LesionXAILib.analysis import AnalysisSettings
    from LesionXAILib.cohort import CohortSettings, ModelSpec, run_cohort

    root = tmp_path_factory.mktemp("libcohort")
    for seed in (5, 6):
        small_phantom(seed=seed).write(root / "in" / f"sub{seed}")
    settings = CohortSettings(analysis=AnalysisSettings(explain=None, context=None), metrics=None, lesion_files=False)
    run_cohort(root / "in", root / "out", settings, ModelSpec(), report=False)
    return root


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_library_from_a_cohort_keeps_its_statuses_and_refuses_another_model(cohort, capsys):
    lib = cohort / "lib"
    assert main(["-q", "library", "build", "--cohort", str(cohort / "out"), "--out", str(lib)]) == 0
    table = LesionLibrary.open(lib).load()
    cohort_rows = _rows(cohort / "out" / "instances.csv")
    assert sorted((r["subject"], int(r["id"]), r["status"]) for r in cohort_rows) == sorted(
        zip(table.subject, (int(i) for i in table.id), table.status)
    )
    # the cohort's lesions belong to its model: another checkpoint is refused before anything is written
    other = cohort / "other.pt"
    from LesionXAILib.model_loading import load_model, save_checkpoint

    save_checkpoint(load_model(), other, {"note": "same weights, another file"})
    assert main(["-q", "library", "build", "--cohort", str(cohort / "out"), "--out", str(cohort / "lib2"), "--model", str(other)]) == 2
    assert "another model" in capsys.readouterr().err
    assert not (cohort / "lib2").exists()


def test_similar_finds_the_subject_itself_and_writes_its_outputs(cohort, tmp_path, capsys):
    lib = tmp_path / "lib"
    sub = cohort / "in" / "sub5"
    inputs = ["--flair", str(sub / "flair.nii.gz"), "--t1", str(sub / "t1.nii.gz"), "--gt", str(sub / "lesions.nii.gz")]
    assert main(["-q", "library", "build", *inputs, "--subject", "sub5", "--out", str(lib)]) == 0
    out = tmp_path / "similar"
    assert main(["-q", "similar", "--library", str(lib), *inputs, "--out", str(out), "--k", "3"]) == 0
    doc = json.loads((out / "similar_lesions.json").read_text())
    assert doc["k"] == 3 and doc["lesions"]
    for lesion in doc["lesions"]:
        top = lesion["neighbours"][0]
        assert (top["subject"], top["id"], top["distance"]) == ("sub5", lesion["id"], 0.0)
        assert [n["rank"] for n in lesion["neighbours"]] == [1, 2, 3]
    rows = _rows(out / "similar_lesions.csv")
    assert len(rows) == 3 * len(doc["lesions"])
    assert (out / "similar_lesions.png").read_bytes()[:4] == b"\x89PNG"
    # unknown id: one clear line naming the valid ids, no output written
    bad = tmp_path / "bad"
    assert main(["-q", "similar", "--library", str(lib), *inputs, "--out", str(bad), "--instances", "99"]) == 2
    assert "valid ids" in capsys.readouterr().err and not bad.exists()
    # an empty library is refused before any image is read... and one holding only the query subject when excluded
    empty = tmp_path / "empty"
    LesionLibrary.create_or_open(empty, LesionLibrary.open(lib).identity)
    assert main(["-q", "similar", "--library", str(empty), *inputs, "--out", str(bad)]) == 2
    assert "holds no lesion" in capsys.readouterr().err
    assert main(["-q", "similar", "--library", str(lib), *inputs, "--out", str(bad), "--exclude-subject", "sub5"]) == 2
    assert "besides subject" in capsys.readouterr().err
    proto = tmp_path / "proto"
    assert main(["-q", "library", "prototypes", "--library", str(lib), "--out", str(proto), "--clusters", "2"]) == 0
    clusters = json.loads((proto / "prototypes.json").read_text())["clusters"]
    assert sum(c["size"] for c in clusters) == len(doc["lesions"])
    assert main(["-q", "library", "prototypes", "--library", str(lib), "--out", str(proto), "--clusters", "0"]) == 2


def test_kmeans_finds_the_partition_scikit_learn_finds():
    sklearn = pytest.importorskip("sklearn.cluster")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 6)) * 5
    x = np.concatenate([c + rng.normal(size=(30, 6)) for c in centres])
    ours = kmeans(x, 4, seed=1).labels
    ref = sklearn.KMeans(4, n_init=10, random_state=0).fit(x).labels_
    # same partition up to the numbering of clusters
    assert len({(a, b) for a, b in zip(ours, ref)}) == 4
    assert np.array_equal(kmeans(x, 4, seed=1).labels, ours)  # seeded: the same every time


def test_exact_search_matches_a_full_sort():
    rng = np.random.default_rng(1)
    lib = rng.normal(size=(500, 16)).astype(np.float32)
    lib /= np.linalg.norm(lib, axis=1, keepdims=True)
    q = lib[:7] + 0.1 * rng.normal(size=(7, 16)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    idx, dist = nearest(q, lib, 6)
    ref = np.argsort(1.0 - q.astype(np.float64) @ lib.T.astype(np.float64), axis=1, kind="stable")[:, :6]
    assert np.array_equal(idx, ref)
    np.testing.assert_allclose(dist, np.take_along_axis(1.0 - q @ lib.T, ref, axis=1), atol=1e-6)
    assert nearest(q, lib[:3], 6)[0].shape == (7, 3)  # k larger than the library: all of it
