"""Primary headers through the bulk path (no header checks) match the per-line path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postel.cleanup import message as m
from postel.cleanup.message import MessageState, Settings

NAMES = ["From", "To", "Cc", "Bcc", "Subject", "Received", "Delivered-To", "Message-ID",
         "Resent-To", "Resent-Message-Id", "Return-Path", "Content-Type", "X-Long",
         "MIME-Version", "Date", "bad name", ""]
VALUES = ["<a@example.com>", "b@example.net", "Name <c@d.example>", '"Q, R" <q@r>',
          "a@b, c@d", "x" * 40, "", " spaced ", "caf\u00e9 <\u00e9@x>", "unterminated <x@y"]


@st.composite
def header_block(draw) -> bytes:
    """header_block - header lines (some folded, some odd), then a body or not."""
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.sampled_from([b" folded", b"\tmore", b" " + b"y" * 30])))
        elif kind == 1:
            lines.append(draw(st.binary(max_size=40)).replace(b"\n", b""))
        else:
            name = draw(st.sampled_from(NAMES))
            value = draw(st.sampled_from(VALUES))
            lines.append(f"{name}: {value}".encode())
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    text = b"".join(line + eol for line in lines)
    if draw(st.booleans()):
        text += draw(st.sampled_from([eol, b"body" + eol, b""])) + b"text" + eol
    if draw(st.booleans()):
        text += b"Trailer: partial"
    return text


def run(content: bytes, chunk: int, bulk: bool, logs: list, **kw) -> tuple:
    """run - the observable outcome of feeding content with the bulk path on or off."""
    m._BULK_HEADERS = bulk
    kw.setdefault("line_length_limit", 2048)
    local = kw.pop("local", False)
    extract = kw.pop("extract", False)
    s = MessageState(Settings(myhostname="mx.example.com", **kw), "QID1", now=0.0,
                     local=local, extract=extract)
    if local:
        s.rewrite = lambda a, h: a if "@" in a else a + "@mx.example.com"
    recs = []
    try:
        for i in range(0, len(content), chunk):
            s.feed(content[i:i + chunk])
            recs += s.take_records()
        s.finish()
    finally:
        m._BULK_HEADERS = True
    recs += s.take_records()
    return (recs, s.size, s.status, s._block, sorted(s._seen), s.hop_count, s.message_id,
            s.extracted, s.resent_extracted, s._resent, list(logs))


@settings(max_examples=400, deadline=None)
@given(header_block(), st.integers(min_value=1, max_value=80),
       st.sampled_from([2048, 20, 7]), st.sampled_from([102400, 60, 15]),
       st.sampled_from([10240000, 300]), st.booleans(), st.booleans(),
       st.sampled_from([2, 50]))
def test_bulk_headers_match_per_line_path(content, chunk, limit, hlimit, size,
                                          local, extract, hops):
    out = []
    for bulk in (True, False):
        logs: list = []
        saved = (m.log.info, m.log.warning)
        m.log.info = lambda *a, logs=logs: logs.append(("info",) + a)
        m.log.warning = lambda *a, logs=logs: logs.append(("warning",) + a)
        try:
            out.append(run(content, chunk, bulk, logs, line_length_limit=limit,
                           header_size_limit=hlimit, message_size_limit=size, local=local,
                           extract=extract, hopcount_limit=hops))
        finally:
            m.log.info, m.log.warning = saved
    assert out[0] == out[1]


def test_bulk_headers_store_the_usual_message():
    content = (b"Received: from vm (localhost [127.0.0.1])\r\n\tby mx (Postel)\r\n"
               b"From: <a@example.com>\r\nTo: <b@example.net>\r\nBcc: x@y\r\n"
               b"Message-Id: <1@vm>\r\n\r\nbody\r\n")
    recs, size, status, *_ = run(content, 4096, True, [])
    assert recs == [(b"N", b"Received: from vm (localhost [127.0.0.1])"),
                    (b"N", b"\tby mx (Postel)"), (b"N", b"From: <a@example.com>"),
                    (b"N", b"To: <b@example.net>"), (b"N", b"Message-Id: <1@vm>"),
                    (b"N", b""), (b"N", b"body")]
    assert status[0] == 0 and size == sum(len(p) + 1 for _, p in recs)


def test_bulk_headers_header_size_limit_boundaries():
    content = b"Subject: abc\r\n d\r\n\te\r\nTo: <b@example.net>\r\n\r\nbody\r\n"
    for hlimit in range(8, 24):
        for limit in (2, 4, 12, 2048):
            assert run(content, 4096, True, [], header_size_limit=hlimit,
                       line_length_limit=limit) == \
                run(content, 4096, False, [], header_size_limit=hlimit,
                    line_length_limit=limit)
