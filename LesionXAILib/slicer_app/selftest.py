"""End-to-end checks of the MRML bridge shared by pytest (slicer-core) and the module's self-test in Slicer.

``LesionXAI.py``'s ``LesionXAITest`` and ``Testing/test_mrml_phantom.py`` build the same phantom case,
drive the same Logic (``slicer_app.controller.ModuleController``) and call these checks on its
:class:`~LesionXAILib.mrml.writer.SceneWriter` (scene nodes) and the writer's ``session`` (results), so a pass headless is the same claim as a
pass inside desktop Slicer. Checks raise AssertionError with a message (they do not use ``assert``,
which ``python -O`` would drop). Expected values are computed independently of the bridge: lesion
centroids from the ground truth with scipy, RAS through the volume node's own IJK-to-RAS matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from LesionXAILib.geometry import Geometry
from LesionXAILib.session.settings import SessionSettings

SELFTEST_SEED = 7  # evaluation seeds are < 10000 (training uses >= 10000)
SELFTEST_FOV_MM = (64.0, 64.0, 64.0)
SELFTEST_LESIONS = 6
# small but complete: both explainers, the context probe out to 6 mm
SELFTEST_SETTINGS = SessionSettings(methods=("smoothgrad", "gradcampp"), samples=4, seed=0, max_radius_mm=6.0)
# an oblique, anisotropic grid to stamp on the phantom's voxels (direction: rotation of 0.3 rad)
OBLIQUE_SPACING = (0.9, 1.1, 1.4)


def require(condition: Any, message: str) -> None:
    """Raise AssertionError(message) unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)


def oblique_direction() -> tuple[float, ...]:
    """Return a fixed oblique direction matrix (rotation about a tilted axis), row-major."""
    axis = np.array([0.3, -0.2, 0.9])
    axis = axis / np.linalg.norm(axis)
    angle = 0.3
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)
    return tuple(float(v) for v in rot.ravel())


@dataclass
class PhantomCase:
    """A phantom subject loaded into a scene: FLAIR/MPRAGE/ground-truth nodes and the phantom itself."""

    scene: Any
    flair: Any
    t1: Any
    ground_truth: Any
    lesions: np.ndarray  # ground-truth mask (k, j, i)
    geometry: Geometry


def load_phantom_case(scene: Any, seed: int = SELFTEST_SEED, oblique: bool = False, name: str = "Phantom") -> PhantomCase:
    """Return a phantom (64 mm field of view) loaded as FLAIR, MPRAGE and ground-truth labelmap nodes.

    ``oblique=True`` stamps the same voxels on an oblique, anisotropic grid, so geometry handling is
    exercised without a different image.
    """
    from LesionXAILib.mrml.volumes import volume_node_from_array
    from LesionXAILib.phantom import PhantomSettings, generate_phantom

    phantom = generate_phantom(seed, PhantomSettings(n_lesions=SELFTEST_LESIONS, fov_mm=SELFTEST_FOV_MM))
    geometry = phantom.geometry
    if oblique:
        geometry = Geometry(size=geometry.size, origin=(31.0, 47.5, -20.25), spacing=OBLIQUE_SPACING,
                            direction=oblique_direction())  # fmt: skip
    flair = volume_node_from_array(scene, phantom.flair, geometry, f"{name} FLAIR")
    t1 = volume_node_from_array(scene, phantom.t1, geometry, f"{name} MPRAGE")
    gt = volume_node_from_array(scene, phantom.lesions.astype(np.uint8), geometry, f"{name} lesions", labelmap=True)
    return PhantomCase(scene, flair, t1, gt, np.asarray(phantom.lesions, dtype=bool), geometry)


def node_ijk_to_ras(node: Any) -> np.ndarray:
    """Return a volume node's IJK-to-RAS matrix read straight from the node."""
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def check_same_grid(node: Any, reference: Any, what: str) -> None:
    """Require ``node`` to have ``reference``'s dimensions and IJK-to-RAS matrix."""
    require(node is not None and node.GetImageData() is not None, f"{what}: no volume")
    require(
        node.GetImageData().GetDimensions() == reference.GetImageData().GetDimensions(),
        f"{what}: dimensions {node.GetImageData().GetDimensions()} differ from the FLAIR's",
    )
    require(np.allclose(node_ijk_to_ras(node), node_ijk_to_ras(reference), atol=1e-6), f"{what}: IJK-to-RAS differs from the FLAIR's")


def snapshot_inputs(case: PhantomCase) -> dict:
    """Return the voxels, matrices, image-data modification times and display-node counts of the input nodes."""
    from LesionXAILib.mrml.volumes import array_from_volume_node

    out = {}
    for role in ("flair", "t1", "ground_truth"):
        node = getattr(case, role)
        array, _ = array_from_volume_node(node)
        out[role] = (array.tobytes(), node_ijk_to_ras(node).tobytes(), node.GetImageData().GetMTime(),
                     node.GetNumberOfDisplayNodes(), node.GetName())  # fmt: skip
    return out


def check_inputs_unchanged(case: PhantomCase, before: dict) -> None:
    """Require the input nodes to be exactly as in ``before``."""
    after = snapshot_inputs(case)
    for role, value in before.items():
        require(after[role] == value, f"input node '{role}' was modified")


def check_run(writer: Any, case: PhantomCase) -> None:
    """Require segments = instances, outputs on the FLAIR grid, table rows = instances, outputs in one folder."""
    from LesionXAILib.mrml.hierarchy import folder_children
    from LesionXAILib.mrml.segments import lesion_of_segment
    from LesionXAILib.mrml.tables import table_as_rows

    instances = writer.session.result.instances
    ids = list(instances.ids)
    require(len(ids) > 0, "no lesion instances at all")
    segmentation = writer.segmentation_node.GetSegmentation()
    require(segmentation.GetNumberOfSegments() == len(ids), f"{segmentation.GetNumberOfSegments()} segments for {len(ids)} instances")
    seg_ids = sorted(lesion_of_segment(writer.segmentation_node, segmentation.GetNthSegmentID(n)) for n in range(len(ids)))
    require(seg_ids == sorted(ids), f"segments carry lesion ids {seg_ids}, instances are {ids}")
    for n in range(segmentation.GetNumberOfSegments()):
        name = segmentation.GetNthSegment(n).GetName()
        require(name.startswith("Lesion ") and name.endswith("mm³"), f"segment name '{name}'")
    check_same_grid(writer.labels_node, case.flair, "lesion label map")
    check_same_grid(writer.probability_node, case.flair, "probability map")
    rows = table_as_rows(writer.table_node)
    require([r["id"] for r in rows] == ids, f"table ids {[r['id'] for r in rows]} != instances {ids}")
    require([r["status"] for r in rows] == [i.status for i in instances.instances], "table statuses differ from the instances")
    children = {n.GetID() for n in folder_children(case.scene, writer.folder_item)}
    for node in (writer.segmentation_node, writer.labels_node, writer.probability_node, writer.table_node):
        require(node.GetID() in children, f"'{node.GetName()}' is not in the LesionXAI folder")


def ground_truth_lesions(case: PhantomCase) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """Return (mask, centroid RAS) per 26-connected ground-truth lesion, RAS via the FLAIR node's own matrix."""
    from scipy import ndimage

    labels, n = ndimage.label(case.lesions, structure=np.ones((3, 3, 3)))
    matrix = node_ijk_to_ras(case.flair)
    out = []
    for g in range(1, n + 1):
        mask = labels == g
        k, j, i = ndimage.center_of_mass(mask)
        ras = matrix @ np.array([i, j, k, 1.0])
        out.append((mask, tuple(float(v) for v in ras[:3])))
    return out


def check_lesion_at(writer: Any, case: PhantomCase, min_checked: int = 2) -> dict:
    """Require lesion_at(centroid of each ground-truth lesion) to name the instance covering it; background -> None.

    A lesion whose centroid voxel lies outside every instance (a crescent, or a partial detection)
    cannot be clicked at its centroid and is counted as skipped. Returns the counts.
    """
    labels = writer.session.result.instances.labels
    checked = skipped = missed = 0
    matrix_inv = np.linalg.inv(node_ijk_to_ras(case.flair))
    for mask, ras in ground_truth_lesions(case):
        i, j, k = (int(np.floor(v + 0.5)) for v in (matrix_inv @ np.array([*ras, 1.0]))[:3])
        covering = int(labels[k, j, i])
        overlapping = {int(v) for v in np.unique(labels[mask]) if v > 0}
        if not mask[k, j, i] or covering == 0:
            skipped += 1
            continue
        found = writer.session.lesion_at(ras)
        require(found == covering and found in overlapping,
                f"lesion_at{tuple(round(v, 1) for v in ras)} gave {found}, expected instance {covering}")  # fmt: skip
        status = writer.session.result.instances.get(found).status
        missed += status == "FN"
        checked += 1
    require(checked >= min_checked, f"only {checked} ground-truth lesion centroids could be checked")
    background = np.argwhere((labels == 0) & ~case.lesions)
    k, j, i = background[len(background) // 2]
    ras = node_ijk_to_ras(case.flair) @ np.array([i, j, k, 1.0])
    require(writer.session.lesion_at(ras[:3]) is None, "lesion_at on background did not return None")
    far = node_ijk_to_ras(case.flair) @ np.array([-50.0, -50.0, -50.0, 1.0])
    require(writer.session.lesion_at(far[:3]) is None, "lesion_at outside the image did not return None")
    return {"checked": checked, "skipped": skipped, "fn_checked": missed}


def detected_lesion(writer: Any) -> int:
    """Return the largest predicted (TP or predicted) instance id: the one the self-test selects."""
    rows = [r for r in writer.session.result.instances.instances if r.status != "FN"]
    require(rows, "the model detected no lesion")
    return max(rows, key=lambda r: r.voxels).id


def check_selection(writer: Any, case: PhantomCase, first: Any, second: Any, hits_before: int, overlay: Optional[str] = None) -> None:
    """Require composite layers set, overlays on the FLAIR grid, a chart of the curve, and the second selection cached."""
    from LesionXAILib.mrml.views import composite_nodes

    overlay = overlay or writer.session.default_overlay()
    require(not first.from_cache, "the first selection came from the cache")
    require(second.from_cache and second.analysis is first.analysis, "the second selection was recomputed")
    require(writer.session.cache.hits == hits_before + 1, "the second selection did not hit the cache")
    composites = composite_nodes(case.scene)
    require(composites, "the scene has no slice composite nodes")
    fg = writer.overlay_node(overlay)
    for c in composites:
        require(c.GetBackgroundVolumeID() == case.flair.GetID(), "background is not the FLAIR")
        require(c.GetForegroundVolumeID() == fg.GetID(), f"foreground is not the {overlay} overlay")
        require(c.GetLabelVolumeID() == writer.labels_node.GetID(), "label layer is not the lesions")
    for name in writer.session.available_overlays():
        check_same_grid(writer.overlay_node(name), case.flair, f"overlay {name}")
    chart = writer.chart_node
    require(chart is not None and chart.GetNumberOfPlotSeriesNodes() >= 1, "no context-curve chart series")
    for n in range(chart.GetNumberOfPlotSeriesNodes()):
        require(chart.GetNthPlotSeriesNode(n).GetTableNodeID() == writer.curve_table_node.GetID(), "chart series without the curve table")
    require(writer.curve_table_node.GetTable().GetNumberOfRows() == len(first.curve.radii_mm), "curve table rows != radii")


def click_point(writer: Any, lesion_id: int) -> tuple[float, float, float]:
    """Return the RAS centre of the lesion's voxel nearest to its centroid (a point a user could click)."""
    instances = writer.session.result.instances
    row = instances.get(lesion_id)
    voxels = np.argwhere(instances.labels == int(lesion_id))[:, ::-1]  # i, j, k
    nearest = voxels[np.argmin(np.linalg.norm(voxels - np.asarray(row.centroid_ijk), axis=1))]
    ras = instances.geometry.ijk_to_ras_points(nearest[None].astype(float))[0]
    return tuple(float(v) for v in ras)
