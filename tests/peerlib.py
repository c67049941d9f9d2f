"""peerlib - real peers for the tests (import require_peer from here or from conftest).

A test that needs a real peer program calls require_peer("swaks").  Without
the program the test skips with a message saying how to install it, except
when CI is set in the environment: then a missing peer is a failure.
"""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "install the test peers with: sudo bash tests/peers/install.sh"


def peer_path(name: str) -> str | None:
    """peer_path - the absolute path of a peer program, or None."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/lib/postfix/sbin", "/sbin"):
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def require_peer(name: str) -> str:
    """require_peer - the peer's path; skip (or fail under CI) if missing."""
    path = peer_path(name)
    if path is None:
        msg = f"peer program {name!r} is not installed; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path
