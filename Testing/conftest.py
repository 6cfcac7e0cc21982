"""Test-session settings: the margin auto-calibration cache lives in a temporary folder, not the user's."""

from __future__ import annotations

import os
import tempfile

# set at import so subprocess CLI tests inherit it too; every session starts without cached calibrations
os.environ["LESIONXAI_CACHE_DIR"] = tempfile.mkdtemp(prefix="lesionxai-test-cache-")
