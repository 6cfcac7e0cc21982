"""Browser viewer: click a lesion in a trame-slicer web page and see why the network segmented it.

Built on ``trame-slicer`` over ``slicer-core`` and on the MRML bridge (``LesionXAILib.mrml``): every
selection, overlay, slice jump and statistic comes from :class:`LesionXAILib.mrml.session.LesionSession`;
this package only turns browser clicks into RAS points, runs the bridge's work off the event loop, and
draws the side panel. Importing it imports nothing heavy (no VTK, slicer or trame).

- ``headless``: offscreen EGL rendering and per-view render settings for CPU renderers.
- ``clicks``: click-vs-drag discrimination on a view interactor; slice XY -> RAS.
- ``requests``: one lesion computation at a time in a worker thread; a newer click cancels an older one.
- ``inputs``: checking paths before the server starts; the phantom + demo-model default.
- ``panel``, ``curve_svg``: side-panel content (statistics, table, legend, context-curve plot).
- ``app`` / ``layout`` / ``server``: the trame application, its page, and starting it.
- (test support, not installed: ``Testing/support/viewer_harness.py`` starts the server as a subprocess and drives
  Chromium with Playwright for the browser tests and the benchmark)
"""
