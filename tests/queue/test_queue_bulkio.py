"""Bulk content I/O: write_lines() and chunked iter_content() keep the record rules."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.queue import Envelope, QueueDir, QueueFileReader, QueueFileWriter, Recipient

line = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line, max_size=30), st.integers(min_value=1, max_value=400),
       st.sampled_from([b"\n", b"\r\n"]))
def test_write_lines_then_chunks_round_trip(qd, lines, chunk_size, eol):
    w = QueueFileWriter(qd, line_length_limit=100)
    w.write_envelope(Envelope(sender="a@example.org", recipients=[Recipient("b@example.com")]))
    w.write_lines(lines[:len(lines) // 2])
    for ln in lines[len(lines) // 2:]:
        w.write_line(ln)
    path = w.commit_sync()
    r = QueueFileReader(path)
    assert list(r.iter_lines()) == lines
    chunks = list(r.iter_content(eol, chunk_size))
    assert b"".join(chunks) == b"".join(ln + eol for ln in lines)
    for c in chunks[:-1]:
        assert c.endswith(eol) and len(c) >= chunk_size
