"""MRML bridge: LesionXAI results as Slicer scene nodes (volumes, segments, tables, charts, slice views).

Needs only ``slicer-core`` (``import slicer`` gives a real vtkMRMLScene, no Qt); desktop Slicer and the
trame-slicer browser viewer use the same code. Import the submodules you need; importing this package
imports nothing heavy. What is computed lives in the scene-free :mod:`LesionXAILib.session`; this package
only reads input nodes and writes results into a scene.

- ``volumes``: volume nodes <-> k,j,i arrays with full geometry; loading files like the CLI does.
- ``scene_inputs``: the input nodes a session reads (checked, read into RunInputs, stamped).
- ``writer``: :class:`SceneWriter`, a Session's results as scene nodes: segments, table, then one lesion
  at a time its overlays, context shells and curve chart; ``overlay_nodes`` writes the per-lesion nodes.
- ``views``: slice views and their composite nodes (background / foreground / label layers).
"""
