"""postel.ipc.attr fast paths: coarse deadlines, decoder state, same results as before."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postel.ipc import attr
from postel.ipc.attr import (
    DEFAULT_LIMITS,
    AttrDecoder,
    AttrError,
    Limits,
    encode,
    read_attrs,
    wait_coarse,
)


@pytest.fixture
def coarse(monkeypatch):
    """Make every limit of 0.05 s or more use the watchdog, ticking every 10 ms."""
    monkeypatch.setattr(attr, "COARSE_MIN", 0.05)
    monkeypatch.setattr(attr, "COARSE_TICK", 0.01)


async def _pair(tmp_path, handler):
    path = str(tmp_path / "s")
    server = await asyncio.start_unix_server(handler, path)
    reader, writer = await asyncio.open_unix_connection(path)
    return server, reader, writer


def test_coarse_deadline_expires_as_timeout_error(tmp_path, coarse):
    async def main():
        async def handler(r, w):
            await r.read(1)                   # never answers
            w.close()
        server, reader, writer = await _pair(tmp_path, handler)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            await read_attrs(reader, timeout=0.1)
        waited = time.monotonic() - t0
        assert not attr._WATCHDOG.armed
        writer.close()
        server.close()
        return waited
    assert 0.1 <= asyncio.run(main()) < 5


def test_coarse_deadline_not_reached_returns_the_list(tmp_path, coarse):
    async def main():
        async def handler(r, w):
            await asyncio.sleep(0.02)
            w.write(encode({"n": 7}))
            await w.drain()
            await r.read(1)
            w.close()
        server, reader, writer = await _pair(tmp_path, handler)
        lst = await read_attrs(reader, timeout=0.5)
        assert not attr._WATCHDOG.armed
        await asyncio.sleep(0.6)             # an expired deadline must not fire later
        writer.close()
        server.close()
        return lst.get_int("n")
    assert asyncio.run(main()) == 7


def test_coarse_deadline_leaves_foreign_cancel_alone(coarse):
    async def main():
        async def victim():
            await wait_coarse(asyncio.sleep(10), 0.2)
        task = asyncio.ensure_future(victim())
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()
    assert asyncio.run(main()) is True


def test_coarse_and_precise_paths_agree(monkeypatch):
    async def main(limit):
        results = []
        results.append(await wait_coarse(asyncio.sleep(0, "ok"), limit))
        try:
            await wait_coarse(asyncio.sleep(5), limit)
        except TimeoutError:
            results.append("timeout")
        return results
    precise = asyncio.run(main(0.05))
    monkeypatch.setattr(attr, "COARSE_MIN", 0.01)
    monkeypatch.setattr(attr, "COARSE_TICK", 0.01)
    assert asyncio.run(main(0.05)) == precise == ["ok", "timeout"]


def test_wait_coarse_without_limit():
    assert asyncio.run(wait_coarse(asyncio.sleep(0, 3), None)) == 3


# ------------------------------------------------------------ decoder head table

_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=12)
_VALUE = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"a:b", b"x,y\n", b"=1:,"]))
_LISTS = st.lists(st.lists(st.tuples(_NAME, _VALUE), max_size=6), min_size=1, max_size=4)


def _decode_all(data: bytes, cuts: list[int], limits: Limits = DEFAULT_LIMITS) -> list | str:
    dec = AttrDecoder(limits)
    out = []
    try:
        prev = 0
        for p in sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]:
            out += [lst.items() for lst in dec.feed(data[prev:p])]
            prev = p
        dec.eof()
    except AttrError as exc:
        return str(exc)
    return out


@settings(max_examples=200, deadline=None)
@given(_LISTS, st.lists(st.integers(min_value=0), max_size=5))
def test_head_table_gives_the_same_lists(lists, cuts):
    wire = b"".join(encode(lst) for lst in lists)
    attr._HEAD_TABLES.clear()
    cold = _decode_all(wire, cuts)
    warm = _decode_all(wire, cuts[::-1])
    assert cold == warm == [[(n, v) for n, v in lst] for lst in lists]


def test_head_table_respects_each_decoders_name_limit():
    wire = encode({"longername": "v"})
    assert _decode_all(wire, []) == [[("longername", b"v")]]      # head now known
    short = _decode_all(wire, [], Limits(max_name=4))
    assert isinstance(short, str) and "longer than 4 octets" in short


def test_head_table_stays_bounded(monkeypatch):
    monkeypatch.setattr(attr, "_MAX_HEADS", 10)
    attr._HEAD_TABLES.clear()
    wire = b"".join(encode({f"n{i}": "x" * i}) for i in range(50))
    assert len(_decode_all(wire, [7, 99])) == 50
    assert len(attr._heads_for(64)) == 10


# ------------------------------------------------------------ encode text fast path

def _reference_encode(pairs) -> bytes:
    out = b""
    for name, value in pairs:
        if isinstance(value, bool):
            vb = b"1" if value else b"0"
        elif isinstance(value, int):
            vb = str(value).encode()
        elif isinstance(value, str):
            vb = value.encode("utf-8", "surrogateescape")
        else:
            vb = bytes(value)
        out += name.encode() + b"=" + str(len(vb)).encode() + b":" + vb + b","
    return out + b"\n"


_ENC_VALUE = st.one_of(st.text(max_size=20), st.text(alphabet="abc,:=\n", max_size=8),
                       st.binary(max_size=20), st.integers(), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAME, _ENC_VALUE), max_size=8))
def test_encode_fast_and_generic_paths_agree(pairs):
    wire = _reference_encode(pairs)
    assert encode(pairs) == wire
    assert encode(iter(pairs)) == wire               # an iterator is walked once only
    assert encode(dict(pairs)) == _reference_encode(dict(pairs).items())
    grouped: dict = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    flat = [(n, v) for n, vs in grouped.items() for v in vs]
    assert encode(grouped) == encode({n: tuple(vs) for n, vs in grouped.items()}) \
        == _reference_encode(flat)


def test_encode_text_path_still_checks_names_and_types():
    with pytest.raises(ValueError):
        encode({"Bad": "x"})
    with pytest.raises(TypeError):
        encode({"ok": "x", "f": 1.5})
    assert encode({"status": 0, "queue_id": "Q1"}) == b"status=1:0,queue_id=2:Q1,\n"


class _SlotReader:
    """A reader that takes no attributes: its decoder lives in the weak map."""

    __slots__ = ("parts", "__weakref__")

    def __init__(self, parts):
        self.parts = list(parts)

    async def read(self, n):
        return self.parts.pop(0) if self.parts else b""


def test_read_attrs_keeps_read_ahead_on_any_reader():
    async def main(reader):
        a = await read_attrs(reader, timeout=60)
        b = await read_attrs(reader, timeout=60)
        with pytest.raises(EOFError):
            await read_attrs(reader)
        return a.get("n"), b.get("n")
    wire = encode({"n": "1"}) + encode({"n": "2"})
    assert asyncio.run(main(_SlotReader([wire[:5], wire[5:]]))) == ("1", "2")

    async def stream():
        sr = asyncio.StreamReader()
        sr.feed_data(wire)
        sr.feed_eof()
        got = await main(sr)
        return got, isinstance(getattr(sr, attr._DEC_ATTR), AttrDecoder)
    assert asyncio.run(stream()) == (("1", "2"), True)


def test_envelope_attrs_pairs():
    from postel.ipc.cleanup_client import envelope_attrs
    got = envelope_attrs("s@x", ["a@x", ("b@x", None, "SUCCESS,FAILURE"), ["c@x"], ("d@x", "rfc822;d@x", 4)],
                         {"client_port": 25, "helo_name": None, "rcpt": "no", "flag": True, "t": 1.5,
                          "raw": b"\xff"})
    assert got == [("request", "envelope"), ("sender", "s@x"), ("client_port", 25), ("flag", True),
                   ("t", "1.5"), ("raw", b"\xff"),
                   ("rcpt", "a@x"), ("orcpt", ""), ("notify", 0),
                   ("rcpt", "b@x"), ("orcpt", ""), ("notify", 6),
                   ("rcpt", "c@x"), ("orcpt", ""), ("notify", 0),
                   ("rcpt", "d@x"), ("orcpt", "rfc822;d@x"), ("notify", 4)]
