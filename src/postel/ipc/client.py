"""client - connect to a Postel service and send it requests

SYNOPSIS
    from postel.ipc.client import (connect_service, ServiceClient, get_client,
                                   request_sync, SyncConnection, ServiceUnavailable)

    reader, writer = await connect_service(queue_directory, "private/cleanup")

    rewrite = ServiceClient(queue_directory, "private/rewrite", pool_size=2)
    reply = await rewrite.request({"request": "resolve", "address": addr})
    async with rewrite.connection() as conn:        # several lists, one connection
        await conn.send({...}); reply = await conn.recv()

    reply = request_sync(queue_directory, "public/showq", {"request": "list"})

DESCRIPTION
    A service endpoint is named as in master.cf's private column: "private/NAME"
    or "public/NAME", a UNIX-domain stream socket under $queue_directory.  An
    absolute path is also accepted (tests, standalone services).

    connect_service() opens one connection.  A service that is being
    restarted by master is briefly absent (ENOENT) or refuses (ECONNREFUSED,
    or EAGAIN when its listen queue is full); those are retried with
    exponential back-off (50 ms doubling to 1 s) until retry_for seconds have
    passed, then ServiceUnavailable is raised.  Any other error (permission
    denied, path too long) is raised at once.

    ServiceClient keeps connections open and reuses them, because a connect
    per message is a cost Postel cannot afford (see DESIGN.md).  Concurrency:
    one request is in flight per connection; the client holds a small pool of
    at most pool_size connections, and a coroutine that finds them all busy
    waits for one.  A pooled connection that the service closed while it sat
    idle (the service's max_idle, or a restart) is replaced transparently:
    when a request on a reused connection gets EOF or a reset before any
    reply byte, the request is sent once more on a fresh connection.  Pass
    resend=False for a request that must never be delivered twice.  A
    connection idle longer than max_idle (ipc_idle) or older than max_ttl
    (ipc_ttl) is closed instead of reused.  get_client() returns one shared
    ServiceClient per (queue_directory, endpoint) in this process; a forked
    child starts with an empty registry.

    ServiceClient.request() reports every way the service can fail to answer
    (cannot connect, connection lost, no reply within the timeout) as
    ServiceUnavailable, so that a caller maps one exception to a temporary
    failure ("451 4.3.0").  A malformed reply raises AttrError.

    request_sync() and SyncConnection are the blocking equivalents for
    commands (postqueue, postsuper, ...) that do not run an event loop.

DIAGNOSTICS
    ServiceUnavailable(endpoint, reason): str() reads like Postfix's warning,
    e.g. "connect to private/cleanup service: /var/spool/postel/private/cleanup:
    Connection refused (retried for 10s)".

CONFIGURATION PARAMETERS
    The caller passes these values in; their main.cf names and defaults:
    ipc_timeout (3600s)     time limit for one request/reply exchange
    ipc_idle (5s)           a pooled connection idle longer is closed
    ipc_ttl (1000s)         a pooled connection older than this is closed
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from postel import lazy_import
from postel.ipc.attr import (
    DEFAULT_LIMITS,
    AttrDecoder,
    AttrList,
    Attrs,
    Limits,
    encode,
    read_attrs,
)

# asyncio only for the async clients (daemons have it already); SyncConnection
# users such as postqueue do not import it.
asyncio = lazy_import("asyncio", globals())

__all__ = [
    "ServiceUnavailable", "service_path", "connect_service", "ServiceClient",
    "ServiceConnection", "get_client", "request_sync", "SyncConnection",
    "connect_sync",
]

# errno values that mean "the service is (re)starting: try again soon".
_RETRY_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENOENT, errno.EAGAIN})
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0


class ServiceUnavailable(Exception):
    """ServiceUnavailable - a service cannot be reached or did not answer."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(endpoint, reason)
        self.endpoint = endpoint
        self.reason = reason

    def __str__(self) -> str:
        return f"connect to {self.endpoint} service: {self.reason}"


def service_path(queue_directory: str, endpoint: str) -> str:
    """service_path - the socket path of "private/NAME", "public/NAME" or an absolute path."""
    if endpoint.startswith("/"):
        return endpoint
    cls, _, name = endpoint.partition("/")
    if cls not in ("private", "public") or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad service endpoint {endpoint!r}: want private/NAME or public/NAME")
    return os.path.join(queue_directory, cls, name)


def _reason(exc: BaseException) -> str:
    """_reason - the human part of an OS error."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _retryable(exc: OSError) -> bool:
    """_retryable - true for errors of a service that is restarting."""
    return exc.errno in _RETRY_ERRNOS


async def connect_service(queue_directory: str, endpoint: str, timeout: float = 10.0,
                          retry_for: float = 10.0
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """connect_service - connect to a service, retrying while it restarts."""
    path = service_path(queue_directory, endpoint)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    delay = _FIRST_DELAY
    while True:
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.open_unix_connection(path)
        except TimeoutError:
            reason = f"connect timed out after {timeout:g}s"
        except OSError as exc:
            if not _retryable(exc):
                raise ServiceUnavailable(endpoint, f"{path}: {_reason(exc)}") from None
            reason = _reason(exc)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ServiceUnavailable(endpoint, f"{path}: {reason} (retried for {retry_for:g}s)")
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_DELAY)


@dataclass(slots=True, eq=False)
class ServiceConnection:
    """ServiceConnection - one pooled connection: send lists, receive lists."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    limits: Limits = DEFAULT_LIMITS
    timeout: float | None = None
    created: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    uses: int = 0
    broken: bool = False

    async def send(self, attrs: Attrs) -> None:
        """send - write one attribute list and drain."""
        self.writer.write(encode(attrs))
        await self.writer.drain()

    def send_nowait(self, wire: bytes) -> None:
        """send_nowait - queue encoded bytes without draining (pipelining)."""
        self.writer.write(wire)

    async def recv(self, timeout: float | None = None, limits: Limits | None = None
                   ) -> AttrList:
        """recv - read one attribute list (EOFError, AttrError, TimeoutError)."""
        return await read_attrs(self.reader, limits or self.limits,
                                self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """close - close the connection; the pool will not reuse it."""
        self.broken = True
        with contextlib.suppress(Exception):
            self.writer.close()

    def closed_by_peer(self) -> bool:
        """closed_by_peer - true when the service has closed its end."""
        return self.reader.at_eof() or self.writer.is_closing()


class ServiceClient:
    """ServiceClient - a small pool of reused connections to one service."""

    def __init__(self, queue_directory: str, endpoint: str, *, timeout: float = 3600.0,
                 connect_timeout: float = 10.0, retry_for: float = 10.0,
                 pool_size: int = 1, max_idle: float = 5.0, max_ttl: float = 1000.0,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.queue_directory = queue_directory
        self.endpoint = endpoint
        self.path = service_path(queue_directory, endpoint)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for
        self.pool_size = pool_size
        self.max_idle = max_idle
        self.max_ttl = max_ttl
        self.limits = limits
        self.connects = 0                       # connections opened so far
        self._idle: list[ServiceConnection] = []
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _bind_loop(self) -> asyncio.Semaphore:
        """_bind_loop - the semaphore of the running loop (a new loop drops old state)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._sem is None:
            self._loop = loop
            self._idle = []                     # belonged to a loop that is gone
            self._sem = asyncio.Semaphore(self.pool_size)
        return self._sem

    def _usable(self, conn: ServiceConnection, now: float) -> bool:
        """_usable - may this idle connection carry another request?"""
        return (not conn.broken and not conn.closed_by_peer()
                and now - conn.last_used <= self.max_idle
                and now - conn.created <= self.max_ttl)

    async def _open(self) -> ServiceConnection:
        """_open - a fresh connection."""
        reader, writer = await connect_service(self.queue_directory, self.endpoint,
                                               self.connect_timeout, self.retry_for)
        self.connects += 1
        return ServiceConnection(reader, writer, self.limits, self.timeout)

    async def _take(self) -> ServiceConnection:
        """_take - an idle usable connection or a new one (semaphore held)."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if self._usable(conn, now):
                return conn
            conn.close()
        return await self._open()

    def _give_back(self, conn: ServiceConnection) -> None:
        """_give_back - return a connection to the pool, or close it."""
        if conn.broken or conn.closed_by_peer():
            conn.close()
            return
        conn.last_used = time.monotonic()
        conn.uses += 1
        self._idle.append(conn)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[ServiceConnection]:
        """connection - hold one connection for a multi-list exchange.

        The body must leave the connection at a request boundary; an
        exception inside it closes the connection instead of pooling it.
        """
        sem = self._bind_loop()
        async with sem:
            conn = await self._take()
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            self._give_back(conn)

    async def request(self, attrs: Attrs, *, timeout: float | None = None,
                      resend: bool = True) -> AttrList:
        """request - send one list and return the one-list reply."""
        wire = encode(attrs)
        limit = self.timeout if timeout is None else timeout
        sem = self._bind_loop()
        async with sem:
            for attempt in (1, 2):
                conn = await self._take()
                reused = conn.uses > 0
                try:
                    conn.writer.write(wire)
                    await conn.writer.drain()
                    reply = await read_attrs(conn.reader, self.limits, limit)
                except (EOFError, ConnectionError) as exc:
                    conn.close()
                    if reused and resend and attempt == 1:
                        continue            # closed while idle: once more, fresh
                    what = "closed the connection" if isinstance(exc, EOFError) \
                        else _reason(exc)
                    raise ServiceUnavailable(self.endpoint,
                                             f"{self.path}: {what} before replying") from None
                except TimeoutError:
                    conn.close()
                    raise ServiceUnavailable(self.endpoint,
                                             f"{self.path}: no reply within {limit:g}s") from None
                except BaseException:
                    conn.close()
                    raise
                self._give_back(conn)
                return reply
        raise AssertionError("not reached")  # pragma: no cover

    async def close(self) -> None:
        """close - close every idle connection."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()


# One shared client per (queue_directory, endpoint) in this process.
_CLIENTS: dict[tuple[str, str], ServiceClient] = {}


def get_client(queue_directory: str, endpoint: str, **kwargs: object) -> ServiceClient:
    """get_client - the process-wide ServiceClient for a service (created on first use)."""
    key = (queue_directory, endpoint)
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = ServiceClient(queue_directory, endpoint, **kwargs)  # type: ignore[arg-type]
    return client


def _forget_clients() -> None:
    """_forget_clients - a forked child must not share its parent's connections."""
    _CLIENTS.clear()


os.register_at_fork(after_in_child=_forget_clients)


# ---------------------------------------------------------------- blocking API

def connect_sync(queue_directory: str, endpoint: str, timeout: float = 10.0,
                 retry_for: float = 10.0) -> socket.socket:
    """connect_sync - blocking connect with the same retry rules as connect_service."""
    path = service_path(queue_directory, endpoint)
    deadline = time.monotonic() + retry_for
    delay = _FIRST_DELAY
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            return sock
        except TimeoutError:
            sock.close()
            reason = f"connect timed out after {timeout:g}s"
        except OSError as exc:
            sock.close()
            if not _retryable(exc):
                raise ServiceUnavailable(endpoint, f"{path}: {_reason(exc)}") from None
            reason = _reason(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ServiceUnavailable(endpoint, f"{path}: {reason} (retried for {retry_for:g}s)")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, _MAX_DELAY)


class SyncConnection:
    """SyncConnection - a blocking connection to a service, for commands."""

    def __init__(self, queue_directory: str, endpoint: str, timeout: float = 10.0,
                 retry_for: float = 10.0, limits: Limits = DEFAULT_LIMITS) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.sock = connect_sync(queue_directory, endpoint, timeout, retry_for)
        self.decoder = AttrDecoder(limits)

    def send(self, attrs: Attrs) -> None:
        """send - write one attribute list."""
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(encode(attrs))
        except TimeoutError:
            raise ServiceUnavailable(self.endpoint,
                                     f"write timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise ServiceUnavailable(self.endpoint, f"write: {_reason(exc)}") from None

    def recv(self, timeout: float | None = None) -> AttrList:
        """recv - read one attribute list; EOFError on a clean end of stream."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        dec = self.decoder
        while True:
            lst = dec.next_list()
            if lst is not None:
                return lst
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceUnavailable(self.endpoint, f"no reply within {limit:g}s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise ServiceUnavailable(self.endpoint, f"no reply within {limit:g}s") from None
            except OSError as exc:
                raise ServiceUnavailable(self.endpoint, f"read: {_reason(exc)}") from None
            if not data:
                if not dec.pending():
                    raise EOFError(f"{self.endpoint}: end of stream")
                dec.eof()
            dec.append(data)

    def close(self) -> None:
        """close - close the socket."""
        self.sock.close()

    def __enter__(self) -> SyncConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def request_sync(queue_directory: str, endpoint: str, attrs: Attrs, timeout: float = 10.0,
                 retry_for: float = 1.0, limits: Limits = DEFAULT_LIMITS) -> AttrList:
    """request_sync - one blocking request/reply exchange on a fresh connection."""
    with SyncConnection(queue_directory, endpoint, timeout, retry_for, limits) as conn:
        conn.send(attrs)
        try:
            return conn.recv()
        except EOFError:
            raise ServiceUnavailable(endpoint, "closed the connection before replying") from None
