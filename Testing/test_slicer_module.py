"""Static checks of the Slicer module file LesionXAI/LesionXAI.py (desktop Slicer cannot run here).

The module's Logic holds a LesionXAILib.slicer_app.controller.ModuleController (the scene's Session and
SceneWriter), the Widget calls that controller, and the self-test drives the Logic through the same checks as
Testing/test_mrml_phantom.py; these tests read the file's syntax tree to prove it: every name it uses on the
UI, the controller, the self-test helpers and the parameter node exists on the other side.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "LesionXAI" / "LesionXAI.py"
UI = ROOT / "LesionXAI" / "Resources" / "UI" / "LesionXAI.ui"
TREE = ast.parse(MODULE.read_text(), filename=str(MODULE))
CLASSES = {node.name: node for node in TREE.body if isinstance(node, ast.ClassDef)}
# standard library and what Slicer provides: the only modules LesionXAI.py may import at load time
ALLOWED_TOP_IMPORTS = {"os", "platform", "sys", "time", "pathlib", "typing", "qt", "vtk", "ctk", "slicer",
                       "slicer.i18n", "slicer.parameterNodeWrapper", "slicer.ScriptedLoadableModule", "slicer.util"}  # fmt: skip


def base_names(cls: ast.ClassDef) -> list[str]:
    return [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in cls.bases]


def methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def ui_widgets() -> dict[str, ET.Element]:
    return {w.get("name"): w for w in ET.parse(UI).getroot().iter("widget")}


def test_module_file_parses_and_classes_follow_the_template_names():
    assert base_names(CLASSES["LesionXAI"]) == ["ScriptedLoadableModule"]
    assert base_names(CLASSES["LesionXAIWidget"]) == ["ScriptedLoadableModuleWidget", "VTKObservationMixin"]
    assert base_names(CLASSES["LesionXAILogic"]) == ["ScriptedLoadableModuleLogic"]
    assert base_names(CLASSES["LesionXAITest"]) == ["ScriptedLoadableModuleTest"]
    decorators = [ast.unparse(d) for d in CLASSES["LesionXAIParameterNode"].decorator_list]
    assert decorators == ["parameterNodeWrapper"]
    widget = methods(CLASSES["LesionXAIWidget"])
    for name in ("setup", "cleanup", "enter", "exit", "onSceneStartClose", "onSceneEndClose",
                 "initializeParameterNode", "setParameterNode", "onApplyButton"):  # fmt: skip
        assert name in widget, name
    assert {"runTest", "setUp"} <= set(methods(CLASSES["LesionXAITest"]))
    text = MODULE.read_text()
    assert 'self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]' in text
    assert "2406.09335" in text and "Spagnolo" in text  # acknowledgement names the anchor paper


def test_every_ui_name_used_exists_in_the_ui_file():
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text()))
    widgets = ui_widgets()
    assert used, "the widget uses no .ui names?"
    missing = sorted(used - set(widgets))
    assert not missing, f"LesionXAI.py uses self.ui.{missing} but LesionXAI.ui has no such widget"


def test_ui_parameter_bindings_match_the_parameter_node():
    fields = {
        n.target.id: ast.unparse(n.annotation)
        for n in CLASSES["LesionXAIParameterNode"].body
        if isinstance(n, ast.AnnAssign)
    }
    bound = {}
    for name, widget in ui_widgets().items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = (name, widget.get("class"))
    assert set(bound) <= set(fields), f"UI binds unknown parameters {set(bound) - set(fields)}"
    expected = {"flairVolume", "mprageVolume", "groundTruth", "modelPath", "threshold", "minSize", "methodSmoothGrad",
                "methodGradCamPP", "samples", "seed", "maxRadius", "selectedLesion", "overlay"}  # fmt: skip
    assert expected <= set(bound), f"parameters without a widget: {expected - set(bound)}"
    kinds = {"vtkMRMLScalarVolumeNode": "qMRMLNodeComboBox", "bool": "QCheckBox", "Path": "ctkPathLineEdit"}
    for parameter, (widget, cls) in bound.items():
        annotation = fields[parameter]
        if annotation in kinds:
            assert cls == kinds[annotation], (parameter, cls)
        if "Union[" in annotation:
            assert cls == "qMRMLNodeComboBox"
            assert annotation.startswith("Optional[") or "None" in annotation, "a union of nodes must admit None"
        if "Choice" in annotation:
            assert cls == "QComboBox"


def test_overlay_choices_are_the_bridge_overlays():
    from LesionXAILib.session.overlays import OVERLAYS

    assign = next(n for n in TREE.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "OVERLAY_CHOICES")
    assert tuple(ast.literal_eval(assign.value)) == OVERLAYS


def test_module_import_needs_no_engine_dependencies():
    """Nothing heavy (torch, MONAI, LesionXAILib's engine) is imported when Slicer loads the module."""
    for node in TREE.body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            continue
        assert set(names) <= ALLOWED_TOP_IMPORTS, names
    calls = [ast.unparse(n.value) for n in TREE.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert calls == ["_ensureLibraryOnPath()"]


def core_calls(node: ast.AST, owner: str) -> set[str]:
    """Return the names called as ``<owner>.core().<name>`` inside ``node``."""
    called = set()
    for call in ast.walk(node):
        if isinstance(call, ast.Attribute) and isinstance(call.value, ast.Call) and ast.unparse(call.value) == f"{owner}.core()":
            called.add(call.attr)
    return called


def test_logic_and_widget_drive_the_controller_that_holds_session_and_writer():
    """Every ``core().<name>`` the Logic, the Widget or the self-test uses exists on ModuleController; no forwarding layer."""
    slicer = pytest.importorskip("slicer")
    from LesionXAILib.slicer_app import controller

    core = controller.ModuleController(slicer.vtkMRMLScene())
    core_methods = set(dir(core))  # methods and instance attributes (session, writer, cache, scene)
    assert {"session", "writer"} <= core_methods
    logic = methods(CLASSES["LesionXAILogic"])
    used = {
        "Logic": core_calls(CLASSES["LesionXAILogic"], "self"),
        "Widget": core_calls(CLASSES["LesionXAIWidget"], "self.logic"),
        "Test": core_calls(CLASSES["LesionXAITest"], "logic"),
    }
    for who, attrs in used.items():
        assert attrs and attrs <= core_methods, f"{who} calls ModuleController.{attrs - core_methods}"
    assert core_calls(logic["process"], "self") == {"run"} and core_calls(logic["prepareRun"], "self") == {"prepare_run"}
    assert {"finish_run", "prepare_lesion", "finish_lesion", "combo_overlay", "set_overlay", "lesion_at", "table"} <= used["Widget"]
    # the one-line forwards are gone: the Logic keeps only what needs the parameter node, Slicer or no engine import
    assert set(logic) <= {"__init__", "getParameterNode", "core", "requirementsPath", "installPlan", "dependenciesMissing",
                          "pyTorchUtilsAvailable", "installSteps", "installDependencies", "settingsFromParameterNode",
                          "process", "prepareRun", "hasResults", "clear"}  # fmt: skip
    # after a lesion was computed the Widget makes one call, which shows it and returns everything the panel needs
    select = methods(CLASSES["LesionXAIWidget"])["_select"]
    apply = next(n for n in ast.walk(select) if isinstance(n, ast.FunctionDef) and n.name == "apply")
    calls = [ast.unparse(n.func) for n in ast.walk(apply) if isinstance(n, ast.Call) and "logic" in ast.unparse(n.func)]
    assert calls == ["self.logic.core().finish_lesion", "self.logic.core"], calls
    assert {f.name for f in dataclasses.fields(controller.LesionPanel)} >= {"statistics_text", "legend_text", "table"}
    imported = set()
    for fn in logic.values():
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module.startswith("LesionXAILib"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):  # a submodule
                        importlib.import_module(f"{node.module}.{alias.name}")
                    imported.add(alias.name)
    assert {"ModuleController", "settings_from_parameters"} <= imported
    # the Logic never touches Qt
    assert not [n for n in ast.walk(CLASSES["LesionXAILogic"]) if isinstance(n, ast.Name) and n.id in ("qt", "ctk")]


def test_self_test_drives_the_logic_through_the_shared_checks():
    """LesionXAITest calls LesionXAILogic methods that exist and the selftest helpers pytest also runs."""
    from LesionXAILib.slicer_app import selftest

    logic_methods = set(methods(CLASSES["LesionXAILogic"]))
    tests = {n: f for n, f in methods(CLASSES["LesionXAITest"]).items() if n.startswith("test_")}
    assert set(tests) == {"test_LesionXAI_EndToEnd", "test_LesionXAI_ObliqueGeometry", "test_LesionXAI_WidgetSmoke"}
    run_test = ast.unparse(methods(CLASSES["LesionXAITest"])["runTest"])
    for name in tests:
        assert f"self.{name}" in run_test
    # Reload and Test calls runTest() itself: a skip must be reported, not escape as a failure
    assert "except unittest.SkipTest" in run_test and "self.skipped.append" in run_test
    smoke = ast.unparse(tests.pop("test_LesionXAI_WidgetSmoke"))
    assert "_requireDependencies" not in smoke and "import torch" not in smoke  # runs without the engine's dependencies
    assert "_startJob" in smoke and "onOverlayChanged(0)" in smoke and "slicer_refusal" in smoke
    required = {"load_phantom_case", "snapshot_inputs", "check_run", "check_lesion_at", "detected_lesion",
                "check_selection", "check_inputs_unchanged"}  # fmt: skip
    for name, fn in tests.items():
        called_logic, called_selftest = set(), set()
        for node in ast.walk(fn):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = ast.unparse(node.func.value)
                if owner == "logic":
                    called_logic.add(node.func.attr)
                elif owner == "selftest":
                    called_selftest.add(node.func.attr)
        assert called_logic and called_logic <= logic_methods, (name, called_logic - logic_methods)
        assert "process" in called_logic
        assert required <= called_selftest, (name, required - called_selftest)
        for helper in called_selftest:
            assert callable(getattr(selftest, helper, None)), f"selftest.{helper} does not exist"
        assert "selftest.SELFTEST_SETTINGS" in ast.unparse(fn)


def test_click_handling_uses_the_tested_detector_and_the_crosshair():
    widget = ast.unparse(CLASSES["LesionXAIWidget"])
    assert "ClickDetector()" in widget and "GetCursorPositionRAS" in widget
    assert "vtkMRMLCrosshairNode" in widget and "LeftButtonReleaseEvent" in widget
    # observers feed events and never abort them (window/level dragging keeps working)
    assert "SetAbortFlag" not in widget


def test_long_work_runs_on_the_job_runner_polled_by_a_qtimer():
    """Find lesions and lesion selection go through LesionXAILib.slicer_app.jobs (tested headless), never on the GUI thread."""
    widget = methods(CLASSES["LesionXAIWidget"])
    source = ast.unparse(CLASSES["LesionXAIWidget"])
    assert "JobRunner()" in ast.unparse(widget["setup"]) and "qt.QTimer()" in ast.unparse(widget["setup"])
    assert "'timeout()', self.onPoll" in ast.unparse(widget["setup"])
    assert "self.jobs.poll()" in ast.unparse(widget["onPoll"])
    # the work itself: prepared on the GUI thread, computed by the runner, finished by poll's apply callback
    apply_button = ast.unparse(widget["onApplyButton"])
    assert "self.jobs.cancel()" in apply_button and "prepareRun" in apply_button
    assert "plan.compute" in apply_button and "_startJob" in apply_button and "finish_run" in apply_button
    select = ast.unparse(widget["_select"])
    assert "prepare_lesion" in select and "finish_lesion" in select and "self.jobs.busy" in select
    # nothing computes on the GUI thread any more: no processEvents-driven progress loop, no direct selection
    assert "processParameterNode" not in source and "select_lesion(" not in source and "selectLesion(" not in source
    buttons = ast.unparse(widget["_updateButtons"])
    assert "'Cancel'" in buttons and "'Find lesions'" in buttons
    for name in ("inputsCollapsibleButton", "settingsCollapsibleButton", "lesionTable", "explainButton", "overlayComboBox"):
        assert name in buttons, name  # disabled while a job runs
    assert "self.jobs.busy" in ast.unparse(widget["_clickSelects"])


def test_refusal_below_the_minimum_slicer_comes_before_anything_else():
    setup = methods(CLASSES["LesionXAIWidget"])["setup"]
    statements = [ast.unparse(n) for n in setup.body]
    refusal = next(i for i, line in enumerate(statements) if "slicer_refusal(slicer.app.applicationVersion)" in line)
    load_ui = next(i for i, line in enumerate(statements) if "loadUI" in line)
    assert refusal < load_ui
    branch = next(n for n in setup.body if isinstance(n, ast.If) and ast.unparse(n.test) == "self.refusal")
    text = ast.unparse(branch)
    assert "qt.QLabel(self.refusal)" in text and isinstance(branch.body[-1], ast.Return)


def test_overlay_combo_asks_the_tolerant_logic_and_plots_only_on_request():
    widget = methods(CLASSES["LesionXAIWidget"])
    overlay = ast.unparse(widget["onOverlayChanged"])
    assert "self.logic.core().combo_overlay(name)" in overlay and "if overlay is None:\n        return" in overlay
    source = ast.unparse(CLASSES["LesionXAIWidget"])
    assert source.count("ShowChartInLayout") == 1 and "ShowChartInLayout" in ast.unparse(widget["onShowPlot"])
    # slice views created after setup (a new layout) are observed too, before displayable managers see events
    assert "'layoutChanged(int)', self._installClickObservers" in ast.unparse(widget["setup"])
    install = ast.unparse(widget["_installClickObservers"])
    assert "if interactor in self._clickDetectors:" in install and "priority=self.CLICK_OBSERVER_PRIORITY" in install
    assert "window/level" not in MODULE.read_text()  # not what a drag does by default in Slicer 5.x


def test_dependencies_are_installed_only_on_request():
    logic = ast.unparse(CLASSES["LesionXAILogic"])
    assert "slicer.app.testingEnabled()" in logic
    assert "pip_ensure" in logic and "slicer.util.pip_install" in logic
    module_level = [ast.unparse(n) for n in TREE.body if not isinstance(n, (ast.ClassDef, ast.FunctionDef))]
    assert not any("pip" in line for line in module_level)
    widget = ast.unparse(CLASSES["LesionXAIWidget"])
    assert "confirmOkCancelDisplay" in widget  # asks before installing
    # torch through the PyTorch extension when present (the decision is dependencies.install_steps, tested headless)
    install = ast.unparse(methods(CLASSES["LesionXAILogic"])["installDependencies"])
    assert "PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False" in install
    steps = ast.unparse(methods(CLASSES["LesionXAILogic"])["installSteps"])
    assert "install_steps(plan, self.pyTorchUtilsAvailable(), slicer.app.testingEnabled())" in steps
    ensure = ast.unparse(methods(CLASSES["LesionXAIWidget"])["_ensureDependencies"])
    assert ensure.index("confirmOkCancelDisplay") < ensure.index("installDependencies") and "createProgressDialog" in ensure


@pytest.mark.parametrize("path", ["Resources/Icons/LesionXAI.png", "Resources/UI/LesionXAI.ui", "Resources/requirements.txt"])
def test_module_resources_exist(path):
    assert (ROOT / "LesionXAI" / path).is_file()


def test_icon_is_a_128_pixel_png():
    from PIL import Image

    with Image.open(ROOT / "LesionXAI" / "Resources" / "Icons" / "LesionXAI.png") as im:
        assert im.format == "PNG" and im.size == (128, 128)
