"""Fixtures for end-to-end tests: `instance`, and tests/e2e on sys.path for `from lib import ...`."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import Instance  # noqa: E402

from peerlib import INSTALL_HINT, peer_path, require_peer  # noqa: E402,F401


@pytest.fixture
def instance(tmp_path):
    """instance - a created (not yet started) Instance; always stopped and cleaned up."""
    inst = Instance(tmp_path)
    try:
        yield inst
    finally:
        inst.cleanup()


@pytest.fixture
def sink():
    """sink - Postfix's smtp-sink dumping each message to a file (faultlib.DumpSink), removed after."""
    from faultlib import DumpSink
    s = DumpSink()
    s.start()
    yield s
    s.remove()
