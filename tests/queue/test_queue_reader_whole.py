"""QueueFileReader: the one-pread path for small files reads what the record-by-record path reads."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postel.queue import (
    Envelope,
    QueueDir,
    QueueFileCorrupt,
    QueueFileReader,
    QueueFileWriter,
    Recipient,
)
from postel.queue import file as qfile

line = st.binary(max_size=200).map(lambda b: b.replace(b"\n", b""))


@pytest.fixture
def qd(tmp_path):
    q = QueueDir(str(tmp_path / "q"))
    q.create_dirs()
    return q


def _view(path: str) -> tuple:
    r = QueueFileReader(path)
    try:
        env = r.envelope
        return (env.sender, [(x.address, x.offset, x.done) for x in r.recipients],
                r.message_size, r.content_offset, r.extracted_offset, r.end_offset,
                r.read_content(b"\r\n"))
    finally:
        r.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(line, max_size=40), st.integers(1, 5))
def test_whole_read_equals_record_reads(qd, monkeypatch, lines, nrcpt):
    w = QueueFileWriter(qd, line_length_limit=100)
    w.write_envelope(Envelope(sender="a@example.org",
                              recipients=[Recipient(f"r{i}@example.com") for i in range(nrcpt)]))
    w.write_lines(lines)
    path = w.commit_sync()
    fast = _view(path)
    with monkeypatch.context() as m:
        m.setattr(qfile, "_WHOLE_READ", -1)
        slow = _view(path)
    assert fast == slow
    assert fast[-1] == b"".join(ln + b"\r\n" for ln in lines)


def test_whole_read_corruption_reported_the_same(qd, monkeypatch):
    w = QueueFileWriter(qd)
    w.write_envelope(Envelope(sender="a@example.org", recipients=[Recipient("b@example.com")]))
    w.write_lines([b"Subject: x", b"", b"body"])
    path = w.commit_sync()
    r = QueueFileReader(path)
    content_off = r.content_offset
    r.close()
    with open(path, "r+b") as f:              # break the content segment's first record
        f.seek(content_off)
        f.write(b"X")
    errors = []
    for limit in (qfile._WHOLE_READ, -1):
        monkeypatch.setattr(qfile, "_WHOLE_READ", limit)
        with pytest.raises(QueueFileCorrupt) as exc:
            QueueFileReader(path)
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "content segment" in errors[0]
    assert os.path.exists(path)
