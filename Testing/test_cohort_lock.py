"""One cohort run per output folder: two real processes into one --out (refused, naming the first, or --wait),
and a subject whose scratch folder was taken away is never marked finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from LesionXAILib.cohort.lock import LOCK_FILE, OutputLock
from LesionXAILib.cohort.store import DONE_MARKER, CohortStore
from LesionXAILib.errors import LesionXAIError, ParameterError
from LesionXAILib.model_loading import save_checkpoint

from engine_fixtures import tiny_model
from probes_fixtures import write_subject

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "Testing"), os.environ.get("PYTHONPATH", "")])}


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cohort_input(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock")
    for sid in ("s1", "s2"):
        (root / "in" / sid).mkdir(parents=True)
        write_subject(root / "in" / sid)
    checkpoint = save_checkpoint(tiny_model(), root / "tiny.pt")
    return root, checkpoint


def _cli(root: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "LesionXAILib", "-q", "cohort", "--input", str(root / "in"), "--out", str(out),
            "--model", str(checkpoint), "--methods", "none", "--no-context", "--metrics", "none", "--workers", "0",
            "--no-lesion-files", *extra]  # fmt: skip


def test_two_concurrent_cohort_runs_into_one_out(cohort_input, tmp_path):
    root, checkpoint = cohort_input
    out = tmp_path / "out"
    go = tmp_path / "go"
    # process A: a real cohort run, held at its plan (after taking the lock) until the test says go
    first = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from LesionXAILib.analysis import AnalysisSettings
        from LesionXAILib.cohort import CohortSettings, run_cohort

        def hold(to_compute, total):
            while not Path({str(go)!r}).exists():
                time.sleep(0.05)

        settings = CohortSettings(analysis=AnalysisSettings(explain=None, context=None), metrics=None, lesion_files=False)
        run_cohort({str(root / "in")!r}, {str(out)!r}, settings, {str(checkpoint)!r}, on_plan=hold)
    """)
    a = subprocess.Popen([sys.executable, "-c", first], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    waiting = None
    try:
        lock = out / LOCK_FILE
        _wait_for(lambda: lock.exists() and '"pid"' in lock.read_text(), 120, "the first run's lock")
        assert json.loads(lock.read_text())["pid"] == a.pid

        # B without --wait: refused at once, one line naming A; it touches nothing
        before = sorted(p.name for p in out.rglob("*"))
        b = subprocess.run(_cli(root, checkpoint, out), env=_env(), capture_output=True, text=True, timeout=120)
        assert b.returncode == 2, b.stderr
        lines = [x for x in b.stderr.splitlines() if x.strip()]
        assert len(lines) == 1, b.stderr
        assert f"pid {a.pid}" in lines[0] and "in use by another cohort run" in lines[0] and "--wait" in lines[0]
        assert sorted(p.name for p in out.rglob("*")) == before

        # B with --wait: queues behind A, then resumes A's finished subjects
        err_path = tmp_path / "b.err"
        with open(err_path, "w") as err_file:
            waiting = subprocess.Popen(_cli(root, checkpoint, out, "--wait"), env=_env(), stdout=subprocess.DEVNULL,
                                       stderr=err_file)  # fmt: skip
        _wait_for(lambda: "waiting for the cohort run" in err_path.read_text() or waiting.poll() is not None, 120,
                  "the second run to queue")  # fmt: skip
        assert waiting.poll() is None, err_path.read_text()
        assert f"pid {a.pid}" in err_path.read_text()
        go.touch()
        assert a.wait(timeout=300) == 0, a.communicate()
        assert waiting.wait(timeout=300) == 0, err_path.read_text()
        assert "2 of 2 subjects finished earlier; computing 0" in err_path.read_text()
    finally:
        for p in (a, waiting):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    subjects = out / "subjects"
    assert sorted(p.name for p in subjects.iterdir()) == ["s1", "s2"]  # no scratch folder left by either run
    for sid in ("s1", "s2"):
        assert (subjects / sid / DONE_MARKER).exists() and (subjects / sid / "instances.nii.gz").exists()
    assert lock.read_text() == ""  # released: no holder recorded


def test_lock_in_process_refuses_then_allows(tmp_path):
    with OutputLock(tmp_path / "o"):
        with pytest.raises(ParameterError, match=f"pid {os.getpid()}"):
            OutputLock(tmp_path / "o").acquire()
    with OutputLock(tmp_path / "o"):  # released on exit
        pass


def test_subject_is_not_finalised_when_its_scratch_was_taken(tmp_path):
    store = CohortStore(tmp_path)
    scratch = store.scratch_dir("s1")
    (scratch / "instance_1").mkdir()
    # another process removes it (as a second run's clean-up did), then this task's writes recreate part of it
    import shutil

    shutil.rmtree(scratch)
    scratch.mkdir()
    (scratch / "instances.json").write_text("{}")
    with pytest.raises(LesionXAIError, match="removed or replaced by another process"):
        store.finalise(scratch, "s1", {"fingerprint": "f"})
    assert not store.subject_dir("s1").exists()
    good = store.scratch_dir("s2")
    final = store.finalise(good, "s2", {"fingerprint": "f"})
    assert (final / DONE_MARKER).exists() and not (final / ".owner").exists()
