"""Offscreen rendering for the browser viewer: EGL render windows and cheap per-view settings on CPU renderers."""

from __future__ import annotations

import os
from typing import Any, MutableMapping, Optional

WINDOW_VARIABLE = "VTK_DEFAULT_OPENGL_WINDOW"
EGL_WINDOW = "vtkEGLRenderWindow"


def configure_offscreen(environ: Optional[MutableMapping[str, str]] = None) -> str:
    """Select EGL offscreen render windows unless the user chose a class already; return the class in force.

    Must run before the first VTK render window is created (VTK reads the variable in its object factory).
    EGL needs no X server, so the viewer runs on a headless workstation or a CI machine (Mesa's llvmpipe).
    """
    env = os.environ if environ is None else environ
    return env.setdefault(WINDOW_VARIABLE, EGL_WINDOW)


def prepare_view(view: Any, multisamples: int = 0) -> None:
    """Set a trame-slicer view's multisampling (trame-slicer asks for 8x; on a CPU renderer that costs tens of ms per frame).

    Slice views show resampled images where multisampling changes nothing visible; call this before the
    view's first render, because the framebuffer keeps the sample count it was created with.
    """
    view.render_window().SetMultiSamples(int(multisamples))


def render_window_class(view: Any) -> str:
    """Return the VTK class name of a view's render window (e.g. 'vtkEGLRenderWindow')."""
    return view.render_window().GetClassName()
