"""The Slicer module's application layer, Qt-free (tested headless on slicer-core's real MRML scene).

- ``controller``: :class:`ModuleController`, what ``LesionXAI.py``'s Logic holds: one scene-free
  :class:`~LesionXAILib.session.Session` and the :class:`~LesionXAILib.mrml.writer.SceneWriter` that shows
  it, loaded models and the shared result cache; turns the module's parameters into session settings.
- ``panel``: texts of the module panel (lesion table cells, statistics, legend line).
- ``jobs``: one long job at a time on a worker thread, polled by the GUI's timer.
- ``selftest``: end-to-end checks shared by pytest and the module's self-test inside Slicer.
"""
