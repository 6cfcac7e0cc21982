"""The desktop module's worker (LesionXAILib.slicer_app.jobs) headless: a job runs off the polling thread, its outcome
is applied only by poll() on the polling thread, a second job is refused while one runs, cancel and errors
reach the GUI side. The last tests drive the module's Logic the way LesionXAI.py's timer does, on a real
vtkMRMLScene: nothing is added to the scene before poll() applies the run."""

from __future__ import annotations

import threading
import time

import pytest

from LesionXAILib.errors import Cancelled, ParameterError
from LesionXAILib.slicer_app.jobs import CANCELLED, DONE, FAILED, RUNNING, Busy, JobRunner


def gated(release: threading.Event, steps: int = 5, result="result"):
    """Return a compute function that reports progress step by step, each step waiting for ``release``."""

    def compute(progress, cancel):
        for n in range(steps):
            release.wait(10)
            progress((n + 1) / steps, f"step {n + 1}")
        return result

    return compute


def test_a_job_runs_off_the_polling_thread_and_is_applied_by_poll_only():
    runner = JobRunner()
    release = threading.Event()
    applied = []
    job = runner.submit("find", gated(release), apply=lambda r: applied.append((r, threading.get_ident())))
    assert runner.busy and runner.job_name == "find"
    status = runner.poll()
    assert status.state == RUNNING and not status.finished and applied == []
    release.set()
    job.finished.wait(10)
    assert applied == []  # the worker finished, but nothing was applied until the GUI polls
    status = runner.poll()
    assert status.state == DONE and status.fraction == 1.0
    assert applied == [("result", threading.get_ident())] and job.thread_id != threading.get_ident()
    assert not runner.busy and runner.poll() is None


def test_progress_is_reported_to_poll_while_running():
    runner = JobRunner()
    step = threading.Event()
    seen = threading.Event()

    def compute(progress, cancel):
        progress(0.25, "a quarter")
        step.set()
        seen.wait(10)
        return 1

    runner.submit("x", compute)
    step.wait(10)
    status = runner.poll()
    assert status.state == RUNNING and status.fraction == 0.25 and status.message == "a quarter"
    seen.set()
    assert runner.wait(10).state == DONE


def test_a_second_job_is_refused_while_one_runs_and_accepted_after_poll():
    runner = JobRunner()
    release = threading.Event()
    runner.submit("find", gated(release, 1))
    with pytest.raises(Busy, match="'find' is still running"):
        runner.submit("explain", lambda p, c: None)
    release.set()
    runner._job.finished.wait(10)
    with pytest.raises(Busy):  # finished but not yet applied: the scene does not have its result yet
        runner.submit("explain", lambda p, c: None)
    assert runner.poll().state == DONE
    runner.submit("explain", lambda p, c: 2)
    assert runner.wait(10).state == DONE


def test_cancel_stops_at_the_next_progress_check_and_calls_on_cancelled_on_poll():
    runner = JobRunner()
    started = threading.Event()
    steps = []

    def compute(progress, cancel):
        started.set()
        for n in range(1000):
            steps.append(n)
            progress(n / 1000, "")
            time.sleep(0.005)
        return "never"

    events = []
    runner.submit("explain", compute, apply=events.append, on_cancelled=lambda: events.append("cancelled"))
    started.wait(10)
    assert runner.cancel()
    status = runner.wait(10)
    assert status.state == CANCELLED and events == ["cancelled"]
    assert len(steps) < 1000
    assert not runner.cancel()  # nothing runs any more


def test_errors_are_delivered_on_poll_and_the_runner_keeps_serving():
    runner = JobRunner()
    errors = []

    def fails(progress, cancel):
        raise ParameterError("bad input")

    runner.submit("find", fails, apply=lambda r: pytest.fail("applied a failed job"), on_error=errors.append)
    status = runner.wait(10)
    assert status.state == FAILED and isinstance(status.error, ParameterError) and str(status.error) == "bad input"
    assert [str(e) for e in errors] == ["bad input"]
    # an error while applying on the GUI thread is reported the same way
    runner.submit("show", lambda p, c: 1, apply=lambda r: 1 / 0, on_error=errors.append)
    assert runner.wait(10).state == FAILED and isinstance(errors[-1], ZeroDivisionError)
    # a Cancelled raised by the work itself counts as cancelled, not failed
    runner.submit("c", lambda p, c: (_ for _ in ()).throw(Cancelled("stop")))
    assert runner.wait(10).state == CANCELLED


# ---------------------------------------------------------------- the module's Logic on a real scene


@pytest.fixture(scope="module")
def phantom_scene():
    slicer = pytest.importorskip("slicer")
    from LesionXAILib.slicer_app import selftest
    from LesionXAILib.mrml.views import ensure_slice_views

    scene = slicer.vtkMRMLScene()
    ensure_slice_views(scene)
    case = selftest.load_phantom_case(scene)
    return scene, case


@pytest.mark.slicer
def test_module_logic_runs_and_explains_through_the_worker_applying_on_poll(phantom_scene):
    from LesionXAILib.slicer_app import selftest
    from LesionXAILib.slicer_app.controller import ModuleController

    scene, case = phantom_scene
    logic = ModuleController(scene)
    runner = JobRunner()
    nodes_before = scene.GetNumberOfNodes()
    plan = logic.prepare_run(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS)
    assert scene.GetNumberOfNodes() == nodes_before  # reading the inputs adds nothing
    applied_on = []

    def apply(result):
        applied_on.append(threading.get_ident())
        logic.finish_run(plan, result)

    job = runner.submit("find", plan.compute, apply=apply)
    job.finished.wait(120)
    assert scene.GetNumberOfNodes() == nodes_before and logic.session is None and logic.writer is None  # computed, not yet applied
    status = runner.wait(10)
    assert status.state == DONE, status.message
    assert applied_on == [threading.get_ident()] and job.thread_id != threading.get_ident()
    writer = logic.writer
    selftest.check_run(writer, case)
    assert scene.GetNumberOfNodes() > nodes_before

    # a lesion: checked on the GUI thread, explained on the worker, shown on poll
    lesion_id = selftest.detected_lesion(writer)
    with pytest.raises(ParameterError, match="no lesion"):
        logic.prepare_lesion(10**6)
    lesion = logic.prepare_lesion(lesion_id, "gradcampp")
    runner.submit("explain", lesion.compute, apply=lambda r: logic.finish_lesion(lesion, r))
    with pytest.raises(Busy):
        runner.submit("explain again", lesion.compute)
    assert runner.wait(120).state == DONE
    assert writer.selected_id == lesion_id and writer.overlay == "gradcampp"

    # cancelling another lesion leaves the shown one as it was
    other = next(i for i in writer.session.instance_ids if i != lesion_id and not writer.session.is_cached(i))
    plan2 = logic.prepare_lesion(other)
    cancelled = []
    job = runner.submit("explain", plan2.compute, apply=lambda r: logic.finish_lesion(plan2, r),
                        on_cancelled=lambda: cancelled.append(other))  # fmt: skip
    runner.cancel()
    assert runner.wait(120).state == CANCELLED and cancelled == [other]
    assert writer.selected_id == lesion_id
