"""Runs of body lines (take_runs) give the same stored lines as the records (take_records)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from postel.cleanup.message import MessageState, Settings
from postel.cleanup.service import content_lines

LIMIT = 12


def state() -> MessageState:
    return MessageState(Settings(myhostname="mx.example.com", line_length_limit=LIMIT),
                        "QID1", now=0.0)


def reference(records: list, cont: bytearray) -> list:
    """reference - the per-record joining of L pieces to their N record."""
    lines = []
    for kind, line in records:
        if kind == b"L":
            cont += line
            continue
        lines.append(bytes(cont) + line)
        cont.clear()
    return lines


def by_runs(content: bytes, chunk: int) -> list:
    s, cont, out = state(), bytearray(), []
    for i in range(0, len(content), chunk):
        s.feed(content[i:i + chunk])
        out += content_lines(s.take_runs(), cont, s.conts > 0)
    s.finish()
    out += content_lines(s.take_runs(), cont, s.conts > 0)
    return out


def by_records(content: bytes, chunk: int, sizes: list | None = None) -> list:
    s, cont, out, recs = state(), bytearray(), [], []
    for i in range(0, len(content), chunk):
        s.feed(content[i:i + chunk])
        recs += s.take_records()
    s.finish()
    recs += s.take_records()
    out = reference(recs, cont)
    if sizes is not None:
        # The size counts each stored line with one LF, a piece without.
        sizes += [s.size, sum(len(p) + (k == b"N") for k, p in recs)]
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=12),
       st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=1, max_size=12),
       st.integers(min_value=1, max_value=64))
def test_runs_store_the_same_lines(lines, eols, chunk):
    body = b"".join(line + eols[i % len(eols)] for i, line in enumerate(lines))
    content = b"Subject: s\r\nX-Long: " + b"y" * 20 + b"\r\n\r\n" + body
    sizes: list = []
    assert by_runs(content, chunk) == by_records(content, chunk, sizes)
    assert sizes[0] == sizes[1]


def test_runs_are_lists_and_records_expand_them():
    s = state()
    s.feed(b"Subject: s\r\n\r\n")
    s.take_runs()
    s.feed(b"one\r\ntwo\r\n")
    runs = s.take_runs()
    assert runs == [[b"one", b"two"]]
    s.feed(b"three\r\n")
    assert s.take_records() == [(b"N", b"three")]


def test_bare_lf_in_bulk_body_is_a_line_end():
    s = state()
    s.feed(b"Subject: s\r\n\r\n")
    s.take_runs()
    s.feed(b"a\r\nb\nc\r\r\n")
    assert s.take_records() == [(b"N", b"a"), (b"N", b"b"), (b"N", b"c\r")]


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


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=16).map(lambda b: bytes(b"ab\r"[x % 3] for x in b)),
                max_size=14),
       st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=1, max_size=14),
       st.integers(min_value=1, max_value=300))
def test_long_lines_near_the_limit_in_bulk(lines, eols, chunk):
    body = b"".join(line + eols[i % len(eols)] for i, line in enumerate(lines))
    s, recs = state(), []
    content = b"Subject: s\r\n\r\n" + body
    for i in range(0, len(content), chunk):
        s.feed(content[i:i + chunk])
        recs += s.take_records()
    s.finish()
    recs += s.take_records()
    assert recs[2:] == expected(body)
