"""Tests for smtpd's connection layer (channel.py) and per-address caches."""

import asyncio
import ipaddress
import socket

from hypothesis import given
from hypothesis import strategies as st

from postel.protocol import esmtp
from postel.protocol import replies as R
from postel.smtpd import channel as channel_mod
from postel.smtpd.channel import open_channel
from postel.smtpd.restrictions import NetworkList, ip_of


def _run(coro):
    return asyncio.run(coro)


def test_smtpd_channel_read_write_eof():
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        chan = await open_channel(a, timeout=30)
        b.sendall(b"EHLO x\r\n")
        assert await chan.read() == b"EHLO x\r\n"
        chan.write(b"250 ok\r\n")
        await chan.drain()
        assert b.recv(100) == b"250 ok\r\n"
        b.sendall(b"QUIT\r\n")
        b.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            data = await chan.read()
            if not data:
                break
            got += data
        assert got == b"QUIT\r\n"
        assert await chan.read() == b""
        chan.close()
        b.close()
    _run(main())


def test_smtpd_channel_idle_timeout():
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        chan = await open_channel(a, timeout=0.2)
        try:
            await chan.read()
        except TimeoutError:
            timed_out = True
        else:
            timed_out = False
        chan.close()
        b.close()
        return timed_out
    assert _run(main())


def test_smtpd_channel_time_between_reads_does_not_count():
    # smtpd_timeout limits each wait for input, not the session: time the
    # session spends elsewhere (cleanup, look-ups) must not time a read out.
    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        chan = await open_channel(a, timeout=1.0)
        b.sendall(b"x")
        assert await chan.read() == b"x"
        await asyncio.sleep(1.5)            # busy elsewhere, longer than the timeout
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, b.sendall, b"y")
        data = await chan.read()            # the timer armed earlier must re-arm
        chan.close()
        b.close()
        return data
    assert _run(main()) == b"y"


def test_smtpd_channel_pauses_reading_when_full(monkeypatch):
    monkeypatch.setattr(channel_mod, "HIGH_WATER", 1000)

    async def main():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        chan = await open_channel(a, timeout=30)
        sent = 0
        for _ in range(50):
            try:
                sent += b.send(b"z" * 4096)
            except BlockingIOError:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        paused = chan.read_paused
        got = 0
        while got < sent:
            got += len(await chan.read())
            if got < sent:
                try:
                    sent += b.send(b"z" * 10)
                except BlockingIOError:
                    pass
        chan.close()
        b.close()
        return paused, got, sent
    paused, got, sent = _run(main())
    assert paused
    assert got == sent


def test_smtpd_reply_bytes_cached_and_equal():
    r = R.R250_QUEUED.format(qid="ABC")
    assert r.to_bytes() == b"250 2.0.0 Ok: queued as ABC\r\n"
    assert r.to_bytes() is r.to_bytes()
    assert r == R.Reply(250, "2.0.0", "Ok: queued as ABC")
    assert str(R.Reply(250, "", "a\nb")) == "250-a"


_NETS = ["127.0.0.0/8", "10.1.0.0/16", "[::1]/128", "192.0.2.7", "[2001:db8::]/32"]


@given(st.ip_addresses())
def test_smtpd_networklist_cache_same_as_uncached(ip):
    nl = NetworkList(_NETS)
    addr = str(ip)
    first = nl.match(addr)
    assert first == nl._match(addr)
    assert nl.match(addr) == first            # the cached answer
    if isinstance(ip, ipaddress.IPv4Address):
        mapped = "::ffff:" + addr
        assert nl.match(mapped) == first


def test_smtpd_networklist_bad_address():
    nl = NetworkList(_NETS)
    assert not nl.match("not-an-address")
    assert ip_of("not-an-address") is None
    assert nl.match("127.0.0.1") and nl.match("10.1.2.3") and not nl.match("10.2.0.1")


# -- esmtp fast paths against the reference (character loop) versions --------

def _split_bracketed_ref(rest):
    in_quote = False
    i = 1
    while i < len(rest):
        c = rest[i]
        if c == "\\" and in_quote:
            i += 2
            continue
        if c == '"':
            in_quote = not in_quote
        elif c == ">" and not in_quote:
            return rest[1:i], rest[i + 1:]
        i += 1
    return None


def _bad_chars_ref(address):
    local, at, domain = address.rpartition("@")
    rest = domain if at and esmtp._QUOTED.match(local) else address
    return any(c in "<> " or ord(c) < 0x20 or ord(c) == 0x7F for c in rest)


_PATHISH = st.text(alphabet=st.sampled_from('ab@.<> "\\\x00\x1f\x7f\x80é=-'), max_size=30)


@given(_PATHISH)
def test_smtpd_esmtp_split_bracketed_same_as_reference(text):
    rest = "<" + text
    assert esmtp._split_bracketed(rest) == _split_bracketed_ref(rest)


@given(_PATHISH)
def test_smtpd_esmtp_bad_chars_same_as_reference(text):
    assert esmtp._bad_chars(text) == _bad_chars_ref(text)
