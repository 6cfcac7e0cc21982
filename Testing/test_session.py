"""The scene-free Session: no Slicer anywhere in it, and the whole lesion workflow on arrays alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from LesionXAILib.analysis import analyse_lesion
from LesionXAILib.errors import ParameterError
from LesionXAILib.session.cache import ResultCache
from LesionXAILib.session.core import Session
from LesionXAILib.session.settings import RunInputs, SessionSettings

from subject_fixtures import two_lesion_subject

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = SessionSettings(methods=("gradient", "smoothgrad"), samples=2, seed=3, max_radius_mm=3.0)


def test_the_session_package_imports_no_scene_or_gui_library():
    for path in sorted((ROOT / "LesionXAILib" / "session").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in ("slicer", "vtk", "vtkmodules", "qt", "ctk", "trame", "trame_slicer"), (path.name, name)
                assert not name.startswith(("LesionXAILib.mrml", "LesionXAILib.viewer", "LesionXAILib.slicer_app")), (path.name, name)


def test_importing_the_click_policy_loads_nothing_heavy():
    """Slicer's module imports it before the engine's dependencies are installed."""
    code = "import sys, LesionXAILib.session.clicks; print(sorted(m for m in ('numpy', 'torch', 'slicer') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def ran():
    model, pair = two_lesion_subject(seed=11)
    session = Session(model, SETTINGS, ResultCache())
    inputs = RunInputs(pair, None, ("stamp", 1), SETTINGS)
    result = session.compute_run(inputs)
    assert session.result is None and session.key is None  # computing changes nothing
    session.apply_run(inputs, result)
    return session, model, result


def test_lesion_workflow_without_a_scene(ran):
    session, model, result = ran
    assert session.instance_ids == result.instances.ids == [1, 2]
    assert session.input_stamps == ("stamp", 1) and session.needs_run() is None
    assert session.available_overlays() == (
        "gradient_flair", "gradient_mprage", "smoothgrad_flair", "smoothgrad_mprage", "context_shells"
    )
    assert session.default_overlay() == "smoothgrad_flair"
    centre = result.geometry.ijk_to_ras_points(np.array([[6.0, 6.0, 6.0]]))[0]
    assert session.lesion_at(centre) == result.instances.at_voxel((6, 6, 6)) and session.lesion_at(centre) is not None
    assert session.lesion_at(result.geometry.ijk_to_ras_points(np.array([[1.0, 1.0, 20.0]]))[0]) is None
    stages = []
    final = session.compute_lesion(2, on_partial=stages.append, first="gradient_mprage")
    assert sorted(stages[0].maps) == ["gradient_flair", "gradient_mprage"]  # the explainer asked for first
    assert all(not s.complete for s in stages) and final.complete and not final.from_cache
    direct = analyse_lesion(model, result, 2, SETTINGS.analysis_settings())  # an independent, one-shot run
    for key, arr in direct.explanation.maps.items():
        np.testing.assert_array_equal(final.maps[key], arr)
    assert final.statistics["context_needed_mm"] == direct.curve.context_needed_mm
    assert session.lesion_statistics(2)["computed"] and not session.lesion_statistics(1)["computed"]
    again = session.compute_lesion(2)
    assert again.from_cache and again.analysis is final.analysis and session.is_cached(2)
    session.check_result(final)


def test_settings_changes_rekey_or_require_a_run(ran):
    session, _, _ = ran
    before = session.compute_lesion(1)
    session.settings = SETTINGS.replace(seed=4)
    with pytest.raises(ParameterError, match="other inputs or settings"):
        session.check_result(before)
    assert not session.is_cached(1)
    session.settings = SETTINGS.replace(threshold=0.8)
    assert "threshold" in session.needs_run()
    with pytest.raises(ParameterError, match="threshold"):
        session.compute_lesion(1)
    with pytest.raises(ParameterError, match="SessionSettings"):
        session.settings = {"seed": 1}
    session.settings = SETTINGS
    assert session.is_cached(1)
