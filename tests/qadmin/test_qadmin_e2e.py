"""End to end: postel queue -p through the showq service that master runs."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))

from lib import Instance  # noqa: E402
from qadmin_helpers import add_message  # noqa: E402

from postel.commands.postqueue import showq_entries  # noqa: E402
from postel.queue import QueueDir  # noqa: E402


def test_queue_listing_through_running_showq(tmp_path):
    with Instance(tmp_path, smtp=False) as inst:
        inst.start()
        cp = inst.postel("queue", "-p")
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == "Mail queue is empty\n"
        qd = QueueDir(inst.queue_dir)
        qid = add_message(qd, "hold", "e2e@example.com", ("x@example.org",))
        # The service itself (no fallback possible here): master's public/showq.
        entries = list(showq_entries(inst.queue_dir))
        assert [(e.queue_name, e.queue_id, e.sender) for e in entries] == [
            ("hold", qid, "e2e@example.com")]
        cp = inst.postel("queue", "-p")
        assert cp.returncode == 0, cp.stderr
        assert f"{qid}!" in cp.stdout and cp.stdout.endswith("-- 0 Kbytes in 1 Request.\n")
        cp = inst.postel("super", "-d", "ALL")
        assert cp.returncode == 0 and f"postsuper: {qid}: removed" in cp.stderr
        assert inst.postel("queue", "-j").stdout == ""
