"""LesionXAI: the 3D Slicer scripted module (panel, parameter node, Logic, self-test).

Over 400 lines on purpose: Slicer's scripted-module convention puts the module, parameter-node, Widget,
Logic and Test classes in this one file, found by name (``<Module>Widget``, ``<Module>Logic``, ...). Only
Qt/Slicer glue lives here; everything else is LesionXAILib (the controller holding the scene's Session and
SceneWriter: ``LesionXAILib.slicer_app.controller``), tested headless.
"""

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

# Overlay names of LesionXAILib.session.overlays.OVERLAYS (kept literal here: this file must import without
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
            "<b>Find lesions</b>: every lesion becomes a segment and a table row (the work runs in the "
            "background; the button turns into <b>Cancel</b>). Then left-click a lesion in a slice view "
            "(press and release without dragging; drags keep doing what the current mouse mode does) or "
            "pick it in the table: its SmoothGrad and Grad-CAM++ maps and its perilesional-context probe "
            "are shown as overlays over the FLAIR, inside the lesion outlines, with its statistics. "
            "<b>Show context plot</b> adds the context curve to the view layout. "
            "<b>Counterfactual</b> searches the smallest smooth change that makes the model drop (or find) the selected "
            "lesion and shows the changed FLAIR with its log-Jacobian (blue shrinkage, red growth); with a "
            "<b>lesion library</b> built by the same model, the selected lesion's most similar library lesions are listed. "
            "Requires 3D Slicer 5.10 or later."
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
    fillLesions2D: bool = False  # lesions as outlines in 2D, so the map shows inside them
    libraryPath: Path  # lesion library for the similar-lesions panel; empty = none


#
# LesionXAIWidget
#


class LesionXAIWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin GUI: binds the .ui to the parameter node, runs long work through LesionXAILib.slicer_app.jobs, polled by a QTimer."""

    POLL_INTERVAL_MS = 100

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.jobs = None
        self.refusal = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._clickDetectors = {}
        self._updatingTable = False
        self._pollTimer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from LesionXAILib.mrml.compat import slicer_refusal

        self.refusal = slicer_refusal(slicer.app.applicationVersion)
        if self.refusal:  # below the minimum Slicer: say so in the panel, build nothing that would fail later
            label = qt.QLabel(self.refusal)
            label.wordWrap = True
            label.setStyleSheet("color: #c0392b; font-weight: bold")
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/LesionXAI.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = LesionXAILogic()
        from LesionXAILib.slicer_app.jobs import JobRunner

        self.jobs = JobRunner()
        self._pollTimer = qt.QTimer()
        self._pollTimer.setInterval(self.POLL_INTERVAL_MS)
        self._pollTimer.connect("timeout()", self.onPoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.explainButton.connect("clicked(bool)", self.onExplainButton)
        self.ui.overlayComboBox.connect("currentIndexChanged(int)", self.onOverlayChanged)
        self.ui.fillLesionsCheckBox.connect("toggled(bool)", self.onFillLesionsToggled)
        self.ui.showPlotButton.connect("clicked(bool)", self.onShowPlot)
        self.ui.lesionTable.connect("cellClicked(int,int)", self.onTableClicked)
        self.ui.counterfactualButton.connect("clicked(bool)", self.onCounterfactualButton)
        self.ui.libraryPathLineEdit.connect("currentPathChanged(QString)", self.onLibraryChanged)
        self._installClickObservers()
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:  # slice views of a new layout appear after setup: observe them too
            layoutManager.connect("layoutChanged(int)", self._installClickObservers)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self.jobs is not None:
            self.jobs.cancel()
        if self._pollTimer is not None:
            self._pollTimer.stop()
        self.removeObservers()

    def enter(self) -> None:
        if not self.refusal:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        if self.jobs is not None and self.jobs.busy:
            self.jobs.cancel()
            self.jobs.wait(timeout=60)  # its result must not land in the next scene
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
        busy = bool(self.jobs and self.jobs.busy)
        ready = bool(p and p.flairVolume and p.mprageVolume and p.flairVolume != p.mprageVolume)
        # while a job runs, the only control that acts is Cancel: nothing may start a second computation
        self.ui.applyButton.enabled = ready or busy
        self.ui.applyButton.text = _("Cancel") if busy else _("Find lesions")
        self.ui.applyButton.toolTip = (
            _("Stop the computation in progress") if busy
            else _("Segment the lesions") if ready else _("Select a FLAIR and a different MPRAGE volume")
        )  # fmt: skip
        for name in ("inputsCollapsibleButton", "settingsCollapsibleButton", "lesionTable", "explainButton",
                     "overlayComboBox", "selectedLesionSpinBox", "showPlotButton", "libraryPathLineEdit"):  # fmt: skip
            getattr(self.ui, name).enabled = not busy
        self.ui.thresholdSliderWidget.enabled = bool(p and not p.useModelThreshold) and not busy
        hasResults = self.logic.hasResults()
        self.ui.explainButton.enabled = hasResults and not busy
        self.ui.showPlotButton.enabled = hasResults and self.logic.core().selected_lesion() is not None and not busy
        self.ui.counterfactualButton.enabled = hasResults and bool(p and p.selectedLesion) and not busy
        self.ui.progressBar.visible = busy

    # -- actions ------------------------------------------------------------------------------

    def _ensureDependencies(self) -> bool:
        """Ask once, then install what LesionXAI needs (torch through the PyTorch extension when present)."""
        steps = self.logic.installSteps()
        if not steps:
            return True
        from LesionXAILib.install.dependencies import describe_steps

        question = _("LesionXAI needs these Python packages (installed once, a few minutes):") + "\n\n" + describe_steps(steps)
        if not slicer.util.confirmOkCancelDisplay(question, windowTitle=_("LesionXAI - install dependencies")):
            return False
        dialog = slicer.util.createProgressDialog(windowTitle=_("LesionXAI - installing"), labelText="", maximum=len(steps))

        def progress(done: int, label: str) -> None:
            dialog.value = done
            dialog.labelText = label
            slicer.app.processEvents()

        try:
            with slicer.util.tryWithErrorDisplay(_("Installing LesionXAI's dependencies failed."), waitCursor=True):
                self.logic.installDependencies(steps, progress)
                return True
        finally:
            dialog.close()
        return False

    def _startJob(self, name: str, compute, apply, message: str) -> None:
        """Run ``compute`` on the worker; ``apply`` its result when the timer's poll sees it finished."""
        from LesionXAILib.slicer_app.jobs import Busy

        def failed(exc) -> None:
            slicer.util.errorDisplay(_("LesionXAI: {name} failed: {error}").format(name=name, error=exc))
            self.ui.statusLabel.text = str(exc)

        def cancelled() -> None:
            self.ui.statusLabel.text = _("Cancelled.")

        try:
            self.jobs.submit(name, compute, apply=apply, on_error=failed, on_cancelled=cancelled)
        except Busy as exc:
            self.ui.statusLabel.text = str(exc)
            return
        self.ui.statusLabel.text = message
        self.ui.progressBar.value = 0
        self._updateButtons()
        self._pollTimer.start()

    def onPoll(self) -> None:
        """Timer slot (main thread): show progress; when the job finished, its outcome is applied inside poll()."""
        status = self.jobs.poll()
        if status is None or status.finished:
            self._pollTimer.stop()
            self._updateButtons()
            return
        self.ui.progressBar.value = int(100 * status.fraction)
        if status.message:
            self.ui.statusLabel.text = status.message

    def onApplyButton(self) -> None:
        if self.jobs.busy:  # the button reads "Cancel" while a job runs
            self.jobs.cancel()
            return
        if not self._ensureDependencies():
            return
        plan = None
        with slicer.util.tryWithErrorDisplay(_("LesionXAI could not read the inputs."), waitCursor=True):
            plan = self.logic.prepareRun(self._parameterNode)
        if plan is None:
            return

        def apply(result) -> None:
            writer = self.logic.core().finish_run(plan, result)
            self.ui.statusLabel.text = _("{n} lesions: click one in a slice view, or in the table.").format(n=len(writer.session.instance_ids))
            self._fillTable(self.logic.core().table())
            # a library of another model is refused now, in the panel, rather than at the first lesion
            self.ui.similarLabel.text = self.logic.core().set_library(self._parameterNode.libraryPath)

        self._startJob(_("Finding lesions"), plan.compute, apply, _("Finding lesions…"))

    def onExplainButton(self) -> None:
        self._select(self._parameterNode.selectedLesion)

    def onTableClicked(self, row: int, column: int) -> None:
        if not self._updatingTable:
            self._select(int(self.ui.lesionTable.item(row, 0).text()))

    def onOverlayChanged(self, index: int) -> None:
        # read the combo box itself: this slot may run before the parameter node has been updated; on module
        # entry the GUI binding refills the combo (index 0 first): combo_overlay() says when there is nothing to do
        name = OVERLAY_CHOICES[index] if 0 <= index < len(OVERLAY_CHOICES) else None
        overlay = self.logic.core().combo_overlay(name) if self.logic is not None and self.logic.hasResults() else None
        if overlay is None:
            return
        with slicer.util.tryWithErrorDisplay(_("This overlay is not available."), waitCursor=False):
            self.ui.legendLabel.text = self.logic.core().set_overlay(overlay)

    def onFillLesionsToggled(self, fill: bool) -> None:
        self.logic.core().set_lesion_fill(bool(fill))

    def onShowPlot(self) -> None:
        """Show the context curve in a plot view: only when asked, because it changes the user's layout."""
        writer = self.logic.core().writer if self.logic.hasResults() else None
        if writer is not None and writer.chart_node is not None:
            slicer.modules.plots.logic().ShowChartInLayout(writer.chart_node)

    def _select(self, lesionId: int) -> None:
        if not lesionId or not self.logic.hasResults() or self.jobs.busy:
            return
        plan = None
        with slicer.util.tryWithErrorDisplay(_("LesionXAI could not explain this lesion."), waitCursor=False):
            plan = self.logic.core().prepare_lesion(lesionId, self._parameterNode.overlay)
        if plan is None:
            return

        def apply(result) -> None:
            panel = self.logic.core().finish_lesion(plan, result)  # shows it and returns all the panel needs
            self._parameterNode.selectedLesion = panel.lesion_id
            self._parameterNode.overlay = panel.overlay
            self.ui.statisticsLabel.text = panel.statistics_text
            self.ui.legendLabel.text = panel.legend_text
            self._fillTable(panel.table)
            self._fillSimilar(panel.similar)

        self._startJob(_("Explaining lesion {id}").format(id=lesionId), plan.compute, apply,
                       _("Explaining lesion {id}…").format(id=lesionId))  # fmt: skip

    def onCounterfactualButton(self) -> None:
        if not self.logic.hasResults() or self.jobs.busy:
            return
        plan = None
        with slicer.util.tryWithErrorDisplay(_("LesionXAI could not compute this counterfactual."), waitCursor=False):
            plan = self.logic.core().prepare_counterfactual(self._parameterNode.selectedLesion)
        if plan is None:
            return

        def apply(view) -> None:
            panel = self.logic.core().finish_counterfactual(plan, view)  # shows it and returns all the panel needs
            self.ui.counterfactualLabel.text = panel.text
            self.ui.legendLabel.text = panel.legend_text

        self._startJob(_("Counterfactual of lesion {id}").format(id=plan.lesion_id), plan.compute, apply,
                       _("Searching the counterfactual of lesion {id}…").format(id=plan.lesion_id))  # fmt: skip

    def onLibraryChanged(self, path: str) -> None:
        self.ui.similarLabel.text = self.logic.core().set_library(path)

    def _fillSimilar(self, panel) -> None:
        """Show a similar-lesions panel: its message and one row per neighbour with its crop thumbnail."""
        table = self.ui.similarTable
        table.clear()
        table.setRowCount(0)
        if panel is None:
            return
        self.ui.similarLabel.text = panel.message
        columns = [_("Crop"), _("Distance"), _("Status"), _("Subject"), _("Lesion")]
        table.setColumnCount(len(columns))
        table.setHorizontalHeaderLabels(columns)
        table.setRowCount(len(panel.rows))
        for r, row in enumerate(panel.rows):
            pixmap = qt.QPixmap()
            pixmap.loadFromData(qt.QByteArray(row.thumbnail_png), "PNG")
            crop = qt.QTableWidgetItem()
            crop.setData(qt.Qt.DecorationRole, pixmap)
            table.setItem(r, 0, crop)
            for c, value in enumerate((f"{row.distance:.3f}", row.status, row.subject, str(row.lesion_id)), start=1):
                table.setItem(r, c, qt.QTableWidgetItem(value))
        table.resizeColumnsToContents()
        table.resizeRowsToContents()

    def _fillTable(self, table) -> None:
        """Show (column titles, cell texts) in the table widget (a read-only copy of the table node)."""
        columns, rows = table
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
    # LesionXAILib.session.clicks.ClickDetector (tested headless); observers here only feed it events and
    # never abort them, so drags and every other mouse mode keep working. They observe
    # with a high priority, so they see each event before a displayable manager can claim it.

    CLICK_OBSERVER_PRIORITY = 10.0

    def _installClickObservers(self, *args) -> None:
        """Observe every slice view's interactor not observed yet (called at setup and on every layout change)."""
        layoutManager = slicer.app.layoutManager()
        if layoutManager is None:  # no main window (e.g. --no-main-window tests)
            return
        from LesionXAILib.session.clicks import ClickDetector

        for name in layoutManager.sliceViewNames():
            widget = layoutManager.sliceWidget(name)
            if widget is None:
                continue
            interactor = widget.sliceView().interactor()
            if interactor in self._clickDetectors:
                continue
            self._clickDetectors[interactor] = ClickDetector()
            for event in ("LeftButtonPressEvent", "MouseMoveEvent", "LeftButtonReleaseEvent"):
                self.addObserver(interactor, event, self.onSliceViewMouse, priority=self.CLICK_OBSERVER_PRIORITY)

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
                lesionId = self.logic.core().lesion_at(ras)
                if lesionId is not None:
                    qt.QTimer.singleShot(0, lambda: self._select(lesionId))  # after the view finished its event

    def _clickSelects(self) -> bool:
        """Return True when a click should explain a lesion: option on, results present, idle, plain view mode."""
        interaction = slicer.app.applicationLogic().GetInteractionNode()
        plainMode = interaction is None or interaction.GetCurrentInteractionMode() == interaction.ViewTransform
        idle = self.jobs is not None and not self.jobs.busy
        return bool(self._parameterNode and self._parameterNode.clickToExplain and self.logic.hasResults() and plainMode and idle)


#
# LesionXAILogic
#


class LesionXAILogic(ScriptedLoadableModuleLogic):
    """Module logic: the parameter node, first-use installation, and the scene's controller (Qt-free, tested headless).

    ``core()`` is a :class:`LesionXAILib.slicer_app.controller.ModuleController` holding the scene's Session and
    the SceneWriter that shows it. From the Python console: ``core = slicer.util.getModuleLogic("LesionXAI").core()``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._core = None

    def getParameterNode(self):
        return LesionXAIParameterNode(super().getParameterNode())

    def core(self):
        """Return the ModuleController of the current scene (imports LesionXAILib's engine on first use)."""
        if self._core is None or self._core.scene is not slicer.mrmlScene:
            from LesionXAILib.slicer_app.controller import ModuleController

            self._core = ModuleController(slicer.mrmlScene)
        return self._core

    # -- dependencies (first use, after asking; never at import time, never in testing mode) -------

    def requirementsPath(self) -> str:
        return os.path.join(os.path.dirname(__file__), "Resources", "requirements.txt")

    def installPlan(self):
        """Return what is missing (LesionXAILib.install.dependencies.InstallPlan)."""
        from LesionXAILib.install import dependencies

        requirements = dependencies.read_requirements(self.requirementsPath())
        return dependencies.install_plan(requirements, platform.system(), dependencies.nvidia_gpu_present())

    def dependenciesMissing(self) -> bool:
        return self.installPlan().needed

    @staticmethod
    def pyTorchUtilsAvailable() -> bool:
        """Return True if the PyTorch extension (its PyTorchUtils module) is installed."""
        return hasattr(slicer.modules, "pytorchutils")

    def installSteps(self, plan=None) -> list:
        """Return the install steps for what is missing (raises InstallRefused in testing mode)."""
        from LesionXAILib.install import dependencies

        plan = plan or self.installPlan()
        return dependencies.install_steps(plan, self.pyTorchUtilsAvailable(), slicer.app.testingEnabled())

    def installDependencies(self, steps=None, progress=None) -> None:
        """Run the install steps (torch through PyTorchUtils when present, else pip); ``progress(done, label)`` before each."""
        steps = self.installSteps() if steps is None else steps
        if steps and slicer.app.testingEnabled():
            raise RuntimeError("LesionXAI's Python dependencies are missing; testing mode never installs them")
        for done, step in enumerate(steps):
            if progress is not None:
                progress(done, step.label)
            if step.kind == "pytorch_utils":
                import PyTorchUtils

                torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=step.args[0])
                if torch is None:
                    raise RuntimeError("the PyTorch extension did not install PyTorch")
            elif step.kind == "pip_torch":
                slicer.util.pip_install(list(step.args))
            else:
                try:
                    import slicer.packaging as packaging  # Slicer >= 5.12
                except ImportError:
                    packaging = None
                if packaging is not None and hasattr(packaging, "pip_ensure"):
                    packaging.pip_ensure(list(step.args), prompt_install=False, requester="LesionXAI")
                else:
                    slicer.util.pip_install(list(step.args))
        if progress is not None and steps:
            progress(len(steps), "done")

    # -- processing: the controller holds the scene's Session and SceneWriter -----------------------

    def settingsFromParameterNode(self, parameterNode):
        from LesionXAILib.slicer_app.controller import settings_from_parameters

        p = parameterNode
        return settings_from_parameters(
            p.useModelThreshold, p.threshold, p.minSize, p.methodSmoothGrad, p.methodGradCamPP, p.samples, p.seed, p.maxRadius
        )

    def process(self, flairNode, mprageNode, groundTruthNode=None, modelPath="", settings=None, progress=None, cancel=None, trustModel=False):
        """Segment the inputs; every lesion becomes a segment and a table row. Returns the SceneWriter (its ``session`` holds the results)."""
        from LesionXAILib.session.settings import SessionSettings

        return self.core().run(flairNode, mprageNode, groundTruthNode, modelPath, settings or SessionSettings(), progress, cancel, trustModel)

    def prepareRun(self, parameterNode):
        """Read the inputs for Find lesions (main thread); return a RunPlan whose compute() runs on the worker."""
        p = parameterNode
        return self.core().prepare_run(p.flairVolume, p.mprageVolume, p.groundTruth, p.modelPath, self.settingsFromParameterNode(p), p.trustModel)

    def hasResults(self) -> bool:
        """Return True once lesions were found (without importing the engine before that)."""
        return self._core is not None and self._core.has_results()

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
        """Run every test; a test whose dependencies are missing is reported as skipped (Reload and Test included)."""
        import unittest

        self.skipped = []
        for test in (self.test_LesionXAI_WidgetSmoke, self.test_LesionXAI_EndToEnd, self.test_LesionXAI_ObliqueGeometry):
            self.setUp()
            try:
                test()
            except unittest.SkipTest as skip:
                # Reload and Test calls runTest() directly and would report an escaping SkipTest as a failure
                self.skipped.append((test.__name__, str(skip)))
                self.delayDisplay(f"{test.__name__} skipped: {skip}")
        if self.skipped:
            self.delayDisplay(f"LesionXAI: {len(self.skipped)} test(s) skipped (see above), the others passed")

    def _requireDependencies(self):
        if LesionXAILogic().dependenciesMissing():
            self.skipTest("LesionXAI's Python dependencies are not installed (testing mode never installs them)")

    def test_LesionXAI_WidgetSmoke(self):
        """The panel without the engine's dependencies (no torch): version check, combo refill, a job through the timer."""
        import threading

        from LesionXAILib.mrml.compat import slicer_refusal

        self.delayDisplay("LesionXAI: module panel, combo refill and a background job")
        self.assertIsNone(slicer_refusal(slicer.app.applicationVersion))
        widget = slicer.modules.lesionxai.widgetRepresentation().self()
        self.assertIsNone(widget.refusal)
        self.assertEqual(widget.ui.applyButton.text, "Find lesions")
        # what Slicer's GUI binding does on every module entry: clear and refill the combo (index 0 first)
        combo = widget.ui.overlayComboBox
        items = [combo.itemText(i) for i in range(combo.count)]
        combo.clear()
        combo.addItems(items)
        widget.onOverlayChanged(0)
        widget.enter()
        self.assertIsNone(widget.jobs.poll())
        release, results = threading.Event(), []

        def compute(progress, cancel):
            release.wait(10)
            progress(0.5, "half way")
            return 42

        widget._startJob("smoke test", compute, results.append, "smoke test")
        self.assertEqual(widget.ui.applyButton.text, "Cancel")
        self.assertFalse(widget.ui.lesionTable.enabled or widget.ui.explainButton.enabled)
        release.set()
        deadline = time.monotonic() + 20
        while widget.jobs.busy and time.monotonic() < deadline:
            slicer.app.processEvents()  # the GUI keeps running; the timer's poll applies the result
            time.sleep(0.02)
        self.assertEqual(results, [42])
        self.assertEqual(widget.ui.applyButton.text, "Find lesions")
        self.assertTrue(widget.ui.lesionTable.enabled)

    def test_LesionXAI_EndToEnd(self):
        self._requireDependencies()
        self.delayDisplay("LesionXAI: phantom, segmentation, lesion lookup, selection and cache")
        from LesionXAILib.slicer_app import selftest
        from LesionXAILib.mrml.views import ensure_slice_views

        ensure_slice_views(slicer.mrmlScene)
        case = selftest.load_phantom_case(slicer.mrmlScene)
        before = selftest.snapshot_inputs(case)
        logic = LesionXAILogic()
        writer = logic.process(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS)
        selftest.check_run(writer, case)
        selftest.check_lesion_at(writer, case)
        lesionId = selftest.detected_lesion(writer)
        hits = writer.session.cache.hits
        first = logic.core().select_lesion(lesionId)
        second = logic.core().select_lesion(lesionId)
        selftest.check_selection(writer, case, first, second, hits)
        selftest.check_inputs_unchanged(case, before)
        self.delayDisplay("LesionXAI end-to-end test passed")

    def test_LesionXAI_ObliqueGeometry(self):
        self._requireDependencies()
        self.delayDisplay("LesionXAI: oblique, anisotropic grid; selection by click position")
        from LesionXAILib.slicer_app import selftest
        from LesionXAILib.mrml.views import ensure_slice_views

        ensure_slice_views(slicer.mrmlScene)
        case = selftest.load_phantom_case(slicer.mrmlScene, oblique=True)
        before = selftest.snapshot_inputs(case)
        logic = LesionXAILogic()
        writer = logic.process(case.flair, case.t1, case.ground_truth, "", selftest.SELFTEST_SETTINGS)
        selftest.check_run(writer, case)
        selftest.check_lesion_at(writer, case)
        lesionId = selftest.detected_lesion(writer)
        hits = writer.session.cache.hits
        first = logic.core().select_at(selftest.click_point(writer, lesionId))
        second = logic.core().select_lesion(first.lesion_id)
        selftest.check_selection(writer, case, first, second, hits)
        selftest.check_inputs_unchanged(case, before)
        self.delayDisplay("LesionXAI oblique-geometry test passed")
