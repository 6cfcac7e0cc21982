"""BIDS in, BIDS-Derivatives out: a small BIDS dataset built from one phantom (sub-01 with two sessions of
acq-3D FLAIRs, sub-02 with two FLAIR acquisitions, 2D and 3D, and a lesion mask in derivatives/manual), run through the cohort with
the hand-built detector; the output is checked with the BIDS validator (bids-validator-deno, the full
schema validator, run offline) and read back with pybids; filters, the two-FLAIR error and resume."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LesionXAILib.analysis import AnalysisSettings
from LesionXAILib.cli.main import main
from LesionXAILib.cohort import CohortSettings, ModelSpec, run_cohort
from LesionXAILib.cohort.bids_columns import UNKNOWN
from LesionXAILib.cohort.bids_input import BidsQuery, discover_bids_subjects
from LesionXAILib.cohort.store import DONE_MARKER
from LesionXAILib.errors import ParameterError
from LesionXAILib.explain import ExplainSettings
from LesionXAILib.metrics import MetricSettings
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.probes import ContextSettings

from probes_fixtures import write_detector_model

bids = pytest.importorskip("bids")

SETTINGS = CohortSettings(
    analysis=AnalysisSettings(
        explain=ExplainSettings(methods=("gradient", "smoothgrad"), samples=2, roi_margin_mm=8.0),
        context=ContextSettings(radii_mm=(0.0, 2.0)),
    ),
    metrics=MetricSettings(infidelity_perturbations=2, sensitivity_samples=1, deletion_steps=3, deletion_region_mm=4.0),
    lesion_files=True,
)
QUERY = BidsQuery(acq=("FLAIR=3D",), gt_derivative="manual")


def _write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def _image(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, dst)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The BIDS dataset (raw + derivatives/manual) and the detector model."""
    root = tmp_path_factory.mktemp("bids")
    phantom = root / "phantom"
    generate_phantom(31, PhantomSettings(n_lesions=4, fov_mm=(48.0, 48.0, 48.0))).write(phantom)
    ds = root / "ds"
    _write_json(ds / "dataset_description.json", {"Name": "LesionXAI phantom cohort", "BIDSVersion": "1.10.0", "DatasetType": "raw",
                                                   "Authors": ["LesionXAI tests", "Phantom"]})  # fmt: skip
    (ds / "README").write_text("Phantom MS cohort built by the LesionXAI tests.\n")
    (ds / "participants.tsv").write_text("participant_id\nsub-01\nsub-02\n")
    for ses in ("1", "2"):
        anat = ds / "sub-01" / f"ses-{ses}" / "anat"
        _image(phantom / "flair.nii.gz", anat / f"sub-01_ses-{ses}_acq-3D_FLAIR.nii.gz")
        _image(phantom / "t1.nii.gz", anat / f"sub-01_ses-{ses}_T1w.nii.gz")
    anat = ds / "sub-02" / "anat"
    _image(phantom / "flair.nii.gz", anat / "sub-02_acq-3D_FLAIR.nii.gz")
    _image(phantom / "flair.nii.gz", anat / "sub-02_acq-2D_FLAIR.nii.gz")
    _image(phantom / "t1.nii.gz", anat / "sub-02_T1w.nii.gz")
    manual = ds / "derivatives" / "manual"
    _write_json(manual / "dataset_description.json", {"Name": "manual lesion masks", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
                                                      "GeneratedBy": [{"Name": "Manual"}]})  # fmt: skip
    _image(phantom / "lesions.nii.gz", manual / "sub-02" / "anat" / "sub-02_acq-3D_space-orig_desc-lesion_mask.nii.gz")
    model, config = write_detector_model(root, h=1)
    return ds, ModelSpec(str(model), str(config), trust=True)


@pytest.fixture(scope="module")
def derivatives(dataset):
    """The cohort run into DATASET/derivatives/lesionxai, then a second (resumed) run."""
    ds, spec = dataset
    out = ds / "derivatives" / "lesionxai"
    first = run_cohort(ds, out, SETTINGS, spec, bids=QUERY)
    marker = (out / "subjects" / "sub-01_ses-1" / DONE_MARKER).stat().st_mtime_ns
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("sub-*") if p.is_file())
    second = run_cohort(ds, out, SETTINGS, spec, bids=QUERY)
    return out, first, second, marker, files


def _validator() -> list[str]:
    """Return the command running bids-validator-deno offline (no network permission), or skip."""
    try:
        from deno import find_deno_bin
        import bids_validator_deno
    except ImportError:
        pytest.skip("bids-validator-deno is not installed (pip install 'lesionxai[dev]')")
    bundle = Path(bids_validator_deno.__file__).parent / "bids-validator.js"
    return [os.fsdecode(find_deno_bin()), "run", "--allow-read", "--allow-env", str(bundle)]


def _validate(path: Path) -> list[dict]:
    """Return the validator's errors for the dataset at ``path`` (warnings are not errors)."""
    env = {**os.environ, "DENO_NO_UPDATE_CHECK": "1"}  # deno's own release check is the only network it would try
    run = subprocess.run([*_validator(), str(path), "--json"], capture_output=True, text=True, timeout=120, env=env)
    report = json.loads(run.stdout)
    errors = [i for i in report["issues"]["issues"] if i.get("severity") == "error"]
    assert (run.returncode == 0) == (not errors), run.stderr[-2000:]
    return errors


def test_the_cohort_matches_subjects_and_sessions_through_pybids(derivatives, dataset):
    ds, _ = dataset
    out, first, *_ = derivatives
    assert [s.id for s in first.subjects] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    assert first.count("finished") == 3 and not first.failures
    by_id = {s.id: s for s in first.subjects}
    assert Path(by_id["sub-02"].flair).name == "sub-02_acq-3D_FLAIR.nii.gz"
    assert Path(by_id["sub-02"].gt).name == "sub-02_acq-3D_space-orig_desc-lesion_mask.nii.gz"
    assert by_id["sub-01_ses-2"].gt is None and by_id["sub-01_ses-2"].entities == (("sub", "01"), ("ses", "2"), ("acq", "3D"))
    record = json.loads((out / "cohort.json").read_text())
    assert record["bids_input"]["matched"] == ["sub-01_ses-1", "sub-01_ses-2", "sub-02"]
    statuses = {sid: {r["status"] for r in first.rows if r["subject"] == sid} for sid in by_id}
    assert statuses["sub-01_ses-1"] == {"predicted"} and statuses["sub-02"] <= {"TP", "FP", "FN"} and "TP" in statuses["sub-02"]


def test_the_derivatives_and_the_input_pass_the_bids_validator(derivatives, dataset):
    ds, _ = dataset
    out, *_ = derivatives
    assert _validate(out) == []
    assert _validate(ds) == []
    # the validator does find errors: a file named outside BIDS in a copy is one
    broken = out.parent / "broken"
    shutil.copytree(out, broken, ignore=shutil.ignore_patterns("subjects", "*.html", "*.csv"))
    dseg = next(broken.rglob("*_desc-lesions_dseg.nii.gz"))
    dseg.rename(dseg.with_name(dseg.name.replace("_dseg", "_lesions")))
    assert any(e["code"] == "NOT_INCLUDED" for e in _validate(broken))
    shutil.rmtree(broken)


def _labels(path: str) -> list[int]:
    return sorted(int(v) for v in np.unique(sitk.GetArrayFromImage(sitk.ReadImage(path))) if v != 0)


def test_the_derivatives_round_trip_through_pybids(derivatives, dataset):
    from bids import BIDSLayout

    ds, _ = dataset
    out, first, *_ = derivatives
    layout = BIDSLayout(ds, derivatives=True)
    dsegs = layout.get(scope="LesionXAI", suffix="dseg", desc="lesions", extension=".nii.gz")
    got = sorted((f.entities["subject"], f.entities.get("session"), f.entities.get("acquisition"), f.entities["space"]) for f in dsegs)
    assert got == [("01", "1", "3D", "orig"), ("01", "2", "3D", "orig"), ("02", None, "3D", "orig")]
    probs = layout.get(scope="LesionXAI", suffix="probseg", label="lesion", extension=".nii.gz")
    assert len(probs) == 3
    for f in dsegs:
        e = f.entities
        sid = f"sub-{e['subject']}" + (f"_ses-{e['session']}" if e.get("session") else "")
        rows = [r for r in first.rows if r["subject"] == sid]
        # the dseg holds every lesion id of the subject's table; its look-up table lists them with their rows
        table = list(csv.DictReader(open(f.path.replace(".nii.gz", ".tsv")), delimiter="\t"))
        assert [int(t["index"]) for t in table] == sorted(int(r["id"]) for r in rows) == _labels(f.path)
        assert [t["status"] for t in table] == [r["status"] for r in sorted(rows, key=lambda r: int(r["id"]))]
        sidecar = json.loads(Path(f.path.replace(".nii.gz", ".json")).read_text())
        assert set(table[0]) <= set(sidecar) and not any(UNKNOWN in str(sidecar[c]) for c in table[0])
        assert sidecar["SpatialReference"].startswith("bids:raw:") and sidecar["SpatialReference"].endswith("_FLAIR.nii.gz")
        # per-lesion maps carry the subject's entities and the lesion in the label entity
        lesion = int(table[0]["index"])
        maps = layout.get(scope="LesionXAI", subject=e["subject"], session=e.get("session"), label=f"lesion{lesion}", suffix="saliency",
                          extension=".nii.gz", return_type="filename")  # fmt: skip
        assert sorted(Path(m).name.split("_desc-")[1] for m in maps) == ["gradientFlair_saliency.nii.gz", "gradientMprage_saliency.nii.gz",
                                                                          "smoothgradFlair_saliency.nii.gz", "smoothgradMprage_saliency.nii.gz"]  # fmt: skip
        assert os.path.samefile(maps[0], out / "subjects" / sid / f"instance_{lesion}" / "gradient_flair.nii.gz")
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["GeneratedBy"][0]["Name"] == "LesionXAI"
    model = description["LesionXAI"]["model"]
    assert model["sha256"] in description["GeneratedBy"][0]["Description"]
    assert description["LesionXAI"]["settings"] == SETTINGS.to_dict() and description["LesionXAI"]["fingerprint"] == first.fingerprint
    participants = list(csv.DictReader(open(out / "participants.tsv"), delimiter="\t"))
    assert [p["participant_id"] for p in participants] == ["sub-01", "sub-02"]
    assert int(participants[0]["instances"]) == sum(1 for r in first.rows if r["subject"].startswith("sub-01_"))
    sessions = list(csv.DictReader(open(out / "sub-01" / "sub-01_sessions.tsv"), delimiter="\t"))
    assert [s["session_id"] for s in sessions] == ["ses-1", "ses-2"]


def test_resume_skips_finished_subjects_and_keeps_the_derivatives(derivatives):
    out, first, second, marker, files = derivatives
    assert second.count("skipped") == 3 and second.count("finished") == 0
    assert (out / "subjects" / "sub-01_ses-1" / DONE_MARKER).stat().st_mtime_ns == marker
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("sub-*") if p.is_file()) == files
    assert second.rows == first.rows


def test_the_cohort_report_links_subjects_by_their_bids_entities(derivatives):
    out, *_ = derivatives
    text = (out / "report.html").read_text()
    assert '<a href="sub-01/ses-2/anat/">sub-01 ses-2 acq-3D</a>' in text
    assert '<a href="sub-02/anat/">sub-02 acq-3D</a>' in text


def test_filters_choose_subjects_and_sessions_and_say_what_was_skipped(dataset):
    ds, _ = dataset
    match = discover_bids_subjects(ds, BidsQuery(participant_label=("sub-02",), acq=("FLAIR=3D",)))
    assert [s.id for s in match.subjects] == ["sub-02"] and match.subjects[0].gt is None  # no --gt-derivative: no mask
    assert match.skipped == [{"what": "sub-01", "why": "not in --participant-label"}]
    match = discover_bids_subjects(ds, BidsQuery(session_label=("2",), acq=("FLAIR=3D",)))
    assert [s.id for s in match.subjects] == ["sub-01_ses-2"]
    assert {"what": "sub-01/ses-1", "why": "not in --session-label"} in match.skipped
    assert {"what": "sub-02", "why": "has no session (--session-label given)"} in match.skipped
    match = discover_bids_subjects(ds, BidsQuery(acq=("2D",)))  # both images: sub-01 and the T1w of sub-02 have no acq-2D
    assert [(s.id, s.problem) for s in match.subjects] == [("sub-02", "no T1w image in sub-02/anat with acq-2D")]
    assert {"what": "sub-01/ses-1", "why": "no FLAIR image in sub-01/ses-1/anat with acq-2D; no T1w image in sub-01/ses-1/anat with acq-2D"} in match.skipped
    with pytest.raises(ParameterError, match=r"--participant-label 03: no such subject .* \(it has 01, 02\)"):
        discover_bids_subjects(ds, BidsQuery(participant_label=("03",)))
    with pytest.raises(ParameterError, match=r"--gt-derivative 'freesurfer': no folder .*derivatives here: .*manual"):
        discover_bids_subjects(ds, BidsQuery(acq=("FLAIR=3D",), gt_derivative="freesurfer"))


def test_two_flairs_are_an_error_naming_both_files_and_the_entity(dataset, tmp_path, capsys):
    ds, spec = dataset
    with pytest.raises(ParameterError) as info:
        discover_bids_subjects(ds)
    text = str(info.value)
    assert "sub-02_acq-2D_FLAIR.nii.gz" in text and "sub-02_acq-3D_FLAIR.nii.gz" in text
    assert "differ in 'acquisition' (2D, 3D): choose with --acq FLAIR=<label>" in text
    out = tmp_path / "out"
    args = ["-q", "cohort", "--input", str(ds), "--out", str(out), "--model", spec.path, "--config", spec.config, "--trust-model",
            "--workers", "0", "--participant-label", "02"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "sub-02_acq-2D_FLAIR.nii.gz" in err and "--acq FLAIR=<label>" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing written before the input is clear
    # a folder that is not BIDS refuses the BIDS options instead of ignoring them
    assert main(["-q", "cohort", "--input", str(ds / "sub-01"), "--out", str(out), "--model", spec.path, "--config", spec.config,
                 "--trust-model", "--acq", "3D"]) == 2  # fmt: skip
    assert "not a BIDS dataset" in capsys.readouterr().err


def test_an_output_inside_the_raw_subject_folders_is_refused(dataset):
    ds, spec = dataset
    with pytest.raises(ParameterError, match="holds the input"):
        run_cohort(ds, ds / "sub-01", SETTINGS, spec, bids=QUERY, compute=False)


def test_a_manifest_cohort_can_write_bids_derivatives_too(dataset, tmp_path):
    ds, spec = dataset
    anat = ds / "sub-02" / "anat"
    gt = ds / "derivatives" / "manual" / "sub-02" / "anat" / "sub-02_acq-3D_space-orig_desc-lesion_mask.nii.gz"
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"subject,flair,t1,gt\ncase_7,{anat / 'sub-02_acq-3D_FLAIR.nii.gz'},{anat / 'sub-02_T1w.nii.gz'},{gt}\n")
    quick = CohortSettings(analysis=AnalysisSettings(explain=ExplainSettings(methods=("gradient",), roi_margin_mm=8.0)), metrics=None)
    out = tmp_path / "out"
    result = run_cohort(manifest, out, quick, spec, bids_out=True, report=False)
    assert result.count("finished") == 1
    assert (out / "subjects" / "case_7" / DONE_MARKER).exists()  # the store keeps its own layout
    dseg = out / "sub-case7" / "anat" / "sub-case7_space-orig_desc-lesions_dseg.nii.gz"
    assert _labels(str(dseg)) == sorted(int(r["id"]) for r in result.rows)
    assert _validate(out) == []
    # without --bids-out a manifest cohort writes no BIDS files, as before (an export writes its description even empty)
    run_cohort(manifest, tmp_path / "plain", quick, spec, report=False, compute=False)
    assert (tmp_path / "plain" / "cohort.json").exists() and not (tmp_path / "plain" / "dataset_description.json").exists()
