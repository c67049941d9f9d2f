"""Body lines stored in bulk (no MIME, no body_checks) match the per-line rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postel.cleanup.message import MessageState, Settings

LIMIT = 12


def expected(body: bytes) -> list:
    """expected - the records feed() defines: one CR before LF goes, long lines cut."""
    out = []
    lines = body.split(b"\n")
    last = lines.pop()
    for line in lines + ([last] if last else []):
        if line.endswith(b"\r"):
            line = line[:-1]
        while len(line) > LIMIT:
            out.append((b"L", line[:LIMIT]))
            line = line[LIMIT:]
        out.append((b"N", line))
    return out


def stored(content: bytes, chunk: int, **kw) -> tuple[MessageState, list]:
    """stored - the records and state after feeding content in chunks."""
    s = MessageState(Settings(myhostname="mx.example.com", line_length_limit=LIMIT, **kw),
                     "QID1", now=0.0)
    recs = []
    for i in range(0, len(content), chunk):
        s.feed(content[i:i + chunk])
        recs += s.take_records()
    s.finish()
    return s, recs + s.take_records()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=12),
       st.sampled_from([b"\n", b"\r\n"]), st.integers(min_value=1, max_value=64))
def test_bulk_body_records_match_line_rules(lines, eol, chunk):
    body = b"".join(line + eol for line in lines)
    s, recs = stored(b"Subject: s\n\n" + body, chunk)
    assert recs[2:] == expected(body)
    assert s.size == sum(len(p) + (k == b"N") for k, p in recs)


def test_bulk_body_size_limit_stores_nothing():
    s, recs = stored(b"Subject: s\n\n" + b"abc\r\n" * 50, 4096, message_size_limit=100)
    assert s.status[0] == 552
    assert recs == []
