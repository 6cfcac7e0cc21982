"""SceneWriter: puts a :class:`~LesionXAILib.session.Session`'s results into an MRML scene, one lesion at a time.

``run`` reads the input nodes (:class:`~LesionXAILib.mrml.scene_inputs.SceneInputs`), has the session
segment them and adds (in a subject-hierarchy folder) a segmentation node with one segment per instance,
the instance label map, the probability map and the instance table. ``select_lesion(id)`` =
``show_lesion(session.compute_lesion(id))``: the computation is the session's (a worker thread may run
it); ``show_lesion`` (main thread) writes only the overlay being shown into its volume node (the others
when first shown or asked for), the context curve into a table and chart, and sets every slice
composite node (background FLAIR, foreground the chosen overlay, label the lesions) keeping the
foreground opacity the user chose. Nothing here computes; nothing in the session touches the scene.

``show_counterfactual`` puts a lesion's counterfactual FLAIR (background) and log-Jacobian (overlay) into
nodes of their own; ``show_similar`` fills the similar-lesions table node.

Input nodes are only read: their voxels, geometry, display and references are never changed.

Over 400 lines on purpose: one class owns every output node of a session and the slice views' layers, which
each show (lesion, overlay, counterfactual) rearranges; the node-writing helpers live beside it
(``overlay_nodes``, ``panel_nodes``, ``tables``, ``views``, ``segments``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from LesionXAILib.errors import InputImageError, ParameterError
from LesionXAILib.mrml import colors, hierarchy, panel_nodes, segments, tables, views
from LesionXAILib.mrml import overlay_nodes as nodes
from LesionXAILib.mrml.scene_inputs import SceneInputs
from LesionXAILib.mrml.volumes import ensure_display_node, update_volume_node, volume_node_from_array
from LesionXAILib.session.core import Session
from LesionXAILib.session.overlays import OVERLAYS, SHELLS_OVERLAY
from LesionXAILib.session.results import LesionResult, lesion_name
from LesionXAILib.session.settings import RunInputs, SessionSettings


@dataclass(frozen=True)
class DisplaySettings:
    """How the writer draws into the views (never part of the cache key: nothing computed depends on it).

    ``view_legends``: colour-legend display nodes inside the slice views (Slicer's module keeps them; a
    front end drawing its own colour bar from ``legend()`` turns them off). ``segmentation_in_slices``:
    draw the segmentation node in the 2D views as well as the instance label layer (both show the same
    lesions; the label layer alone halves the lesion drawing per slice render). ``foreground_opacity``:
    initial overlay opacity (``set_overlay_opacity`` changes it). ``lesion_fill_2d``: lesions drawn filled
    in the 2D views; off (the default) they are outlines, so the explanation map shows *inside* each
    lesion, where the attribution the paper reports lives. ``dimmed_opacity_3d``: 3D opacity of the
    lesions other than the selected one (which stays opaque, so it stands out).
    """

    view_legends: bool = True
    segmentation_in_slices: bool = True
    foreground_opacity: float = views.FOREGROUND_OPACITY
    lesion_fill_2d: bool = False
    dimmed_opacity_3d: float = 0.25

    def __post_init__(self) -> None:
        _check_opacity(self.foreground_opacity)
        _check_opacity(self.dimmed_opacity_3d)


def _check_opacity(opacity: float) -> float:
    value = float(opacity)
    if not 0.0 <= value <= 1.0:
        raise ParameterError(f"overlay opacity must be in [0, 1], got {opacity}")
    return value


class SceneWriter:
    """Shows ``session``'s segmentation and lesions in the scene of ``inputs`` (see the module docstring)."""

    def __init__(self, session: Session, inputs: SceneInputs, name: Optional[str] = None, display: Optional[DisplaySettings] = None) -> None:
        if not isinstance(session, Session):
            raise ParameterError(f"session must be a Session, got {type(session).__name__}")
        display = DisplaySettings() if display is None else display
        if not isinstance(display, DisplaySettings):
            raise ParameterError(f"display must be DisplaySettings, got {type(display).__name__}")
        self.session = session
        self.inputs = inputs
        self.scene = inputs.scene
        self.display = display
        self.name = name or f"LesionXAI {inputs.flair.GetName()}"
        self._opacity = float(display.foreground_opacity)
        self._out = nodes.Outputs()
        self._segment_ids: dict[int, str] = {}
        self.selected_id: Optional[int] = None
        self.overlay: str = OVERLAYS[0]
        self._shown: Optional[LesionResult] = None  # the result behind the selection
        self._written: dict[str, tuple] = {}  # overlay (or curve) -> (key, lesion id) its node holds
        # counts of volume-node writes by overlay name (tests assert what a show writes)
        self.writes: dict[str, int] = {}
        self.counterfactual_id: Optional[int] = None  # the lesion whose counterfactual is on show (None: none)
        self._log_jacobian_window = panel_nodes.MIN_LOG_JACOBIAN_WINDOW

    @classmethod
    def for_nodes(
        cls,
        scene: Any,
        flair_node: Any,
        t1_node: Any,
        model: Any = None,
        settings: SessionSettings = SessionSettings(),
        ground_truth_node: Any = None,
        cache: Any = None,
        name: Optional[str] = None,
        display: Optional[DisplaySettings] = None,
        trust_model: bool = False,
    ) -> "SceneWriter":
        """Return a writer of a new Session on these input nodes (checked: scalar volumes of ``scene``, distinct)."""
        inputs = SceneInputs(scene, flair_node, t1_node, ground_truth_node)
        return cls(Session(model, settings, cache, trust_model), inputs, name, display)

    @property
    def flair_node(self) -> Any:
        """Return the FLAIR input node (the slice views' background)."""
        return self.inputs.flair

    # ------------------------------------------------------------------ segmentation
    def inputs_changed(self) -> bool:
        """Return True if an input node's voxels or geometry changed since the last run (main thread: reads MRML)."""
        stamps = self.session.input_stamps
        return stamps is not None and stamps != self.inputs.stamps()

    def prepare_run(self, settings: Optional[SessionSettings] = None) -> RunInputs:
        """Read what a run segments from the input nodes (main thread; the scene is not changed).

        ``settings`` (default: the session's) become the session's settings when the run is applied.
        """
        return self.inputs.read(self.session.settings if settings is None else settings)

    def apply_run(self, inputs: RunInputs, result: Any) -> None:
        """Make ``result`` the session's segmentation and show it in the scene (main thread)."""
        if inputs.stamps != self.inputs.stamps():
            raise InputImageError("an input volume changed while the lesions were being found; find them again")
        self.session.apply_run(inputs, result)
        self.selected_id = None
        self.counterfactual_id = None
        self._shown = None
        self._written.clear()
        self._write_segmentation(result)

    def run(self, progress: Any = None, cancel: Any = None) -> Any:
        """Segment the inputs and show the instances (segments, label map, probability, table); return the SegmentationResult."""
        from LesionXAILib.progress import as_reporter

        reporter = as_reporter(progress, cancel)
        reporter(0.0, "reading the input volumes")
        inputs = self.prepare_run()
        result = self.session.compute_run(inputs, reporter.sub(0.0, 0.9))
        reporter(0.9, "adding segments and table to the scene")
        self.apply_run(inputs, result)
        reporter(1.0, f"{len(result.instances.ids)} lesions")
        return result

    def _write_segmentation(self, result: Any) -> None:
        scene, out = self.scene, self._out
        if not out.folder or hierarchy.subject_hierarchy(scene).GetItemName(out.folder) is None:
            out.folder = hierarchy.create_folder(scene, self.name)
        names = {r.id: lesion_name(r) for r in result.instances.instances}
        out.lesion_colors = colors.lesion_colors(scene, f"{self.name} lesion colours", names)
        out.labels = segments.instance_labels_node(scene, result.instances, f"{self.name} lesion labels", out.labels)
        out.labels.GetDisplayNode().SetAndObserveColorNodeID(out.lesion_colors.GetID())
        if out.segmentation is None:
            segments.ensure_surface_rule()  # before the node exists: a segmentation copies the rules it is made with
            out.segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{self.name} lesions")
            out.segmentation.CreateDefaultDisplayNodes()
        self._segment_ids = segments.fill_segmentation(out.segmentation, out.labels, result.instances)
        if out.probability is None:
            out.probability = volume_node_from_array(scene, result.probability, result.geometry, f"{self.name} probability")
        else:
            update_volume_node(out.probability, result.probability, result.geometry)
        display = ensure_display_node(out.probability)
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.SetAndObserveColorNodeID(colors.sequential_colors(scene).GetID())
        if out.table is None:
            out.table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.name} lesion table")
        tables.fill_instance_table(out.table, self.session.table_rows())
        for node in (out.labels, out.segmentation, out.probability, out.table):
            hierarchy.place_in_folder(scene, node, out.folder)
        out.segmentation.GetDisplayNode().SetVisibility2D(bool(self.display.segmentation_in_slices))
        self._apply_lesion_style()
        for node in list(out.overlays.values()) + [out.shells]:  # maps of a previous run's lesion are stale now
            if node is not None:
                node.SetAttribute(nodes.LESION_ATTRIBUTE, "")
        views.set_layers(scene, self.flair_node, None, out.labels, self._opacity)

    def segment_id(self, lesion_id: int) -> str:
        """Return the segment id of a lesion in the segmentation node."""
        self.session.check_current().instances.get(lesion_id)
        return self._segment_ids[int(lesion_id)]

    # ------------------------------------------------------------------ one lesion
    def select_lesion(self, lesion_id: int, overlay: Optional[str] = None, progress: Any = None, cancel: Any = None) -> LesionResult:
        """Compute (or take from the cache) and show one lesion (overlay None: the default); return its result."""
        if self.inputs_changed():
            raise InputImageError("an input volume changed since run(); call run() again")
        overlay = self.session.check_overlay(overlay or self.session.default_overlay())
        result = self.session.compute_lesion(lesion_id, progress, cancel)
        self.show_lesion(result, overlay)
        return result

    def show_lesion(self, result: LesionResult, overlay: Optional[str] = None) -> None:
        """Show a computed lesion (main thread): the chosen overlay, curve table + chart, table row, slice layers, jump.

        Only the overlay shown is written into its volume node; the others are written when first shown
        (``set_overlay``) or asked for (``overlay_node``). A partial result (``complete=False``) whose
        stages do not hold the overlay yet shows the lesion without a foreground layer.
        """
        session = self.session
        session.check_current()
        overlay = overlay or session.default_overlay()
        session.check_result(result)
        if self.inputs_changed():
            raise InputImageError("an input volume changed since run(); call run() again")
        overlay = session.check_overlay(overlay, result if result.complete else None)
        out = self._out
        lesion_id = int(result.lesion_id)
        same_lesion = self._shown is not None and (self._shown.key, self._shown.lesion_id) == (result.key, lesion_id)
        self._shown = result
        self.selected_id = lesion_id
        self.overlay = overlay
        if result.curve is not None and self._written.get("curve") != (result.key, lesion_id):
            nodes.write_curve(self.scene, out, self.name, result.curve, lesion_id)
            self._written["curve"] = (result.key, lesion_id)
        tables.update_instance_row(out.table, result.statistics)
        self._show_overlay(overlay)
        if not same_lesion:  # a later stage of the lesion on show keeps the user's scrolling
            views.jump_slices_to(self.scene, result.centroid_ras)
        if self._segment_ids.get(lesion_id):
            out.segmentation.GetDisplayNode().SetSegmentVisibility(self._segment_ids[lesion_id], True)
        self._apply_lesion_style()

    def set_overlay(self, overlay: str) -> None:
        """Switch the foreground layer to another overlay of the selected lesion (written now if not yet)."""
        if self.selected_id is None:
            raise ParameterError("no lesion selected: call select_lesion(id) first")
        self.overlay = self.session.check_overlay(overlay)
        self._show_overlay(self.overlay)

    def overlay_node(self, overlay: str) -> Any:
        """Return the volume node of an overlay of the selected lesion (a labelmap for the context shells).

        The node is written from the selected lesion's result if it does not hold that overlay yet.
        """
        overlay = self.session.check_overlay(overlay)
        shown = self._shown
        if self.selected_id is None or shown is None or not shown.has_overlay(overlay):
            raise ParameterError(f"overlay '{overlay}' is not available: select a lesion first")
        return self._ensure_overlay(overlay, shown)

    def legend(self, overlay: str) -> dict:
        """Return the colour bar of an overlay: colormap name, min/max, units, (value, rgb) samples."""
        return nodes.legend_description(overlay, self.overlay_node(overlay), self._out.shell_radii)

    def _ensure_overlay(self, overlay: str, result: LesionResult) -> Any:
        """Return the overlay's node holding ``result``'s map (or shells), writing it only if it holds another."""
        geometry = self.session.result.geometry
        lesion_id = int(result.lesion_id)
        node = self._out.shells if overlay == SHELLS_OVERLAY else self._out.overlays.get(overlay)
        fresh = node is None or node.GetScene() is None or node.GetAttribute(nodes.LESION_ATTRIBUTE) != str(lesion_id)
        if fresh or self._written.get(overlay) != (result.key, lesion_id):
            if overlay == SHELLS_OVERLAY:
                node = nodes.write_shells(self.scene, self._out, self.name, result.curve, lesion_id, geometry)
            else:
                node = nodes.write_overlay(self.scene, self._out, self.name, overlay, result.maps[overlay], lesion_id, geometry)
            self._written[overlay] = (result.key, lesion_id)
            self.writes[overlay] = self.writes.get(overlay, 0) + 1
        return node

    def _show_overlay(self, overlay: str) -> None:
        self.counterfactual_id = None  # the explanation layers replace a counterfactual on show
        shown = self._shown
        if shown is None or not shown.has_overlay(overlay):  # a stage that does not hold it yet
            views.set_layers(self.scene, self.flair_node, None, self._out.labels, self._opacity)
            nodes.hide_legends(self._out)
            return
        node = self._ensure_overlay(overlay, shown)
        views.set_layers(self.scene, self.flair_node, node, self._out.labels, self._opacity)
        if self.display.view_legends:
            nodes.show_legend(self.scene, self._out, overlay, node)

    # ------------------------------------------------------------------ counterfactual and similar lesions
    def show_counterfactual(self, view: Any) -> None:
        """Show a lesion's counterfactual (a session.counterfactual.CounterfactualView; main thread).

        The counterfactual FLAIR (a node of its own) becomes the slice views' background and its
        log-Jacobian map (diverging colours: shrinkage < 0 < growth) the foreground, over the lesion
        outlines of the original segmentation; ``show_lesion`` / ``set_overlay`` bring the FLAIR back.
        """
        session = self.session
        session.check_current()
        if view.key != session.key:
            raise ParameterError(f"the counterfactual of lesion {view.lesion_id} was computed for other inputs or settings; compute it again")
        if self.inputs_changed():
            raise InputImageError("an input volume changed since run(); call run() again")
        geometry, out, lesion_id = session.result.geometry, self._out, int(view.lesion_id)
        out.counterfactual_flair = panel_nodes.write_volume(
            self.scene, out.counterfactual_flair, out.folder, view.flair, geometry, f"{self.name} counterfactual FLAIR", lesion_id, "flair"
        )  # fmt: skip
        panel_nodes.style_like(out.counterfactual_flair, self.flair_node)
        out.log_jacobian = panel_nodes.write_volume(
            self.scene, out.log_jacobian, out.folder, view.log_jacobian, geometry, f"{self.name} counterfactual log-Jacobian",
            lesion_id, "log_jacobian",
        )  # fmt: skip
        self._log_jacobian_window = panel_nodes.log_jacobian_window(view.log_jacobian)
        panel_nodes.style_log_jacobian(self.scene, out.log_jacobian, self._log_jacobian_window)
        views.set_layers(self.scene, out.counterfactual_flair, out.log_jacobian, out.labels, self._opacity)
        nodes.hide_legends(out)
        views.jump_slices_to(self.scene, view.counterfactual.instance.centroid_ras)
        self.counterfactual_id = lesion_id

    def counterfactual_legend(self) -> dict:
        """Return the colour bar of the log-Jacobian overlay on show."""
        if self.counterfactual_id is None:
            raise ParameterError("no counterfactual on show: compute one first")
        return panel_nodes.log_jacobian_legend(self._log_jacobian_window)

    @property
    def counterfactual_flair_node(self) -> Any:
        """Return the counterfactual FLAIR node (None before a counterfactual was shown)."""
        return self._out.counterfactual_flair

    @property
    def log_jacobian_node(self) -> Any:
        """Return the counterfactual log-Jacobian node (None before a counterfactual was shown)."""
        return self._out.log_jacobian

    def show_similar(self, panel: Any) -> Any:
        """Write a similar-lesions panel (session.similar.SimilarPanel) into the similar-lesions table node; return it."""
        out = self._out
        if out.similar_table is None or out.similar_table.GetScene() is None:
            out.similar_table = self.scene.AddNewNodeByClass("vtkMRMLTableNode", f"{self.name} similar lesions")
            if out.folder:
                hierarchy.place_in_folder(self.scene, out.similar_table, out.folder)
        panel_nodes.fill_similar_table(out.similar_table, panel.rows, panel.lesion_id)
        return out.similar_table

    @property
    def similar_table_node(self) -> Any:
        """Return the similar-lesions table node (None before a panel was shown)."""
        return self._out.similar_table

    # ------------------------------------------------------------------ display options
    def set_overlay_opacity(self, opacity: float) -> None:
        """Set the foreground (overlay) opacity of every slice view, kept across ``show_lesion``/``set_overlay``."""
        self._opacity = _check_opacity(opacity)
        for composite in views.composite_nodes(self.scene):
            composite.SetForegroundOpacity(self._opacity)

    @property
    def overlay_opacity(self) -> float:
        """Return the foreground opacity the writer applies."""
        return self._opacity

    def set_lesion_fill(self, fill: bool) -> None:
        """Draw the lesions filled (True) or as outlines (False, the default) in every 2D view."""
        self.display = dataclasses.replace(self.display, lesion_fill_2d=bool(fill))
        self._apply_lesion_style()

    def _apply_lesion_style(self) -> None:
        """Outline or fill the lesions in 2D (label layer and segmentation), and highlight the selected one in 3D.

        Applied on every show, so slice views created after the run (a new layout) get the style too.
        """
        fill = bool(self.display.lesion_fill_2d)
        views.set_label_outline(self.scene, not fill)
        node = self._out.segmentation
        if node is None:
            return
        display = node.GetDisplayNode()
        was = display.StartModify()
        display.SetVisibility2DFill(fill)
        display.SetOpacity2DFill(0.5 if fill else 0.0)
        display.SetVisibility2DOutline(True)
        display.SetOpacity2DOutline(1.0)
        selected = self._segment_ids.get(self.selected_id) if self.selected_id is not None else None
        for segment_id in self._segment_ids.values():
            highlight = selected is None or segment_id == selected
            display.SetSegmentOpacity3D(segment_id, 1.0 if highlight else float(self.display.dimmed_opacity_3d))
        display.EndModify(was)

    def show_in_3d(self, visible: bool = True) -> None:
        """Show (or hide) the lesion segments as closed surfaces in the 3D views (surfaces built once)."""
        node = self._out.segmentation
        if node is None:
            raise ParameterError("no segmentation yet: call run() first")
        if visible and not node.CreateClosedSurfaceRepresentation():
            raise ParameterError("the lesion segments could not be converted to closed surfaces for 3D")
        node.GetDisplayNode().SetVisibility3D(bool(visible))

    def set_segmentation_in_slices(self, visible: bool) -> None:
        """Draw the segmentation node in the slice views too (True) or leave the lesions to the label layer (False)."""
        self.display = dataclasses.replace(self.display, segmentation_in_slices=bool(visible))
        if self._out.segmentation is not None:
            self._out.segmentation.GetDisplayNode().SetVisibility2D(bool(visible))

    # ------------------------------------------------------------------ output nodes
    @property
    def segmentation_node(self) -> Any:
        """Return the lesion segmentation node (None before ``run``)."""
        return self._out.segmentation

    @property
    def labels_node(self) -> Any:
        """Return the instance labelmap node (label layer of the slice views; None before ``run``)."""
        return self._out.labels

    @property
    def probability_node(self) -> Any:
        """Return the probability volume node (None before ``run``)."""
        return self._out.probability

    @property
    def table_node(self) -> Any:
        """Return the instance table node (None before ``run``)."""
        return self._out.table

    @property
    def chart_node(self) -> Any:
        """Return the context-curve plot chart node (None before a lesion is shown)."""
        return self._out.chart

    @property
    def curve_table_node(self) -> Any:
        """Return the table node behind the context-curve chart (None before a lesion is shown)."""
        return self._out.curve_table

    @property
    def folder_item(self) -> int:
        """Return the subject-hierarchy folder item holding every output (0 before ``run``)."""
        return self._out.folder

    def output_nodes(self) -> list:
        """Return every node the writer added (not colour tables, which are shared)."""
        return self._out.nodes()

    def remove_outputs(self) -> None:
        """Remove every output node and the folder from the scene (inputs stay)."""
        for node in self.output_nodes():
            if node.GetScene() is not None:
                self.scene.RemoveNode(node)
        if self._out.folder:
            hierarchy.remove_folder(self.scene, self._out.folder)
        self._out = nodes.Outputs()
        self.selected_id = None
        self.counterfactual_id = None
        self._shown = None
        self._written.clear()
