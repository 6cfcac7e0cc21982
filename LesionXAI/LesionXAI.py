import os
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Optional, Union

import qt
import vtk

import slicer
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Overlay names of LesionXAILib.mrml.session.OVERLAYS (kept literal here: this file must import without
# torch/MONAI, which are installed on first use; a test checks both lists are equal).
OVERLAY_CHOICES = ("smoothgrad_flair", "smoothgrad_mprage", "gradcampp", "context_shells")


def _ensureLibraryOnPath() -> None:
    """Make LesionXAILib importable: beside this file when installed, one level up in a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here, here.parent):
        if (candidate / "LesionXAILib" / "__init__.py").exists():
            if str(candidate) not in sys.path:
                sys.path.insert(0, str(candidate))
            return


_ensureLibraryOnPath()


#
# LesionXAI
#


class LesionXAI(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("LesionXAI")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["LesionXAI developers"]
        self.parent.helpText = _(
            "Explains a 3D U-Net's multiple-sclerosis lesion segmentation one lesion at a time. "
            "Choose a FLAIR and an MPRAGE volume (and optionally a ground-truth mask), click "
            "<b>Find lesions</b>: every lesion becomes a segment and a table row. Then left-click a "
            "lesion in a slice view (a click, not a drag: dragging still adjusts window/level) or pick "
            "it in the table: its SmoothGrad and Grad-CAM++ maps and its perilesional-context probe are "
            "shown as overlays over the FLAIR, with its statistics and context curve."
        )
        self.parent.acknowledgementText = _(
            "LesionXAI reproduces the instance-level saliency analysis of Spagnolo F. et al., "
            "'Instance-level quantitative saliency in multiple sclerosis lesion segmentation', "
            "arXiv:2406.09335 (2024)."
        )


#
# LesionXAIParameterNode
#


@parameterNodeWrapper
class LesionXAIParameterNode:
    """Module state saved with the scene: inputs, model, settings, selection."""

    flairVolume: vtkMRMLScalarVolumeNode
    mprageVolume: vtkMRMLScalarVolumeNode
    groundTruth: Optional[Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]]  # a node union needs None
    modelPath: Path  # empty = the bundled demo model
    trustModel: bool = False  # allow a model file that runs code when loaded (TorchScript)
    useModelThreshold: bool = True
    threshold: Annotated[float, WithinRange(0.01, 0.99)] = 0.5
    minSize: Annotated[float, WithinRange(0, 100000)] = 3
    methodSmoothGrad: bool = True
    methodGradCamPP: bool = True
    samples: Annotated[int, WithinRange(1, 200)] = 16
    seed: Annotated[int, WithinRange(0, 1000000)] = 0
    maxRadius: Annotated[float, WithinRange(0, 40)] = 15
    selectedLesion: Annotated[int, WithinRange(0, 100000)] = 0  # 0 = none
    overlay: Annotated[str, Choice(OVERLAY_CHOICES)] = "smoothgrad_flair"
    clickToExplain: bool = True


#
# LesionXAIWidget
#


class LesionXAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: binds the .ui to the parameter node and forwards actions to LesionXAILogic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._clickDetectors = {}
        self._updatingTable = False

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionXAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LesionXAILogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.explainButton.connect("clicked(bool)", self.onExplainButton)
        self.ui.overlayComboBox.connect("currentIndexChanged(int)", self.onOverlayChanged)
        self.ui.lesionTable.connect("cellClicked(int,int)", self.onTableClicked)
        self._installClickObservers()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self.logic.clear()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: Optional[LesionXAIParameterNode]) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        p = self._parameterNode
        ready = bool(p and p.flairVolume and p.mprageVolume and p.flairVolume != p.mprageVolume)
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Segment the lesions") if ready else _("Select a FLAIR and a different MPRAGE volume")
        self.ui.thresholdSliderWidget.enabled = bool(p and not p.useModelThreshold)
        self.ui.explainButton.enabled = self.logic.hasResults()

    # -- actions ------------------------------------------------------------------------------

    def _ensureDependencies(self) -> bool:
        """Ask once, then install what LesionXAI needs; return False if the user declined."""
        plan = self.logic.installPlan()
        if not plan.needed:
            return True
        question = _("LesionXAI needs these Python packages (installed once, a few minutes):") + "\n\n" + plan.describe()
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("LesionXAI - install dependencies")):
            return False
        with slicer.util.tryWithErrorDisplay(_("Installing LesionXAI's dependencies failed."), waitCursor=True):
            self.logic.installDependencies(plan)
        return True

    def _runWithProgress(self, title: str, errorMessage: str, work):
        """Run ``work(progress, cancel)`` on the main thread behind a progress dialog with a Cancel button."""
        from LesionXAILib.errors import Cancelled
        from LesionXAILib.progress import CancelToken

        dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=100)
        token = CancelToken()
        dialog.canceled.connect(token.cancel)

        def progress(fraction: float, message: str) -> None:
            dialog.value = int(100 * fraction)
            if message:
                dialog.labelText = message
            slicer.app.processEvents()  # keeps the Cancel button responsive

        try:
            with slicer.util.tryWithErrorDisplay(errorMessage, waitCursor=True):
                try:
                    return work(progress, token)
                except Cancelled:
                    self.ui.statusLabel.text = _("Cancelled.")
                    return None
        finally:
            dialog.close()

    def onApplyButton(self) -> None:
        if not self._ensureDependencies():
            return
        session = self._runWithProgress(
            _("Finding lesions"), _("LesionXAI could not segment the lesions."),
            lambda progress, cancel: self.logic.processParameterNode(self._parameterNode, progress, cancel),
        )
        if session is not None:
            self.ui.statusLabel.text = _("{n} lesions: click one in a slice view, or in the table.").format(n=len(session.instance_ids))
        self._fillTable()
        self._updateButtons()

    def onExplainButton(self) -> None:
        self._select(self._parameterNode.selectedLesion)

    def onTableClicked(self, row: int, column: int) -> None:
        if not self._updatingTable:
            self._select(int(self.ui.lesionTable.item(row, 0).text()))

    def onOverlayChanged(self, index: int) -> None:
        # read the combo box itself: this slot may run before the parameter node has been updated
        if self.logic.selectedLesion() is not None and 0 <= index < len(OVERLAY_CHOICES):
            with slicer.util.tryWithErrorDisplay(_("This overlay is not available."), waitCursor=False):
                self.logic.setOverlay(OVERLAY_CHOICES[index])
                self.ui.legendLabel.text = self.logic.legendText(OVERLAY_CHOICES[index])

    def _select(self, lesionId: int) -> None:
        if not lesionId or not self.logic.hasResults():
            return
        result = self._runWithProgress(
            _("Explaining lesion {id}").format(id=lesionId), _("LesionXAI could not explain this lesion."),
            lambda progress, cancel: self.logic.selectLesion(lesionId, self.logic.resolveOverlay(self._parameterNode.overlay), progress, cancel),
        )
        if result is None:
            return
        self._parameterNode.selectedLesion = result.lesion_id
        self._parameterNode.overlay = self.logic.session().overlay
        self.ui.statisticsLabel.text = self.logic.statisticsText(result.lesion_id)
        self._showLegend()
        slicer.modules.plots.logic().ShowChartInLayout(self.logic.session().chart_node)
        self._fillTable()

    def _showLegend(self) -> None:
        self.ui.legendLabel.text = self.logic.legendText(self._parameterNode.overlay)

    def _fillTable(self) -> None:
        """Show logic.tableRows() in the table widget (read-only copy of the table node)."""
        columns, rows = self.logic.tableForDisplay()
        table = self.ui.lesionTable
        self._updatingTable = True
        table.clear()
        table.setColumnCount(len(columns))
        table.setHorizontalHeaderLabels(columns)
        table.setRowCount(len(rows))
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                table.setItem(r, c, qt.QTableWidgetItem(value))
        table.resizeColumnsToContents()
        self._updatingTable = False

    # -- click-to-explain ---------------------------------------------------------------------
    # Choice: the crosshair node's cursor position (vtkMRMLCrosshairNode), read when the left button is
    # released after a press that neither moved more than a few pixels nor lasted long. The decision is
    # LesionXAILib.mrml.clicks.ClickDetector (tested headless); observers here only feed it events and
    # never abort them, so window/level dragging and every other mouse mode keep working.

    def _installClickObservers(self) -> None:
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no main window (e.g. --no-main-window tests)
            return
        from LesionXAILib.mrml.clicks import ClickDetector

        for name in layoutManager.sliceViewNames():
            interactor = layoutManager.sliceWidget(name).sliceView().interactor()
            self._clickDetectors[interactor] = ClickDetector()
            for event in ("LeftButtonPressEvent", "MouseMoveEvent", "LeftButtonReleaseEvent"):
                self.addObserver(interactor, event, self.onSliceViewMouse)

    def onSliceViewMouse(self, interactor, event) -> None:
        detector = self._clickDetectors.get(interactor)
        if detector is None:
            return
        xy = interactor.GetEventPosition()
        if event == "LeftButtonPressEvent":
            modified = interactor.GetShiftKey() or interactor.GetControlKey() or interactor.GetAltKey()
            detector.press(xy, time.monotonic(), bool(modified))
        elif event == "MouseMoveEvent":
            detector.move(xy)
        elif detector.release(xy, time.monotonic()) and self._clickSelects():
            ras = [0.0, 0.0, 0.0]
            crosshair = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLCrosshairNode")
            if crosshair is not None and crosshair.GetCursorPositionRAS(ras):
                lesionId = self.logic.lesionAt(ras)
                if lesionId is not None:
                    qt.QTimer.singleShot(0, lambda: self._select(lesionId))  # after the view finished its event

    def _clickSelects(self) -> bool:
        """Return True when a click should explain a lesion: option on, results present, plain view mode."""
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        plainMode = interaction is None or interaction.GetCurrentInteractionMode() == interaction.ViewTransform
        return bool(self._parameterNode and self._parameterNode.clickToExplain and self.logic.hasResults() and plainMode)


#
# LesionXAILogic
#


class LesionXAILogic(ScriptedLoadableModuleLogic):
    """Module logic: forwards to LesionXAILib.mrml.module_logic.ModuleLogic (Qt-free, tested headless).

    Usable from the Python console: ``logic = slicer.util.getModuleLogic("LesionXAI")``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._core = None

    def getParameterNode(self):
        return LesionXAIParameterNode(super().getParameterNode())

    def core(self):
        """Return the ModuleLogic of the current scene (imports LesionXAILib's engine on first use)."""
        if self._core is None or self._core.scene is not slicer.mrmlScene:
            from LesionXAILib.mrml.module_logic import ModuleLogic

            self._core = ModuleLogic(slicer.mrmlScene)
        return self._core

    # -- dependencies (first use, after asking; never at import time, never in testing mode) -------

    def requirementsPath(self) -> str:
        return os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")

    def installPlan(self):
        """Return what is missing (LesionXAILib.mrml.dependencies.InstallPlan)."""
        from LesionXAILib.mrml import dependencies

        requirements = dependencies.read_requirements(self.requirementsPath())
        return dependencies.install_plan(requirements, platform.system(), dependencies.nvidia_gpu_present())

    def dependenciesMissing(self) -> bool:
        return self.installPlan().needed

    def installDependencies(self, plan=None) -> None:
        """Install torch (pinned CPU build unless Linux + NVIDIA GPU) and the other requirements."""
        plan = plan or self.installPlan()
        if not plan.needed:
            return
        if slicer.app.testingEnabled():
            raise RuntimeError("LesionXAI's Python dependencies are missing; testing mode never installs them:\n" + plan.describe())
        if plan.torch_args:
            slicer.util.pip_install(plan.torch_args)
        if plan.requirements:
            try:
                import slicer.packaging as packaging  # Slicer >= 5.12
            except ImportError:
                packaging = None
            if packaging is not None and hasattr(packaging, "pip_ensure"):
                packaging.pip_ensure(plan.requirements, prompt_install=False, requester="LesionXAI")
            else:
                slicer.util.pip_install(plan.requirements)

    # -- processing (all delegated) ---------------------------------------------------------------

    def settingsFromParameterNode(self, parameterNode):
        from LesionXAILib.mrml.module_logic import settings_from_parameters

        p = parameterNode
        return settings_from_parameters(
            p.useModelThreshold, p.threshold, p.minSize, p.methodSmoothGrad, p.methodGradCamPP, p.samples, p.seed, p.maxRadius
        )

    def process(self, flairNode, mprageNode, groundTruthNode=None, modelPath="", settings=None, progress=None, cancel=None, trustModel=False):
        """Segment the inputs; every lesion becomes a segment and a table row. Returns the LesionSession."""
        from LesionXAILib.mrml.session import SessionSettings

        return self.core().run(flairNode, mprageNode, groundTruthNode, modelPath, settings or SessionSettings(), progress, cancel, trustModel)

    def processParameterNode(self, parameterNode, progress=None, cancel=None):
        p = parameterNode
        return self.process(p.flairVolume, p.mprageVolume, p.groundTruth, p.modelPath, self.settingsFromParameterNode(p), progress, cancel, p.trustModel)

    def session(self):
        return self.core().session

    def hasResults(self) -> bool:
        return self._core is not None and self._core.session is not None and self._core.session.result is not None

    def lesionAt(self, ras):
        return self.core().lesion_at(ras)

    def selectLesion(self, lesionId, overlay=None, progress=None, cancel=None):
        return self.core().select_lesion(lesionId, overlay, progress, cancel)

    def selectLesionAt(self, ras, overlay=None, progress=None, cancel=None):
        return self.core().select_at(ras, overlay, progress, cancel)

    def selectedLesion(self):
        return self._core.session.selected_id if self.hasResults() else None

    def resolveOverlay(self, overlay):
        return self.core().resolve_overlay(overlay)

    def setOverlay(self, overlay) -> None:
        self.core().set_overlay(overlay)

    def tableRows(self) -> list:
        return self.core().table_rows()

    def tableForDisplay(self):
        from LesionXAILib.mrml.module_logic import display_table

        return display_table(self.tableRows())

    def statisticsText(self, lesionId) -> str:
        from LesionXAILib.mrml.module_logic import statistics_text

        return statistics_text(self.core().require_session().lesion_statistics(lesionId))

    def legendText(self, overlay) -> str:
        from LesionXAILib.mrml.module_logic import legend_text

        return legend_text(self.core().legend(overlay))

    def clear(self) -> None:
        if self._core is not None:
            self._core.clear()


#
# LesionXAITest
#


class LesionXAITest(ScriptedLoadableModuleTest):
    """Runs inside Slicer with the same Logic paths and checks as Testing/test_mrml_phantom.py (headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_LesionXAI_EndToEnd()
        self.setUp()
        self.test_LesionXAI_ObliqueGeometry()

    def _requireDependencies(self):
        if LesionXAILogic().dependenciesMissing():
            self.skipTest("LesionXAI's Python dependencies are not installed (testing mode never installs them)")

    def test_LesionXAI_EndToEnd(self):
        self._requireDependencies()
        self.delayDisplay("LesionXAI: phantom, segmentation, lesion lookup, selection and cache")
        from LesionXAILib.mrml import selftest
        from LesionXAILib.mrml.views import ensure_slice_views

        ensure_slice_views(slicer.mrmlScene)
        case = selftest.load_phantom_case(slicer.mrmlScene)
        before = selftest.snapshot_inputs(case)
        logic = LesionXAILogic()
        session = logic.process(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS)
        selftest.check_run(session, case)
        selftest.check_lesion_at(session, case)
        lesionId = selftest.detected_lesion(session)
        hits = session.cache.hits
        first = logic.selectLesion(lesionId)
        second = logic.selectLesion(lesionId)
        selftest.check_selection(session, case, first, second, hits)
        selftest.check_inputs_unchanged(case, before)
        self.delayDisplay("LesionXAI end-to-end test passed")

    def test_LesionXAI_ObliqueGeometry(self):
        self._requireDependencies()
        self.delayDisplay("LesionXAI: oblique, anisotropic grid; selection by click position")
        from LesionXAILib.mrml import selftest
        from LesionXAILib.mrml.views import ensure_slice_views

        ensure_slice_views(slicer.mrmlScene)
        case = selftest.load_phantom_case(slicer.mrmlScene, oblique=True)
        before = selftest.snapshot_inputs(case)
        logic = LesionXAILogic()
        session = logic.process(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS)
        selftest.check_run(session, case)
        selftest.check_lesion_at(session, case)
        lesionId = selftest.detected_lesion(session)
        hits = session.cache.hits
        first = logic.selectLesionAt(selftest.click_point(session, lesionId))
        second = logic.selectLesion(first.lesion_id)
        selftest.check_selection(session, case, first, second, hits)
        selftest.check_inputs_unchanged(case, before)
        self.delayDisplay("LesionXAI oblique-geometry test passed")
