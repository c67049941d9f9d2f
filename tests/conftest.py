"""Root test configuration. Real-peer helpers: `from peerlib import require_peer` (works from any test dir).

They live in tests/peerlib.py so that tests/e2e/conftest.py can offer them too.
"""

from __future__ import annotations

from peerlib import INSTALL_HINT, peer_path, require_peer

__all__ = ["INSTALL_HINT", "peer_path", "require_peer"]
