"""Writing probe outputs so that an interrupted run never leaves a half-written file under its final name.

The helpers live in ``LesionXAILib.atomic_write`` (one implementation for every output); re-exported here.
"""

from __future__ import annotations

from LesionXAILib.atomic_write import atomic_path, write_csv, write_json

__all__ = ["atomic_path", "write_csv", "write_json"]
