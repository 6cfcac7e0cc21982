"""Which Slicer the desktop module supports, and the one-line refusal it shows below that (stdlib only).

This file must import on every Python a Slicer ships, including ones LesionXAI does not support, so it
can say so in the module panel instead of failing with a traceback: it uses no syntax or library
newer than Python 3.6.

Slicer 5.6 and 5.8 embed Python 3.9. LesionXAI needs torch 2.13.0 (the tested build), which has no
Python 3.9 wheel, and its engine uses Python 3.10 syntax; Slicer 5.10 moved to Python 3.12. So the
minimum is Slicer 5.10 (and, for a custom build, Python 3.10).
"""

from __future__ import annotations

import re
import sys
from typing import Optional, Sequence, Tuple

MINIMUM_SLICER = (5, 10)
MINIMUM_PYTHON = (3, 10)
MINIMUM_SLICER_TEXT = "%d.%d" % MINIMUM_SLICER
WHY = (
    "Slicer 5.6 and 5.8 embed Python 3.9, for which PyTorch 2.13 (the build LesionXAI is tested with) "
    "has no package; Slicer 5.10 and later embed Python 3.12."
)


def parse_version(text: object) -> Optional[Tuple[int, int, int]]:
    """Return (major, minor, patch) from a Slicer version such as '5.10.0' or '5.9.0-2025-06-18', or None."""
    match = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def slicer_refusal(slicer_version: object, python_version: Sequence[int] = tuple(sys.version_info[:2])) -> Optional[str]:
    """Return why LesionXAI cannot run in this Slicer (one short paragraph for the module panel), or None if it can."""
    version = parse_version(slicer_version)
    python = tuple(int(v) for v in python_version[:2])
    if version is not None and version[:2] < MINIMUM_SLICER:
        return "LesionXAI needs 3D Slicer %s or later; this is Slicer %s (Python %d.%d). %s Please install a newer Slicer." % (
            MINIMUM_SLICER_TEXT, str(slicer_version).strip(), python[0], python[1], WHY
        )
    if python < MINIMUM_PYTHON:
        return "LesionXAI needs Python %d.%d or later; this Slicer embeds Python %d.%d. %s" % (
            MINIMUM_PYTHON[0], MINIMUM_PYTHON[1], python[0], python[1], WHY
        )
    return None
