"""DotStuffer's whole-chunk encoding equals the per-line rules, however content is cut."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postel.protocol.smtp_client import DotStuffer


def per_line(content: bytes) -> bytes:
    """per_line - RFC 5321 4.5.2 line by line: CR LF ends, a leading dot doubled."""
    lines = content.split(b"\n")
    last = lines.pop()
    out = b""
    for ln in lines:
        ln = ln[:-1] if ln.endswith(b"\r") else ln
        out += (b"." if ln[:1] == b"." else b"") + ln + b"\r\n"
    if last:
        out += (b"." if last[:1] == b"." else b"") + last + b"\r\n"
    return out + b".\r\n"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=40).map(lambda b: bytes(b"a.\r\n"[x % 4] for x in b)),
       st.lists(st.integers(min_value=0, max_value=40), max_size=5))
def test_dot_stuffing_matches_per_line(content, cuts):
    cuts = sorted({min(c, len(content)) for c in cuts})
    pieces = [content[i:j] for i, j in zip([0, *cuts], [*cuts, len(content)], strict=True)]
    s = DotStuffer()
    assert b"".join(s.feed(p) for p in pieces) + s.end() == per_line(content)
