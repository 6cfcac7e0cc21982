"""MRML bridge: LesionXAI results as Slicer scene nodes (volumes, segments, tables, charts, slice views).

Needs only ``slicer-core`` (``import slicer`` gives a real vtkMRMLScene, no Qt); desktop Slicer and the
trame-slicer browser viewer use the same code. Import the submodules you need; importing this package
imports nothing heavy. What is computed lives in the scene-free :mod:`LesionXAILib.session`; this package
only reads input nodes and writes results into a scene.

- ``volumes``: volume nodes <-> k,j,i arrays with full geometry; loading files like the CLI does.
- ``session``: :class:`LesionSession`: segmentation -> segments, table, then one lesion at a time
  explanations + context probe as overlays, with a cache (``OVERLAYS`` lists the overlay names).
- ``views``: slice views and their composite nodes (background / foreground / label layers).
"""
