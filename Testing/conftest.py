"""Test-session settings: the margin auto-calibration cache lives in a temporary folder, not the user's."""

from __future__ import annotations

import os
import tempfile

import pytest

# set at import so subprocess CLI tests inherit it too; every session starts without cached calibrations
os.environ["LESIONXAI_CACHE_DIR"] = tempfile.mkdtemp(prefix="lesionxai-test-cache-")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module on one torch thread: tiny networks gain nothing from threads, and on a shared 2-core machine
    OpenMP's spinning costs far more than the convolutions (use with ``pytest.mark.usefixtures``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
