"""channel - smtpd's client connection: a buffered protocol with an idle timer

SYNOPSIS
    from postel.smtpd.channel import Channel, open_channel

    chan = await open_channel(sock, timeout=300.0)
    data = await chan.read()        # b"" at end of input; TimeoutError
    data = chan.take()              # the same without waiting: None if nothing yet
    if data is None:
        await chan.wait()           # then reading = False, waiter = None
    chan.write(reply_bytes)
    await chan.drain()              # only waits when the peer is slow
    chan.close()

DESCRIPTION
    The I/O layer under one smtpd session, in place of asyncio's
    StreamReader/StreamWriter pair.  The event loop hands received bytes
    to data_received(), which keeps them until the session asks with
    read(); the session feeds them to the sans-IO SMTPServerConnection.

    Idle timeout: each read() may wait at most `timeout` seconds
    (smtpd_timeout) for input, after which it raises TimeoutError.  A
    session has one timer, not one per read: the timer is armed when a read
    starts waiting and no timer is pending; when it fires it compares the
    start of the current wait with the clock and either reports the timeout
    or re-arms itself for the moment the current wait would expire.  Time
    spent between reads (restriction look-ups, cleanup) never counts, as
    with a per-read timer.

    Flow control, both ways: reading from the socket pauses while more
    than HIGH_WATER bytes wait for the session (a client pushing a large
    DATA faster than cleanup takes it), and drain() waits while the
    transport's write buffer is above its high-water mark.

DIAGNOSTICS
    read() and drain() raise ConnectionResetError("Connection lost") once
    the connection is lost (drain) or raise TimeoutError (read).  read()
    returns b"" at the client's end of input.
"""

from __future__ import annotations

import asyncio
import socket

HIGH_WATER = 262144     # bytes received and not yet read before reading pauses


class Channel(asyncio.Protocol):
    """Channel - one client connection, read by one session task."""

    __slots__ = ("loop", "timeout", "transport", "chunks", "buffered", "eof", "lost",
                 "waiter", "read_since", "reading", "timer", "read_paused",
                 "write_paused", "write_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.eof = False
        self.lost = False
        self.waiter: asyncio.Future | None = None
        self.read_since = 0.0
        self.reading = False
        self.timer: asyncio.TimerHandle | None = None
        self.read_paused = False
        self.write_paused = False
        self.write_waiter: asyncio.Future | None = None

    # -- asyncio.Protocol callbacks -------------------------------------------

    def connection_made(self, transport) -> None:
        """connection_made - remember the transport."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """data_received - keep the bytes for read(); pause when too many wait."""
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        """eof_received - the client has shut down its side: close ours too."""
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """connection_lost - wake any waiter; later reads see end of input."""
        self.eof = self.lost = True
        self._wake()
        w = self.write_waiter
        if w is not None:
            self.write_waiter = None
            if not w.done():
                w.set_exception(ConnectionResetError("Connection lost"))

    def pause_writing(self) -> None:
        """pause_writing - the transport's write buffer is full."""
        self.write_paused = True

    def resume_writing(self) -> None:
        """resume_writing - the write buffer has drained."""
        self.write_paused = False
        w = self.write_waiter
        if w is not None:
            self.write_waiter = None
            if not w.done():
                w.set_result(None)

    def _wake(self) -> None:
        """_wake - let a waiting read() return."""
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    # -- the idle timer ----------------------------------------------------------

    def _on_timer(self) -> None:
        """_on_timer - time out the current read, or re-arm for its deadline."""
        self.timer = None
        if not self.reading:
            return                  # the next read arms a new timer
        deadline = self.read_since + self.timeout
        if deadline - self.loop.time() > 0.001:
            self.timer = self.loop.call_at(deadline, self._on_timer)
            return
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_exception(TimeoutError())

    # -- the session's side ----------------------------------------------------

    async def read(self) -> bytes:
        """read - all bytes received so far, waiting up to timeout; b"" at end."""
        if not self.chunks:
            if self.eof:
                return b""
            fut = self.wait()
            try:
                await fut
            finally:
                self.reading = False
                self.waiter = None
            if not self.chunks:
                return b""
        return self.take()

    def wait(self) -> asyncio.Future:
        """wait - start a read's wait: a future done when input or end of input
        arrives, or failing with TimeoutError.  The caller awaits it, then sets
        reading False and waiter None (read() without its coroutine layer)."""
        loop = self.loop
        fut = self.waiter = loop.create_future()
        self.read_since = loop.time()
        self.reading = True
        if self.timer is None:
            self.timer = loop.call_at(self.read_since + self.timeout, self._on_timer)
        return fut

    def take(self) -> bytes | None:
        """take - all bytes received so far; b"" at end of input; None: wait()."""
        if not self.chunks:
            return b"" if self.eof else None
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self.read_paused:
            self.read_paused = False
            if not self.lost:
                self.transport.resume_reading()
        return data

    def write(self, data: bytes) -> None:
        """write - queue bytes for the client (written at once when possible)."""
        if not self.lost:
            self.transport.write(data)

    async def drain(self) -> None:
        """drain - wait while the write buffer is full; raise if the client is gone."""
        if self.lost:
            raise ConnectionResetError("Connection lost")
        if self.write_paused:
            fut = self.write_waiter = self.loop.create_future()
            await fut

    def close(self) -> None:
        """close - stop the timer, close the connection after pending writes."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.transport is not None:
            self.transport.close()


async def open_channel(sock: socket.socket, timeout: float) -> Channel:
    """open_channel - a Channel over an accepted socket (closed on failure)."""
    loop = asyncio.get_running_loop()
    chan = Channel(loop, timeout)
    try:
        await loop.connect_accepted_socket(lambda: chan, sock=sock)
    except BaseException:
        sock.close()
        raise
    return chan
