"""MRML bridge: LesionXAI results as Slicer scene nodes (volumes, segments, tables, charts, slice views).

Needs only ``slicer-core`` (``import slicer`` gives a real vtkMRMLScene, no Qt); desktop Slicer and the
trame-slicer browser viewer use the same code. Import the submodules you need; importing this package
imports nothing heavy, so ``dependencies`` and ``clicks`` stay usable before torch/slicer are installed.

- ``volumes``: volume nodes <-> k,j,i arrays with full geometry; loading files like the CLI does.
- ``session``: :class:`LesionSession`: segmentation -> segments, table, then one lesion at a time
  explanations + context probe as overlays, with a cache (``OVERLAYS`` lists the overlay names).
- ``views``: slice views and their composite nodes (background / foreground / label layers).
"""
