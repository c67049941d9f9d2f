"""Root test configuration: the real-peer helpers, importable as `from conftest import require_peer`.

They live in tests/peerlib.py so that tests/e2e/conftest.py can offer them too.
"""

from __future__ import annotations

from peerlib import INSTALL_HINT, peer_path, require_peer

__all__ = ["INSTALL_HINT", "peer_path", "require_peer"]
