"""ReplyParser: a repeated one-line reply (cached) parses exactly as the first time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postel.protocol import smtp_client
from postel.protocol.smtp_client import ReplyError, ReplyParser

codes = st.sampled_from([b"250", b"354", b"421", b"450", b"550", b"220", b"251"])
texts = st.one_of(
    st.sampled_from([b"2.0.0 Ok", b"Ok", b"5.1.1 <a@b>: no", b"4.7.0 later", b"",
                     b"End data with <CR><LF>.<CR><LF>", b"2.1.5 Ok", b"2.0.0", b"\xff\xfe x"]),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b))
lines = st.tuples(codes, st.sampled_from([b" ", b"-"]), texts)


def _parse(chunks: list[bytes]) -> list:
    p = ReplyParser()
    out = []
    for c in chunks:
        out += p.feed(c)
    return [(r.code, r.enhanced, r.lines) for r in out]


@settings(max_examples=300, deadline=None)
@given(st.lists(lines, min_size=1, max_size=6))
def test_cached_parse_equals_fresh(parts):
    data = b"".join(code + sep + text + b"\r\n" for code, sep, text in parts)
    if not data.endswith(b"\r\n") or parts[-1][1] == b"-":
        data += parts[-1][0] + b" end\r\n"
    smtp_client._ONE_LINE.clear()
    try:
        fresh = _parse([data])
    except ReplyError:
        return
    again = _parse([data])                       # the cache is warm now
    split = _parse([data[:len(data) // 2], data[len(data) // 2:]])
    smtp_client._ONE_LINE.clear()
    assert again == fresh and split == fresh


def test_multiline_continuation_never_uses_the_cache():
    smtp_client._ONE_LINE.clear()
    _parse([b"250 Ok\r\n"])
    assert b"250 Ok" in smtp_client._ONE_LINE
    # "250 Ok" as the last line of a multi-line reply belongs to that reply
    assert _parse([b"250-first\r\n250 Ok\r\n"]) == [(250, "", ["first", "Ok"])]
