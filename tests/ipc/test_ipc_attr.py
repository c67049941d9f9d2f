"""Tests for postel.ipc.attr: round trip, limits, malformed input, stream I/O."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postel.ipc.attr import (
    AttrDecoder,
    AttrError,
    AttrList,
    Limits,
    encode,
    read_attrs,
    read_chunks,
    serve_requests,
    write_attrs,
    write_chunks,
)

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=64)
ATTR_LISTS = st.lists(st.tuples(NAMES, st.binary(max_size=300)), max_size=20)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """split_at - data cut at the given offsets (sorted, deduplicated)."""
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


# ------------------------------------------------------------------ round trip

def test_encode_exact_wire_form():
    wire = encode({"request": "resolve", "address": "user@example.com", "n": 5, "ok": True})
    assert wire == b"request=7:resolve,address=16:user@example.com,n=1:5,ok=1:1,\n"


def test_encode_empty_list_is_lone_terminator():
    assert encode({}) == b"\n"
    assert AttrDecoder().feed(b"\n") == [AttrList()]


def test_dict_list_value_repeats_the_name():
    lst = AttrDecoder().feed(encode({"rcpt": ["a@x", "b@y"], "size": 12}))[0]
    assert lst.getall("rcpt") == [b"a@x", b"b@y"]
    assert lst.get("rcpt") == "a@x"
    assert lst.get_int("size") == 12
    assert lst.names() == ["rcpt", "rcpt", "size"]


def test_attrlist_accessors():
    lst = AttrDecoder().feed(encode([("a", b"\xff\x00"), ("n", "-3"), ("t", "h\u00e9")]))[0]
    assert lst.get_bytes("a") == b"\xff\x00"
    assert lst.get("a") == "\udcff\x00"        # surrogateescape: survives re-encoding
    assert encode([("a", lst.get("a"))]) == encode([("a", b"\xff\x00")])
    assert lst.get_int("n") == -3
    assert lst.get("t") == "h\u00e9"
    assert "a" in lst and "zz" not in lst
    assert lst.get("zz") is None and lst.get_int("zz", 7) == 7
    assert lst.get_bytes("zz") is None
    assert len(lst) == 3


@pytest.mark.parametrize("value", [b"", b" 1", b"1_0", b"+1", b"x", b"1.5"])
def test_get_int_rejects_non_integers(value):
    lst = AttrDecoder().feed(encode([("n", value)]))[0]
    with pytest.raises(AttrError, match="attribute n: bad integer"):
        lst.get_int("n")


def test_encode_rejects_bad_names_and_types():
    with pytest.raises(ValueError, match="bad attribute name"):
        encode({"Bad": "x"})
    with pytest.raises(ValueError):
        encode({"": "x"})
    with pytest.raises(ValueError):
        encode({"a" * 65: "x"})
    with pytest.raises(TypeError, match="attribute x"):
        encode({"x": 1.5})


def test_encode_accepts_an_attrlist():
    lst = AttrDecoder().feed(encode({"a": "1", "b": b"2"}))[0]
    assert encode(lst) == encode({"a": "1", "b": b"2"})


@settings(max_examples=300, deadline=None)
@given(lists=st.lists(ATTR_LISTS, min_size=1, max_size=4),
       cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_round_trip_any_chunking(lists, cuts):
    wire = b"".join(encode(items) for items in lists)
    dec = AttrDecoder(Limits(max_count=100, max_total=100_000))
    got: list[AttrList] = []
    for piece in split_at(wire, cuts):
        got.extend(dec.feed(piece))
    assert [lst.items() for lst in got] == [list(items) for items in lists]
    assert not dec.pending()
    dec.eof()  # clean end: no exception


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_random_bytes_only_ever_raise_attrerror(data, cuts):
    dec = AttrDecoder(Limits(max_name=8, max_value=50, max_count=5, max_total=120))
    try:
        for piece in split_at(data, cuts):
            for lst in dec.feed(piece):
                assert isinstance(lst, AttrList)
        dec.eof()
    except AttrError as exc:
        assert str(exc)


# ------------------------------------------------------------------ malformed input

@pytest.mark.parametrize("wire, message", [
    (b"A=1:x,\n", "bad attribute name: unexpected octet b'A'"),
    (b"=1:x,\n", "bad attribute name"),
    (b"ab-c=1:x,\n", "attribute ab: bad octet b'-' in name"),
    (b"a:1:x,\n", "attribute a: bad octet b':'"),
    (b"a=:x,\n", "attribute a: missing value length"),
    (b"a=01:x,\n", "attribute a: value length has a leading zero"),
    (b"a=1x:x,\n", "attribute a: expected ':' after value length"),
    (b"a=-1:x,\n", "attribute a: missing value length"),
    (b"a=12345678901:", "attribute a: value length has more than 10 digits"),
    (b"a=1:xy\n", "attribute a: expected ',' after 1-octet value, found b'y'"),
    (b"a=1:x;\n", "expected ','"),
    (b"a=2:x,\n\n", "expected ','"),
])
def test_malformed_input_names_the_problem(wire, message):
    with pytest.raises(AttrError, match=message.replace("(", r"\(")):
        AttrDecoder().feed(wire)


def test_error_carries_stream_offset_and_decoder_stays_failed():
    dec = AttrDecoder()
    dec.feed(b"ok=2:hi,\n")
    with pytest.raises(AttrError, match=r"stream offset 9"):
        dec.feed(b"BAD=")
    with pytest.raises(AttrError, match="stream offset 9"):
        dec.feed(b"ok=2:hi,\n")


def test_limit_name_length():
    with pytest.raises(AttrError, match="longer than 8 octets"):
        AttrDecoder(Limits(max_name=8)).feed(b"abcdefghi=1:x,\n")
    # detected before the '=' arrives
    with pytest.raises(AttrError, match="longer than 64 octets"):
        AttrDecoder().feed(b"a" * 65)
    assert AttrDecoder().feed(b"a" * 64 + b"=0:,\n")[0].names() == ["a" * 64]


def test_limit_value_length_detected_before_the_value_arrives():
    dec = AttrDecoder(Limits(max_value=10))
    with pytest.raises(AttrError, match="attribute data: value length 11 exceeds limit 10"):
        dec.feed(b"data=11:")
    assert AttrDecoder(Limits(max_value=10)).feed(b"data=10:0123456789,\n")


def test_limit_attribute_count():
    wire = encode([("a", "1")] * 4)
    assert AttrDecoder(Limits(max_count=4)).feed(wire)
    with pytest.raises(AttrError, match="more than 3 attributes"):
        AttrDecoder(Limits(max_count=3)).feed(wire)


def test_limit_total_size():
    wire = encode([("a", b"x" * 10)] * 3)       # 3 x 16 octets + LF
    assert AttrDecoder(Limits(max_total=48)).feed(wire)
    with pytest.raises(AttrError, match="attribute list longer than 40 octets"):
        AttrDecoder(Limits(max_total=40)).feed(wire)


def test_limit_total_counts_partial_header():
    dec = AttrDecoder(Limits(max_total=20))
    dec.feed(b"a=1:x,b=1:x,c=1:x,")
    with pytest.raises(AttrError, match="longer than 20"):
        dec.feed(b"dd=1")


def test_total_resets_between_lists():
    dec = AttrDecoder(Limits(max_total=10))
    for _ in range(5):
        assert len(dec.feed(b"a=3:xyz,\n")) == 1


def test_truncated_stream():
    dec = AttrDecoder()
    assert dec.feed(b"a=5:ab") == []
    assert dec.pending()
    with pytest.raises(AttrError, match="truncated attribute list"):
        dec.eof()
    dec2 = AttrDecoder()
    dec2.feed(b"a=1:x,")      # complete attribute, missing terminator
    with pytest.raises(AttrError, match="truncated"):
        dec2.eof()


def test_large_value_in_many_pieces():
    value = bytes(range(256)) * 4096           # 1 MiB
    wire = encode({"data": value, "n": 1})
    dec = AttrDecoder(Limits(max_value=2 << 20, max_total=3 << 20))
    got = []
    for i in range(0, len(wire), 4096):
        got += dec.feed(wire[i:i + 4096])
    assert len(got) == 1 and got[0].get_bytes("data") == value


def test_next_list_parses_lazily_with_new_limits():
    dec = AttrDecoder(Limits(max_value=4))
    dec.append(encode({"a": "1"}) + encode({"data": b"x" * 100}))
    assert dec.next_list().get("a") == "1"
    dec.set_limits(Limits(max_value=1000))
    assert dec.next_list().get_bytes("data") == b"x" * 100


# ------------------------------------------------------------------ stream I/O

def run(coro):
    return asyncio.run(coro)


async def pipe_pair(tmp_path, handler):
    """pipe_pair - a UNIX socket server running handler, and a client connection."""
    path = str(tmp_path / "s")
    server = await asyncio.start_unix_server(handler, path)
    reader, writer = await asyncio.open_unix_connection(path)
    return server, reader, writer


def test_read_write_attrs_keep_read_ahead(tmp_path):
    async def main():
        async def handler(r, w):
            # two lists in one write: the second must not be lost
            w.write(encode({"n": 1}) + encode({"n": 2}))
            await w.drain()
            w.close()
        server, reader, writer = await pipe_pair(tmp_path, handler)
        a = await read_attrs(reader, timeout=5)
        b = await read_attrs(reader, timeout=5)
        with pytest.raises(EOFError):
            await read_attrs(reader, timeout=5)
        writer.close()
        server.close()
        return a.get_int("n"), b.get_int("n")
    assert run(main()) == (1, 2)


def test_read_attrs_truncated_and_timeout(tmp_path):
    async def main():
        async def handler(r, w):
            w.write(b"a=10:abc")
            await w.drain()
            if await r.read(1) == b"c":    # client asks us to close
                w.close()
        server, reader, writer = await pipe_pair(tmp_path, handler)
        with pytest.raises(TimeoutError):
            await read_attrs(reader, timeout=0.05)
        writer.write(b"c")
        with pytest.raises(AttrError, match="truncated"):
            await read_attrs(reader, timeout=5)
        writer.close()
        server.close()
    run(main())


def test_serve_requests_loop(tmp_path):
    async def main():
        seen = []

        async def handle(req: AttrList):
            seen.append(req.get("q"))
            return {"status": 0, "echo": req.get_bytes("q")}

        async def handler(r, w):
            n = await serve_requests(r, w, handle, idle_timeout=5)
            seen.append(n)
            w.close()
        server, reader, writer = await pipe_pair(tmp_path, handler)
        replies = []
        for q in ("one", "two"):
            await write_attrs(writer, {"q": q})
            replies.append((await read_attrs(reader, timeout=5)).get("echo"))
        writer.write_eof()
        with pytest.raises(EOFError):
            await read_attrs(reader, timeout=5)
        writer.close()
        server.close()
        return replies, seen
    replies, seen = run(main())
    assert replies == ["one", "two"]
    assert seen == ["one", "two", 2]


def test_chunks_round_trip(tmp_path):
    content = b"line\r\n" * 50000     # 300 KB: several chunks
    async def main():
        got = []

        async def handler(r, w):
            got.append(await read_chunks(r, max_size=len(content), timeout=5))
            await write_attrs(w, {"status": 0})
        server, reader, writer = await pipe_pair(tmp_path, handler)
        await write_chunks(writer, content)
        reply = await read_attrs(reader, timeout=5)
        writer.close()
        server.close()
        return got[0], reply
    body, reply = run(main())
    assert body == content and reply.get_int("status") == 0


def test_chunks_over_max_size(tmp_path):
    async def main():
        errors = []

        async def handler(r, w):
            try:
                await read_chunks(r, max_size=10, timeout=5)
            except AttrError as exc:
                errors.append(str(exc))
            w.close()
        server, reader, writer = await pipe_pair(tmp_path, handler)
        await write_chunks(writer, b"x" * 11)
        await reader.read()
        writer.close()
        server.close()
        return errors
    assert run(main()) == ["chunked content exceeds 10 octets"]


def test_encode_value_types():
    wire = encode([("a", bytearray(b"xy")), ("b", memoryview(b"z")), ("c", False),
                   ("d", -12), ("e", ("1", b"2"))])
    assert wire == b"a=2:xy,b=1:z,c=1:0,d=3:-12,e=1:1,e=1:2,\n"


def test_failed_stream_read_stays_failed(tmp_path):
    async def main():
        async def handler(r, w):
            w.write(b"ok=1:x,\nBAD")
            await w.drain()
            await r.read()
            w.close()
        server, reader, writer = await pipe_pair(tmp_path, handler)
        first = await read_attrs(reader, timeout=5)
        with pytest.raises(AttrError, match="bad attribute name"):
            await read_attrs(reader, timeout=5)
        with pytest.raises(AttrError, match="bad attribute name"):
            await read_attrs(reader, timeout=5)
        writer.close()
        server.close()
        return first
    assert run(main()).get("ok") == "x"
