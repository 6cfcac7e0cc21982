"""Scene-free lesion session: inputs in, cache key, staged per-lesion results, results out (no Slicer import).

Data flow: a front end turns its inputs into :class:`RunInputs` (the MRML side:
:class:`LesionXAILib.mrml.scene_inputs.SceneInputs`; the CLI-style loaders would do as well);
:meth:`Session.compute_run` segments them off the GUI thread and :meth:`Session.apply_run` adopts the
result. :meth:`Session.compute_lesion` explains and probes one lesion (staged, cached, resumable);
a front end shows the :class:`LesionResult` it returns (:class:`LesionXAILib.mrml.writer.SceneWriter`
writes it into an MRML scene for the Slicer module and the browser viewer alike).

- ``core``: :class:`Session`.
- ``settings``: :class:`SessionSettings`, :class:`RunInputs`.
- ``results``: :class:`LesionResult` and the statistics row of a lesion.
- ``overlays``: overlay names, titles and display windows.
- ``cache``: the per-lesion result cache and the digests its keys are made of.
- ``clicks``: the one click policy of the Slicer module and the browser viewer.

Importing this package imports nothing (``clicks`` must load in Slicer before the engine's dependencies are
installed): import the submodules, e.g. ``from LesionXAILib.session.core import Session``.
"""
