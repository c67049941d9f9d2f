"""Make tests/local/agent_harness importable for the virtual tests."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "local"))
