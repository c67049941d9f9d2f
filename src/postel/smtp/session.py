"""session - one SMTP or LMTP connection of the smtp(8)/lmtp(8) client

SYNOPSIS
    from postel.smtp.session import Session, SessionError, Timeouts, open_session
    sess = await open_session(server, helo_name, timeouts, lmtp=False)
    await sess.send(data, "sending MAIL FROM")
    reply = await sess.read_reply(timeouts.mail, "sending MAIL FROM")
    await sess.quit()

DESCRIPTION
    The I/O shell around the sans-IO pieces of postel.protocol.smtp_client:
    it connects (TCP, or a UNIX-domain socket for LMTP), reads the
    greeting, says EHLO (LHLO for LMTP; HELO when the server rejects
    EHLO), and then sends commands and reads replies under the time limits
    of the current stage.  Replies that arrive together (PIPELINING) are
    kept in order until they are read.

    Every problem with the connection itself raises SessionError, which
    carries the Outcome for the recipients still open, with Postfix's
    texts:

        connect to mx.example[192.0.2.1]:25: Connection refused
        host mx.example[192.0.2.1] refused to talk to me: 554 5.7.1 Go away
        conversation with mx.example[192.0.2.1] timed out while sending RCPT TO
        lost connection with mx.example[192.0.2.1] while sending message body

STANDARDS
    RFC 5321 (SMTP) 3.1, 4.1.1.1, 4.5.3.2 (time limits); RFC 2033 (LMTP)
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections import deque
from dataclasses import dataclass, field

from postel.protocol.smtp_client import (
    QUIT_COMMAND,
    ReplyError,
    ReplyParser,
    ServerReply,
    ehlo_command,
    helo_command,
    parse_ehlo,
)
from postel.smtp.nexthop import Server

READ_SIZE = 65536

# Stages, as Postfix names them in "... while STAGE".
ST_GREETING = "receiving the initial server greeting"
ST_MAIL = "sending MAIL FROM"
ST_RCPT = "sending RCPT TO"
ST_DATA = "sending DATA command"
ST_BODY = "sending message body"
ST_DOT = "sending end of data -- message may be sent more than once"
ST_RSET = "sending RSET command"
ST_QUIT = "sending QUIT command"


def st_helo(verb: str) -> str:
    """the handshake stage name for EHLO, HELO or LHLO."""
    return f"performing the {verb} handshake"


@dataclass(slots=True)
class Outcome:
    """Outcome - what happens to a recipient: sent, bounce or defer."""

    kind: str                 # "sent" | "bounce" | "defer"
    dsn: str
    text: str
    relay: str = "none"
    diag: tuple[str, str] | None = None
    mta: tuple[str, str] | None = None


class SessionError(Exception):
    """SessionError - the connection failed; outcome applies to open recipients."""

    def __init__(self, outcome: Outcome, established: bool = False):
        super().__init__(outcome.text)
        self.outcome = outcome
        self.established = established     # the server had greeted us


@dataclass(slots=True)
class Timeouts:
    """Timeouts - smtp_*_timeout values in seconds (None: no limit)."""

    connect: float | None = 30.0
    helo: float | None = 300.0
    mail: float | None = 300.0
    rcpt: float | None = 300.0
    data_init: float | None = 120.0
    data_xfer: float | None = 180.0
    data_done: float | None = 600.0
    quit: float | None = 300.0
    rset: float | None = 20.0


def reply_outcome(server: Server, reply: ServerReply, command: str) -> Outcome:
    """reply_outcome - Postfix's "host X said: ... (in reply to CMD command)"."""
    dsn = reply.enhanced or f"{reply.code // 100}.0.0"
    text = f"host {server.namaddr} said: {reply} (in reply to {command} command)"
    kind = "bounce" if reply.code >= 500 else "defer"
    return Outcome(kind, dsn, text, server.namaddrport, ("smtp", str(reply)),
                   ("dns", server.host))


def success_outcome(server: Server, reply: ServerReply) -> Outcome:
    """success_outcome - a 2xx reply to end of data."""
    dsn = reply.enhanced if reply.enhanced.startswith("2") else "2.0.0"
    return Outcome("sent", dsn, str(reply), server.namaddrport, ("smtp", str(reply)),
                   ("dns", server.host))


def _errtext(exc: BaseException) -> str:
    """_errtext - an OSError as strerror text ("Connection refused")."""
    if isinstance(exc, TimeoutError):
        return "Connection timed out"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class _ClientProtocol(asyncio.Protocol):
    """_ClientProtocol - the connection without StreamReader/StreamWriter: replies parsed on arrival."""

    __slots__ = ("transport", "parser", "replies", "error", "eof", "waiter", "paused",
                 "drain_waiter", "lost")

    def __init__(self, parser: ReplyParser, replies: deque):
        self.transport: asyncio.Transport | None = None
        self.parser = parser
        self.replies = replies
        self.error: BaseException | None = None    # the parser's, raised by read_reply
        self.eof = False
        self.waiter: asyncio.Future | None = None  # read_reply waiting for data
        self.paused = False                        # over the write buffer's high water
        self.drain_waiter: asyncio.Future | None = None
        self.lost = False

    def connection_made(self, transport) -> None:
        """connection_made - keep the transport."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """data_received - parse complete replies at once (PIPELINING keeps them in order)."""
        if self.error is None:
            try:
                self.replies.extend(self.parser.feed(data))
            except Exception as exc:        # noqa: BLE001 - raised again by read_reply
                self.error = exc
        self._wake()

    def eof_received(self) -> bool:
        """eof_received - the server closed its side (as StreamReaderProtocol: keep ours open)."""
        self.eof = True
        self._wake()
        return True

    def connection_lost(self, exc) -> None:
        """connection_lost - wake whoever waits."""
        self.eof = self.lost = True
        self._wake()
        self.paused = False
        self._wake_drain()

    def pause_writing(self) -> None:
        """pause_writing - the transport's buffer is over its high-water mark."""
        self.paused = True

    def resume_writing(self) -> None:
        """resume_writing - below the low-water mark again."""
        self.paused = False
        self._wake_drain()

    def _wake(self) -> None:
        """_wake - end read_reply's wait."""
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def _wake_drain(self) -> None:
        """_wake_drain - end send's wait for the buffer to drain."""
        w = self.drain_waiter
        if w is not None:
            self.drain_waiter = None
            if not w.done():
                w.set_result(None)


def _expire(waiter: asyncio.Future) -> None:
    """_expire - a wait's deadline passed."""
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _wait(proto: _ClientProtocol, attr: str, deadline: float | None) -> None:
    """_wait - until the protocol wakes proto.<attr> or the deadline (TimeoutError)."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    setattr(proto, attr, waiter)
    if deadline is None:
        await waiter
        return
    timer = loop.call_at(deadline, _expire, waiter)
    try:
        await waiter
    finally:
        timer.cancel()


@dataclass(slots=True)
class Session:
    """Session - an open connection to one server, past the greeting."""

    server: Server
    proto: _ClientProtocol
    lmtp: bool = False
    features: dict[str, str] = field(default_factory=dict)
    esmtp: bool = True
    created: float = field(default_factory=time.monotonic)
    uses: int = 0
    need_rset: bool = False
    broken: bool = False

    # -- errors -------------------------------------------------------------------

    def lost(self, stage: str) -> SessionError:
        """lost - "lost connection with X while STAGE"."""
        self.broken = True
        return SessionError(Outcome("defer", "4.4.2",
                                    f"lost connection with {self.server.namaddr} while {stage}",
                                    self.server.namaddrport, None, ("dns", self.server.host)),
                            True)

    def timed_out(self, stage: str) -> SessionError:
        """timed_out - "conversation with X timed out while STAGE"."""
        self.broken = True
        return SessionError(Outcome("defer", "4.4.2",
                                    f"conversation with {self.server.namaddr} timed out "
                                    f"while {stage}",
                                    self.server.namaddrport, None, ("dns", self.server.host)),
                            True)

    def malformed(self, stage: str, why: str) -> SessionError:
        """malformed - the server's reply is not SMTP."""
        self.broken = True
        return SessionError(Outcome("defer", "4.5.0",
                                    f"host {self.server.namaddr} sent a malformed reply "
                                    f"while {stage}: {why}",
                                    self.server.namaddrport, None, ("dns", self.server.host)),
                            True)

    # -- I/O ----------------------------------------------------------------------

    async def send(self, data: bytes, stage: str, timeout: float | None) -> None:
        """send - write data and wait until it is on its way."""
        proto = self.proto
        transport = proto.transport
        if transport.is_closing() or proto.lost:
            raise self.lost(stage)
        try:
            transport.write(data)
            # The usual case: the kernel took it all, nothing to wait for
            # (a lost connection shows at the next read or send).
            if proto.paused:
                deadline = None if timeout is None else \
                    asyncio.get_running_loop().time() + timeout
                while proto.paused and not proto.lost:
                    await _wait(proto, "drain_waiter", deadline)
                if proto.lost:
                    raise ConnectionResetError("Connection lost")
        except TimeoutError:
            raise self.timed_out(stage) from None
        except (ConnectionError, OSError):
            raise self.lost(stage) from None

    async def read_reply(self, timeout: float | None, stage: str) -> ServerReply:
        """read_reply - the next complete reply from the server."""
        proto = self.proto
        replies = proto.replies
        if not replies:
            deadline = None if timeout is None else \
                asyncio.get_running_loop().time() + timeout
            while not replies:
                if proto.error is not None:
                    if isinstance(proto.error, ReplyError):
                        raise self.malformed(stage, str(proto.error))
                    raise proto.error
                if proto.eof:
                    raise self.lost(stage)
                try:
                    # One timer for the whole wait, no Task per read.
                    await _wait(proto, "waiter", deadline)
                except TimeoutError:
                    raise self.timed_out(stage) from None
        reply = replies.popleft()
        if reply.code == 421:          # RFC 5321 3.8: the server is closing
            self.broken = True
        return reply

    def alive(self) -> bool:
        """alive - True when the cached connection still looks usable."""
        proto = self.proto
        return not (self.broken or proto.transport.is_closing() or proto.eof
                    or proto.replies or proto.error is not None)

    async def quit(self, timeout: float | None = 5.0) -> None:
        """quit - say QUIT (reply awaited briefly) and close."""
        proto = self.proto
        if not self.broken and not proto.transport.is_closing():
            try:
                proto.transport.write(QUIT_COMMAND)
                if not (proto.eof or proto.replies or proto.error is not None):
                    deadline = None if timeout is None else \
                        asyncio.get_running_loop().time() + timeout
                    await _wait(proto, "waiter", deadline)
            except (TimeoutError, ConnectionError, OSError):
                pass
        self.close()

    def close(self) -> None:
        """close - drop the connection."""
        self.broken = True
        try:
            self.proto.transport.close()
        except (ConnectionError, OSError, RuntimeError):
            pass


async def _connect(server: Server, timeout: float | None) -> _ClientProtocol:
    """_connect - a connected protocol, or SessionError "connect to ...: reason"."""
    proto = _ClientProtocol(ReplyParser(), deque())
    loop = asyncio.get_running_loop()
    try:
        if server.kind == "unix":
            coro = loop.create_unix_connection(lambda: proto, server.addr)
        else:
            coro = loop.create_connection(lambda: proto, server.addr, server.port)
        await asyncio.wait_for(coro, timeout)
        return proto
    except (OSError, TimeoutError) as exc:
        where = server.namaddr if server.kind == "unix" else server.namaddrport
        dsn = "4.4.1"
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            dsn = "4.4.1"
        raise SessionError(Outcome("defer", dsn, f"connect to {where}: {_errtext(exc)}",
                                   "none", None, None)) from None


async def open_session(server: Server, helo_name: str, timeouts: Timeouts, *,
                       lmtp: bool = False, skip_5xx_greeting: bool = True) -> Session:
    """open_session - connect, read the greeting, say EHLO/LHLO (or HELO)."""
    proto = await _connect(server, timeouts.connect)
    sess = Session(server, proto, lmtp)
    try:
        greeting = await sess.read_reply(timeouts.helo, ST_GREETING)
        if greeting.code != 220:
            out = reply_outcome(server, greeting, "")
            out.text = f"host {server.namaddr} refused to talk to me: {greeting}"
            if out.kind == "bounce" and skip_5xx_greeting:
                out.kind = "defer"     # try the next server; defer if it was the last
                out.dsn = "4" + out.dsn[1:]
            sess.broken = True
            raise SessionError(out)
        verb = "LHLO" if lmtp else "EHLO"
        await sess.send(ehlo_command(helo_name, lmtp=lmtp), st_helo(verb), timeouts.helo)
        reply = await sess.read_reply(timeouts.helo, st_helo(verb))
        if reply.code == 250:
            sess.features = parse_ehlo(reply)
        elif lmtp or reply.code == 421:
            sess.broken = True
            raise SessionError(reply_outcome(server, reply, verb), True)
        else:
            # RFC 5321 4.1.4: a server that rejects EHLO may accept HELO.
            sess.esmtp = False
            await sess.send(helo_command(helo_name), st_helo("HELO"), timeouts.helo)
            reply = await sess.read_reply(timeouts.helo, st_helo("HELO"))
            if reply.code != 250:
                sess.broken = True
                raise SessionError(reply_outcome(server, reply, "HELO"), True)
    except SessionError:
        sess.close()
        raise
    return sess
