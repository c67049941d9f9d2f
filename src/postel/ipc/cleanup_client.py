"""cleanup_client - submit messages to the cleanup(8) service

SYNOPSIS
    from postel.ipc.cleanup_client import CleanupClient, CleanupResult, cleanup_submit_sync

    cc = CleanupClient(queue_directory)          # endpoint "private/cleanup"
    async with cc.message(flags="bcc_ok,map_ok") as m:
        m.queue_id                               # known right after open
        await m.envelope(sender, recipients=[(rcpt, orcpt, notify)], attrs={...})
        await m.write(chunk)                     # any number of times
        result = await m.close()                 # CleanupResult
    result.ok, result.status, result.dsn, result.reason, result.queue_id

    cleanup_submit_sync(queue_directory, "public/cleanup", sender, recipients,
                        content_iter, attrs, flags) -> CleanupResult

DESCRIPTION
    The only way smtpd(8), qmqpd(8), pickup(8), sendmail and bounce(8)
    hand a message to cleanup(8).  The protocol is described in
    postel.cleanup; in short, one connection carries one message after the
    other:

        client -> {request=open, flags=...}
        server -> {status=0, queue_id=QID}
        client -> {request=envelope, sender=..., rcpt=..., orcpt=..., notify=..., ...}
        client -> {request=data, data=...}   (any number, no replies)
        client -> {request=close}
        server -> {status=0|4XX|5XX, dsn=X.Y.Z, reason=..., queue_id=QID}

    The close reply comes only after the queue file is durable (or has been
    removed).  envelope and data lists are pipelined: the client never
    waits for them.  They are queued in the client and written together
    (one send(2) per 64 KiB, and a single one for a small message's
    envelope, content and close): each small write costs a system call
    here and a wake-up in cleanup.

    CleanupClient keeps up to IDLE_KEEP (64) idle connections and reuses
    them; a message takes one for its lifetime, so concurrent sessions each have their own.  A
    connection that broke (cleanup restarted) is replaced on the next open.
    If cleanup goes away in the middle of a message, close() returns
    451 4.3.0 "queue file write error"; the service has then removed its
    temporary file, so nothing half-written becomes visible.

    recipients are (rcpt, orcpt, notify) tuples: rcpt as received, orcpt the
    DSN ORCPT value ("rfc822;user@example.com", or ""), notify a DSN NOTIFY
    mask (queue.records.DSN_NOTIFY_*) or the SMTP keyword list
    ("SUCCESS,FAILURE", "NEVER"), or 0/"" when not specified.  A bare str is
    accepted as (rcpt, "", 0).

    flags names (comma separated): bcc_ok (always_bcc and *_bcc_maps apply),
    map_ok (canonical/virtual mapping), milter_ok, extract_recipients
    (sendmail -t), hold (queue to hold).

    Envelope attributes (all optional): fullname, client_name,
    client_address, client_port, helo_name, protocol, sasl_username,
    rewrite_context (local|remote), dsn_envid, dsn_ret (FULL|HDRS),
    arrival_time, encoding (7bit|8bitmime), smtputf8.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from postel.ipc.attr import AttrError, encode, read_attrs

DEFAULT_ENDPOINT = "private/cleanup"
CHUNK = 64 * 1024
# Idle connections kept for reuse.  Enough for every concurrent session of
# a busy smtpd: a connection closed here is a connect(2) and an accept(2)
# for the next message, and it counts against cleanup's max_use, so with
# too few kept cleanup is recycled every few hundred messages (8 -> 64:
# 334 -> 438 msg/s on workload 3).
IDLE_KEEP = 64

_NOTIFY = {"NEVER": 1, "SUCCESS": 2, "FAILURE": 4, "DELAY": 8}

# Fixed requests, encoded once.
_CLOSE = encode({"request": "close"})
_ABORT = encode({"request": "abort"})
_OPEN: dict[str, bytes] = {}        # flags -> open request


def _data_request(chunk: bytes) -> bytes:
    """_data_request - encode((("request", "data"), ("data", chunk))), directly."""
    return b"request=4:data,data=%d:%s,\n" % (len(chunk), chunk)


def _open_request(flags: str) -> bytes:
    """_open_request - the open request for these flags (a handful of distinct ones)."""
    wire = _OPEN.get(flags)
    if wire is None:
        wire = encode({"request": "open", "flags": flags})
        if len(_OPEN) < 64:
            _OPEN[flags] = wire
    return wire


@dataclass(slots=True)
class CleanupResult:
    """CleanupResult - cleanup's verdict on one message."""

    status: int = 0
    dsn: str = "2.0.0"
    reason: str = ""
    queue_id: str = ""

    @property
    def ok(self) -> bool:
        """ok - true when the message was queued (or discarded on purpose)."""
        return self.status == 0


R_WRITE_ERROR = ("4.3.0", "queue file write error")


def _write_error(qid: str = "") -> CleanupResult:
    return CleanupResult(451, R_WRITE_ERROR[0], R_WRITE_ERROR[1], qid)


def notify_mask(notify: int | str | None) -> int:
    """notify_mask - a DSN NOTIFY mask from an int or "SUCCESS,FAILURE"."""
    if not notify:
        return 0
    if isinstance(notify, int):
        return notify
    mask = 0
    for word in str(notify).replace(" ", "").upper().split(","):
        mask |= _NOTIFY.get(word, 0)
    return mask


_RESERVED = frozenset(("request", "sender", "rcpt", "orcpt", "notify"))


def envelope_attrs(sender: str, recipients: Iterable, attrs: dict | None) -> list:
    """envelope_attrs - the envelope request as (name, value) pairs."""
    pairs: list = [("request", "envelope"), ("sender", sender)]
    append = pairs.append
    for name, value in (attrs or {}).items():
        if value is None or name in _RESERVED:
            continue
        t = type(value)
        if t is not str and t is not bytes and t is not int \
                and not isinstance(value, (bytes, int)):
            value = str(value)
        append((name, value))
    for r in recipients:
        if type(r) is tuple and len(r) == 3:
            rcpt, orcpt, notify = r
        elif isinstance(r, str):
            rcpt, orcpt, notify = r, "", 0
        else:
            rcpt, orcpt, notify = (tuple(r) + ("", 0))[:3]
        append(("rcpt", rcpt))
        append(("orcpt", orcpt or ""))
        append(("notify", notify if type(notify) is int else notify_mask(notify)))
    return pairs


def _result(reply, qid: str) -> CleanupResult:
    """_result - a CleanupResult from a close reply."""
    try:
        status = reply.get_int("status", 451)
    except AttrError:
        return _write_error(qid)
    return CleanupResult(status, reply.get("dsn", "2.0.0" if status == 0 else "4.3.0"),
                         reply.get("reason", ""), reply.get("queue_id", qid) or qid)


class _Conn:
    """_Conn - one connection to cleanup."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class CleanupMessage:
    """CleanupMessage - one message in progress on one connection."""

    def __init__(self, client: CleanupClient, conn: _Conn, queue_id: str) -> None:
        self._client = client
        self._conn: _Conn | None = conn
        self.queue_id = queue_id
        self.result: CleanupResult | None = None
        self._failed = False
        self._out = bytearray()          # requests not yet written to the socket

    def _send(self, wire: bytes) -> None:
        """_send - queue bytes; a broken connection only marks the message failed."""
        if self._conn is None or self._failed:
            return
        self._out += wire

    async def _drain(self) -> None:
        """_drain - write what is queued (one send) and wait for the socket buffer."""
        if self._conn is None or self._failed:
            self._out.clear()
            return
        try:
            if self._out:
                self._conn.writer.write(bytes(self._out))
                self._out.clear()
            await self._conn.writer.drain()
        except Exception:  # noqa: BLE001 - any transport failure ends the message
            self._failed = True

    async def envelope(self, sender: str, recipients: Iterable = (),
                       attrs: dict | None = None) -> None:
        """envelope - queue sender, recipients and the message attributes."""
        self._send(encode(envelope_attrs(sender, recipients, attrs)))

    async def write(self, chunk: bytes) -> None:
        """write - stream message content (raw bytes, CRLF or LF lines)."""
        if len(chunk) <= CHUNK:
            self._send(_data_request(chunk))
        else:
            mv = memoryview(chunk)
            for i in range(0, len(chunk), CHUNK):
                self._send(_data_request(mv[i:i + CHUNK]))
        if len(self._out) >= CHUNK:
            await self._drain()

    async def close(self, timeout: float | None = None) -> CleanupResult:
        """close - finish the message; the answer comes once it is durable."""
        if self.result is not None:
            return self.result
        conn = self._conn
        self._send(_CLOSE)
        await self._drain()
        result = _write_error(self.queue_id)
        if conn is not None and not self._failed:
            try:
                reply = await read_attrs(conn.reader, timeout=timeout)
                result = _result(reply, self.queue_id)
            except (EOFError, AttrError, OSError, TimeoutError, ConnectionError):
                self._failed = True
        self._release()
        self.result = result
        return result

    async def abort(self) -> None:
        """abort - give up on the message; cleanup removes its file."""
        if self.result is not None:
            return
        self._out.clear()                # queued envelope and content: not needed now
        self._send(_ABORT)
        await self._drain()
        conn = self._conn
        if conn is not None and not self._failed:
            try:
                await read_attrs(conn.reader, timeout=30)
            except (EOFError, AttrError, OSError, TimeoutError, ConnectionError):
                self._failed = True
        self._release()
        self.result = CleanupResult(0, "2.0.0", "aborted", self.queue_id)

    def _release(self) -> None:
        """_release - give the connection back (or drop it when broken)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._failed:
            conn.close()
        else:
            self._client._give_back(conn)


class CleanupClient:
    """CleanupClient - submit messages to cleanup, reusing connections."""

    def __init__(self, queue_directory: str, endpoint: str = DEFAULT_ENDPOINT, *,
                 timeout: float = 3600.0, retry_for: float = 10.0) -> None:
        self.queue_directory = queue_directory
        self.endpoint = endpoint
        self.timeout = timeout
        self.retry_for = retry_for
        self._idle: list[_Conn] = []

    async def _connect(self) -> _Conn:
        from postel.ipc.client import connect_service
        reader, writer = await connect_service(self.queue_directory, self.endpoint,
                                               retry_for=self.retry_for)
        return _Conn(reader, writer)

    def _give_back(self, conn: _Conn) -> None:
        if conn.usable() and len(self._idle) < IDLE_KEEP:
            self._idle.append(conn)
        else:
            conn.close()

    async def open(self, flags: str | Iterable[str] = "") -> CleanupMessage:
        """open - start a message; raises ServiceUnavailable if cleanup is down,
        CleanupRefused when cleanup refuses to start one."""
        if not isinstance(flags, str):
            flags = ",".join(flags)
        wire = _open_request(flags)
        for attempt in range(2):
            conn = None
            while self._idle and conn is None:
                c = self._idle.pop()
                if c.usable():
                    conn = c
                else:
                    c.close()
            if conn is None:
                conn = await self._connect()
            try:
                conn.writer.write(wire)
                await conn.writer.drain()
                reply = await read_attrs(conn.reader, timeout=self.timeout)
            except (EOFError, AttrError, OSError, ConnectionError, TimeoutError):
                conn.close()
                if attempt:
                    raise CleanupRefused(_write_error()) from None
                continue            # a stale idle connection: try a fresh one
            status = reply.get_int("status", 451) if "status" in reply else 451
            if status != 0:
                self._give_back(conn)
                raise CleanupRefused(_result(reply, ""))
            return CleanupMessage(self, conn, reply.get("queue_id", ""))
        raise CleanupRefused(_write_error())  # pragma: no cover

    @contextlib.asynccontextmanager
    async def message(self, flags: str | Iterable[str] = "") -> AsyncIterator[CleanupMessage]:
        """message - open(); the message is aborted if the block raises."""
        m = await self.open(flags)
        try:
            yield m
        except BaseException:
            if m.result is None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(m.abort())
            raise
        if m.result is None:
            await m.close()

    async def submit(self, sender: str, recipients: Iterable, content: bytes | Iterable[bytes],
                     attrs: dict | None = None, flags: str = "") -> CleanupResult:
        """submit - one whole message in one call."""
        try:
            m = await self.open(flags)
        except CleanupRefused as exc:
            return exc.result
        await m.envelope(sender, recipients, attrs)
        if isinstance(content, (bytes, bytearray, memoryview)):
            await m.write(bytes(content))
        else:
            for chunk in content:
                await m.write(chunk)
        return await m.close()

    async def close(self) -> None:
        """close - close the idle connections."""
        while self._idle:
            self._idle.pop().close()


class CleanupRefused(Exception):
    """CleanupRefused - cleanup would not start a message; .result says why."""

    def __init__(self, result: CleanupResult) -> None:
        super().__init__(f"{result.status} {result.dsn} {result.reason}")
        self.result = result


def cleanup_submit_sync(queue_directory: str, endpoint: str, sender: str, recipients: Iterable,
                        content_iter: Iterable[bytes] | bytes, attrs: dict | None = None,
                        flags: str = "", timeout: float = 3600.0,
                        retry_for: float = 10.0) -> CleanupResult:
    """cleanup_submit_sync - submit one message from blocking code (commands)."""
    from postel.ipc.client import ServiceUnavailable, SyncConnection
    try:
        conn = SyncConnection(queue_directory, endpoint, timeout=timeout, retry_for=retry_for)
    except (ServiceUnavailable, OSError) as exc:
        return CleanupResult(451, "4.3.0", f"cleanup service unavailable: {exc}")
    qid = ""
    try:
        conn.send({"request": "open", "flags": flags})
        reply = conn.recv()
        if reply.get_int("status", 451) != 0:
            return _result(reply, "")
        qid = reply.get("queue_id", "")
        conn.send(envelope_attrs(sender, recipients, attrs))
        if isinstance(content_iter, (bytes, bytearray)):
            content_iter = [bytes(content_iter)]
        for chunk in content_iter:
            for i in range(0, len(chunk), CHUNK):
                conn.send((("request", "data"), ("data", bytes(chunk[i:i + CHUNK]))))
        conn.send({"request": "close"})
        return _result(conn.recv(), qid)
    except (EOFError, AttrError, OSError, TimeoutError, ServiceUnavailable):
        return _write_error(qid)
    finally:
        conn.close()
