"""Finding cohort subjects: folder layout (phantom names and aliases) and CSV manifests."""

from __future__ import annotations

import pytest

from LesionXAILib.cohort.subjects import discover_subjects, role_of
from LesionXAILib.errors import ParameterError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_file_roles_follow_the_documented_names():
    assert role_of("flair.nii.gz") == "flair" and role_of("T1.nii.gz") == "t1" and role_of("lesions.nii.gz") == "gt"
    assert role_of("sub-01_FLAIR.nii") == "flair" and role_of("sub-01_t2_flair.nrrd") == "flair"
    assert role_of("sub-01-MPRAGE.mha") == "t1" and role_of("t1w.nii.gz") == "t1"
    assert role_of("ground_truth.nii.gz") == "gt" and role_of("x_lesion_mask.nii.gz") == "gt"
    assert role_of("brain_mask.nii.gz") is None and role_of("wm.nii.gz") is None and role_of("flair.txt") is None
    assert role_of("t1_gd.nii.gz") is None


def test_folder_layout_with_problems_reported_per_subject(tmp_path, caplog):
    root = tmp_path / "cohort"
    for name in ("flair.nii.gz", "t1.nii.gz", "lesions.nii.gz", "wm.nii.gz"):  # what `lesionxai phantom --tissue` writes
        _touch(root / "p01" / name)
    _touch(root / "p02" / "p02_FLAIR.nii")
    _touch(root / "p02" / "p02_mprage.nii")
    _touch(root / "p03" / "flair.nii.gz")  # no T1
    _touch(root / "p04" / "flair.nii.gz")
    _touch(root / "p04" / "t1.nii.gz")
    _touch(root / "p04" / "mprage.nii.gz")  # two T1s
    _touch(root / "notes" / "readme.txt")  # not a subject
    _touch(root / ".hidden" / "flair.nii.gz")
    out = root / "out"
    _touch(out / "subjects" / "x" / "flair.nii.gz")  # the output folder inside the input is never a subject

    subjects = {s.id: s for s in discover_subjects(root, exclude=out)}
    assert sorted(subjects) == ["p01", "p02", "p03", "p04"]
    p01 = subjects["p01"]
    assert p01.flair.endswith("p01/flair.nii.gz") and p01.t1.endswith("t1.nii.gz") and p01.gt.endswith("lesions.nii.gz")
    assert p01.problem is None
    assert subjects["p02"].gt is None and subjects["p02"].problem is None
    assert "no MPRAGE/T1 file" in subjects["p03"].problem and "t1.nii.gz" in subjects["p03"].problem
    assert "several t1 files" in subjects["p04"].problem
    assert "notes" in caplog.text


def test_manifest_paths_are_relative_to_the_csv(tmp_path):
    _touch(tmp_path / "data" / "a_flair.nii.gz")
    manifest = tmp_path / "data" / "cohort.csv"
    manifest.write_text("Subject,FLAIR,MPRAGE,GT\nb,/abs/f.nii.gz,/abs/t.nii.gz,\na,a_flair.nii.gz,sub/a_t1.nii.gz,a_gt.nii.gz\n\n")
    subjects = discover_subjects(manifest)
    assert [s.id for s in subjects] == ["a", "b"]
    a, b = subjects
    assert a.flair == str(tmp_path / "data" / "a_flair.nii.gz") and a.t1 == str(tmp_path / "data" / "sub" / "a_t1.nii.gz")
    assert b.gt is None and b.flair == "/abs/f.nii.gz"


@pytest.mark.parametrize(
    "text, message",
    [
        ("subject,flair\na,f.nii.gz\n", "missing column"),
        ("subject,flair,t1\n../x,f.nii.gz,t.nii.gz\n", "may only hold"),
        ("subject,flair,t1\na,f.nii.gz,t.nii.gz\na,g.nii.gz,u.nii.gz\n", "listed twice"),
        ("subject,flair,t1\n", "holds no subject"),
    ],
)
def test_bad_manifests_fail_with_a_clear_message(tmp_path, text, message):
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(ParameterError, match=message):
        discover_subjects(manifest)


def test_missing_input_or_wrong_type(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        discover_subjects(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ParameterError, match="csv manifest"):
        discover_subjects(tmp_path / "x.txt")
    with pytest.raises(ParameterError, match="holds no subject"):
        discover_subjects(tmp_path)
