"""write_lines' all-short bulk encoding gives the same file as write_line per line."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.queue import Envelope, QueueDir, QueueFileWriter, Recipient


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


def _file(qd, lines, bulk, limit):
    w = QueueFileWriter(qd, line_length_limit=limit)
    w.write_envelope(Envelope(sender="a@example.org", recipients=[Recipient("b@example.com")],
                              time=1.0))
    if bulk:
        w.write_lines(list(lines))
    else:
        for ln in lines:
            w.write_line(ln)
    path = w.commit_sync()
    with open(path, "rb") as f:
        return f.read(), w.message_size


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")), max_size=40),
       st.sampled_from([60, 127, 2048]))
def test_bulk_lines_same_file(qd, lines, limit):
    a = _file(qd, lines, True, limit)
    b = _file(qd, lines, False, limit)
    assert a == b
