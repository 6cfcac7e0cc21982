"""Subject hierarchy: one folder per LesionXAI run grouping every output node (Data module tree)."""

from __future__ import annotations

from typing import Any


def subject_hierarchy(scene: Any) -> Any:
    """Return the scene's subject hierarchy node (created when the scene has none, e.g. bare slicer-core)."""
    import slicer

    return slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)


def create_folder(scene: Any, name: str, parent_item: int | None = None) -> int:
    """Return the item id of a new subject-hierarchy folder ``name`` (under the scene, or ``parent_item``)."""
    sh = subject_hierarchy(scene)
    parent = sh.GetSceneItemID() if parent_item is None else parent_item
    return sh.CreateFolderItem(parent, name)


def place_in_folder(scene: Any, node: Any, folder_item: int) -> int:
    """Put ``node`` under ``folder_item`` (creating its item if the scene's SH logic did not) and return its item id."""
    sh = subject_hierarchy(scene)
    item = sh.GetItemByDataNode(node)
    if not item:
        item = sh.CreateItem(folder_item, node)
    elif sh.GetItemParent(item) != folder_item:
        sh.SetItemParent(item, folder_item)
    return item


def folder_children(scene: Any, folder_item: int) -> list:
    """Return the data nodes directly under a folder item."""
    import vtk

    sh = subject_hierarchy(scene)
    ids = vtk.vtkIdList()
    sh.GetItemChildren(folder_item, ids)
    nodes = [sh.GetItemDataNode(ids.GetId(i)) for i in range(ids.GetNumberOfIds())]
    return [n for n in nodes if n is not None]


def remove_folder(scene: Any, folder_item: int) -> None:
    """Remove a folder item and every node under it from the scene."""
    sh = subject_hierarchy(scene)
    if folder_item and sh.GetItemName(folder_item) is not None:
        sh.RemoveItem(folder_item, True, True)
