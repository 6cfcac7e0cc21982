"""Cohort runs on small phantoms with a hand-built detector: layout, resume after Ctrl-C/crash, failures,
settings changes, the CLI, the offline report, and a local 2-worker Dask cluster matching the serial run."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from LesionXAILib.analysis import AnalysisSettings
from LesionXAILib.cli.main import main
from LesionXAILib.cohort import CohortSettings, ModelSpec, run_cohort
from LesionXAILib.cohort.store import DONE_MARKER, is_timing_column
from LesionXAILib.errors import Cancelled, ParameterError
from LesionXAILib.explain import ExplainSettings
from LesionXAILib.metrics import MetricSettings
from LesionXAILib.phantom import PhantomSettings, generate_phantom
from LesionXAILib.probes import ContextSettings
from LesionXAILib.progress import CancelToken

from probes_fixtures import write_detector_model

SEEDS = (31, 32, 33)
SETTINGS = CohortSettings(
    analysis=AnalysisSettings(
        explain=ExplainSettings(methods=("gradient", "smoothgrad"), samples=2, roi_margin_mm=8.0),
        context=ContextSettings(radii_mm=(0.0, 2.0)),
    ),
    metrics=MetricSettings(infidelity_perturbations=2, sensitivity_samples=1, deletion_steps=3, deletion_region_mm=4.0),
    lesion_files=False,
)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Three 64 mm phantoms in the `lesionxai phantom` layout, plus the detector model (TorchScript + config)."""
    root = tmp_path_factory.mktemp("cohort")
    for seed in SEEDS:
        generate_phantom(seed, PhantomSettings(n_lesions=4, fov_mm=(64.0, 64.0, 64.0))).write(root / "in" / f"sub{seed}")
    model, config = write_detector_model(root, h=1)
    return root, ModelSpec(str(model), str(config), trust=True)  # the detector is TorchScript: trusted explicitly


def _csv_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def serial(cohort):
    """A serial run interrupted after its first subject, a crash leftover, then the resumed run."""
    root, spec = cohort
    out = root / "serial"
    token = CancelToken()
    seen = []

    def stop_after_first(outcome):
        seen.append(outcome.subject)
        token.cancel()  # as Ctrl-C would, while the next subject starts

    with pytest.raises(Cancelled):
        run_cohort(root / "in", out, SETTINGS, spec, cancel=token, on_outcome=stop_after_first, report=False)
    first = seen[0]
    interrupted = {
        "done": sorted(p.parent.name for p in (out / "subjects").glob(f"*/{DONE_MARKER}")),
        "rows": _csv_rows(out / "instances.csv"),
        "leftovers": sorted(p.name for p in (out / "subjects").iterdir()),
    }
    # a crash mid-subject leaves a folder without a done-marker and a scratch folder: neither may count as finished
    crashed = out / "subjects" / f"sub{SEEDS[1]}"
    crashed.mkdir()
    (crashed / "instances.csv").write_text("id\n1\n")
    (out / "subjects" / f".sub{SEEDS[2]}.partial-deadbeef").mkdir()
    marker_time = (out / "subjects" / first / DONE_MARKER).stat().st_mtime_ns
    result = run_cohort(root / "in", out, SETTINGS, spec)
    return out, first, interrupted, marker_time, result


def test_an_interrupted_run_keeps_finished_subjects_and_nothing_partial(serial):
    out, first, interrupted, marker_time, result = serial
    assert first == f"sub{SEEDS[0]}"
    assert interrupted["done"] == [first]
    assert interrupted["leftovers"] == [first]  # the cancelled subject's scratch folder is gone
    assert {r["subject"] for r in interrupted["rows"]} <= {first} and interrupted["rows"]
    # resumed: the finished subject was skipped (its marker untouched), the crashed one recomputed
    assert result.outcomes[first].state == "skipped"
    assert (out / "subjects" / first / DONE_MARKER).stat().st_mtime_ns == marker_time
    assert [result.outcomes[f"sub{s}"].state for s in SEEDS[1:]] == ["finished", "finished"]
    assert sorted(p.name for p in (out / "subjects").iterdir()) == [f"sub{s}" for s in SEEDS]
    assert (out / "subjects" / f"sub{SEEDS[1]}" / "instances.nii.gz").exists()


def test_rows_come_from_the_shared_analysis_and_cover_every_instance(serial):
    out, *_, result = serial
    rows = _csv_rows(out / "instances.csv")
    assert len(rows) == len(result.rows) > 0
    statuses = {r["status"] for r in rows}
    assert statuses <= {"TP", "FP", "FN"} and "TP" in statuses
    for seed in SEEDS:
        sub = out / "subjects" / f"sub{seed}"
        for name in ("instances.json", "explanations.json", "context_probe.json", "lesions.csv", "metrics.json"):
            assert (sub / name).exists(), name
        lesions = _csv_rows(sub / "lesions.csv")
        mine = [r for r in rows if r["subject"] == f"sub{seed}"]
        assert [r["id"] for r in mine] == [r["id"] for r in lesions]
        for a, b in zip(mine, lesions):  # the analysis summary is copied, not recomputed
            assert all(a[k] == b[k] for k in b if not is_timing_column(k)), seed
        maps = _csv_rows(sub / "explanations.csv")
        assert {m["map"] for m in maps} == {"gradient_flair", "gradient_mprage", "smoothgrad_flair", "smoothgrad_mprage"}
        assert len(maps) == 4 * len(mine)
        table = json.loads((sub / "instances.json").read_text())["instances"]
        assert sorted(str(t["id"]) for t in table) == sorted(r["id"] for r in mine)
        done = json.loads((sub / DONE_MARKER).read_text())
        assert done["instances"] == len(mine)
    assert {"smoothgrad_deletion_auc", "random_deletion_auc", "gradient_infidelity", "smoothgrad_max_sensitivity",
            "gradient_flair_ap", "smoothgrad_mprage_randomisation_spearman", "context_needed_mm",
            "max_sensitivity_backward_passes"} <= set(rows[0])  # fmt: skip


def test_report_is_offline_and_holds_the_group_statistics(serial):
    out, *_, result = serial
    text = (out / "report.html").read_text()
    assert "data:image/png;base64," in text
    assert "http://" not in text and "https://" not in text and "<script" not in text and "<link" not in text
    assert "Kruskal" in text and "smoothgrad_flair_inside_peak" in text and "TP vs FP" in text
    stats = json.loads((out / "statistics.json").read_text())
    assert set(stats["groups"]) <= {"TP", "FP", "FN"}
    assert stats["groups"] == result.statistics["groups"]
    assert sum(stats["groups"].values()) == len(result.rows)
    subjects = _csv_rows(out / "subjects.csv")
    assert [s["state"] for s in subjects] == ["skipped", "finished", "finished"]


def test_other_settings_are_refused_unless_overwriting(serial, cohort):
    out, *_ = serial
    _, spec = cohort
    changed = CohortSettings(analysis=SETTINGS.analysis, metrics=None, lesion_files=False)
    with pytest.raises(ParameterError, match="other settings"):
        run_cohort(out.parent / "in", out, changed, spec, compute=False, report=False)
    with pytest.raises(ParameterError, match="holds the input"):
        run_cohort(out.parent / "in", out.parent / "in" / f"sub{SEEDS[0]}", SETTINGS, spec, compute=False)
    copy = out.parent / "overwritten"
    shutil.copytree(out, copy)
    result = run_cohort(out.parent / "in", copy, changed, spec, overwrite=True, compute=False, report=False)
    assert result.count("pending") == 3 and result.rows == []  # nothing computed with the old settings counts


def test_cli_reports_a_failing_subject_and_finishes_the_rest(cohort, tmp_path, capsys):
    root, spec = cohort
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "flair.nii.gz").write_text("not an image")
    shutil.copy(root / "in" / f"sub{SEEDS[2]}" / "t1.nii.gz", bad / "t1.nii.gz")
    good = root / "in" / f"sub{SEEDS[2]}"
    manifest = tmp_path / "cohort.csv"
    manifest.write_text(f"subject,flair,t1,gt\nbad,bad/flair.nii.gz,bad/t1.nii.gz,\ngood,{good}/flair.nii.gz,{good}/t1.nii.gz,\n")
    out = tmp_path / "out"
    args = ["-q", "cohort", "--input", str(manifest), "--out", str(out), "--model", spec.path, "--config", spec.config, "--trust-model",
            "--methods", "gradient", "--radii", "0", "2", "--metrics", "activation_precision,deletion_insertion",
            "--deletion-steps", "2", "--workers", "0", "--no-lesion-files", "--gt"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "bad" in err and "FLAIR" in err
    subjects = {s["subject"]: s for s in _csv_rows(out / "subjects.csv")}
    assert subjects["bad"]["state"] == "failed" and "FLAIR" in subjects["bad"]["error"]
    # --gt requires ground truth: the good subject has none in this manifest, so it fails too, with that reason
    assert subjects["good"]["state"] == "failed" and "ground-truth" in subjects["good"]["error"]
    assert json.loads((out / "failures.json").read_text())[0]["subject"] == "bad"
    assert not list((out / "subjects").iterdir())  # no partial result of either
    args[args.index("--gt")] = "--no-gt"
    shutil.rmtree(out)
    assert main(args) == 1
    subjects = {s["subject"]: s for s in _csv_rows(out / "subjects.csv")}
    assert subjects["good"]["state"] == "finished" and int(subjects["good"]["predicted"]) > 0
    assert {r["status"] for r in _csv_rows(out / "instances.csv")} == {"predicted"}


def test_a_local_two_worker_dask_cluster_gives_the_serial_results(serial, cohort):
    pytest.importorskip("distributed")
    out, *_ = serial
    root, spec = cohort
    result = run_cohort(root / "in", root / "dask", SETTINGS, spec, workers=2, report=False)
    assert result.count("finished") == 3 and not result.failures
    serial_rows = _csv_rows(out / "instances.csv")
    dask_rows = _csv_rows(root / "dask" / "instances.csv")
    assert len(dask_rows) == len(serial_rows)
    columns = [c for c in serial_rows[0] if not is_timing_column(c)]
    assert columns == [c for c in dask_rows[0] if not is_timing_column(c)]
    for a, b in zip(serial_rows, dask_rows):
        assert [a[c] for c in columns] == [b[c] for c in columns], (a["subject"], a["id"])
