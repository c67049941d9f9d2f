"""tests/postfix_peer: this directory and tests/e2e on sys.path (`from pfpeer import ...`, `from lib import ...`)."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "e2e"))
sys.path.insert(0, HERE)
