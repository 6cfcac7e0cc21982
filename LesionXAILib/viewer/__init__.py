"""Browser viewer: click a lesion in a trame-slicer web page and see why the network segmented it.

Built on ``trame-slicer`` over ``slicer-core``: every selection and statistic comes from the scene-free
:class:`LesionXAILib.session.core.Session` the Slicer module uses too, every overlay and slice jump from
:class:`LesionXAILib.mrml.writer.SceneWriter`; this package only turns browser clicks into RAS points
(with the shared click policy), runs the session's work off the event loop, and draws the side panel. Importing it imports nothing heavy (no VTK, slicer or trame).

- ``headless``: offscreen EGL rendering and per-view render settings for CPU renderers.
- ``clicks``: feeding a view interactor's events to the shared click policy; slice XY -> RAS.
- ``requests``: one lesion computation at a time in a worker thread; a newer click cancels an older one.
- ``inputs``: checking paths before the server starts; the phantom + demo-model default.
- ``panel``, ``curve_svg``: side-panel content (statistics, table, legend, context-curve plot).
- ``app`` / ``layout`` / ``server``: the trame application, its page, and starting it.
- (test support, not installed: ``Testing/support/viewer_harness.py`` starts the server as a subprocess and drives
  Chromium with Playwright for the browser tests and the benchmark)
"""
