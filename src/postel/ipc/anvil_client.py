"""anvil_client - talk to the anvil(8) service

SYNOPSIS
    from postel.ipc.anvil_client import AnvilClient
    anvil = AnvilClient(queue_directory)                # private/anvil
    counts = await anvil.connect("smtp", "192.0.2.1")   # (count, rate) or None
    await anvil.disconnect("smtp", "192.0.2.1")
    rate = await anvil.message("smtp", "192.0.2.1")     # int or None
    rate = await anvil.recipient("smtp", "192.0.2.1")
    rate = await anvil.newtls("smtp", "192.0.2.1")
    rate = await anvil.auth("smtp", "192.0.2.1")
    info = await anvil.lookup("smtp", "192.0.2.1")      # dict or None

DESCRIPTION
    One long-lived connection per client process.  It must not be a
    pooled connection that is closed while idle: anvil takes the
    connections a stream registered off the counts when the stream ends.
    Requests are serialized on the connection (one in flight).

    anvil being down must never stop mail: every call returns None when
    anvil cannot be reached or does not answer within the timeout, and the
    caller then applies no limit.  The first failure is logged as one
    warning ("warning: connect to private/anvil service: ..."); the next
    calls try to reconnect at most once every RETRY_INTERVAL seconds and
    stay silent until anvil has answered again.

SEE ALSO
    anvil(8) (src/postel/anvil/service.py) for the request grammar.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from postel import log
from postel.ipc.attr import AttrError, encode, read_attrs
from postel.ipc.client import ServiceUnavailable, connect_service

ANVIL_ENDPOINT = "private/anvil"
TIMEOUT = 10.0
RETRY_INTERVAL = 10.0


class AnvilClient:
    """AnvilClient - the anvil requests, each returning None when anvil is down."""

    def __init__(self, queue_directory: str, endpoint: str = ANVIL_ENDPOINT,
                 timeout: float = TIMEOUT) -> None:
        self.queue_directory = queue_directory
        self.endpoint = endpoint
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._down_since = 0.0            # 0: anvil answered last time
        self._warned = False

    def _bind_loop(self) -> asyncio.Lock:
        """_bind_loop - the lock of the running loop (a new loop drops the connection)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._lock is None:
            self._loop, self._lock = loop, asyncio.Lock()
            self._reader = self._writer = None
        return self._lock

    def _drop(self) -> None:
        """_drop - forget a broken connection."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        self._reader = self._writer = None

    def _failed(self, why: str) -> None:
        """_failed - remember that anvil is down; warn once."""
        self._drop()
        self._down_since = time.monotonic()
        if not self._warned:
            self._warned = True
            log.warning("%s; continuing without client limits", why)

    async def _request(self, attrs: dict[str, object]) -> dict[str, int] | None:
        """_request - one exchange; None when anvil is unavailable."""
        lock = self._bind_loop()
        async with lock:
            if self._down_since and time.monotonic() - self._down_since < RETRY_INTERVAL:
                return None
            for attempt in (1, 2):
                fresh = self._writer is None
                try:
                    if fresh:
                        self._reader, self._writer = await connect_service(
                            self.queue_directory, self.endpoint, self.timeout, retry_for=0.5)
                    self._writer.write(encode(attrs))
                    await self._writer.drain()
                    reply = await read_attrs(self._reader, timeout=self.timeout)
                except ServiceUnavailable as exc:
                    self._failed(str(exc))
                    return None
                except (OSError, EOFError, TimeoutError, AttrError, ValueError) as exc:
                    self._drop()
                    if attempt == 1 and not fresh:
                        continue            # anvil restarted since: once more, fresh
                    self._failed(f"anvil request failed: {type(exc).__name__}: {exc}")
                    return None
                if self._down_since:
                    log.info("anvil service is available again")
                self._down_since, self._warned = 0.0, False
                out: dict[str, int] = {}
                for name, _raw in reply:
                    with contextlib.suppress(TypeError, ValueError):
                        out[name] = int(reply.get(name))
                return out if out.get("status") == 0 else None
        return None

    @staticmethod
    def ident(service: str, addr: str) -> str:
        """ident - the "service:address" name anvil counts under."""
        return f"{service}:{addr}"

    async def connect(self, service: str, addr: str) -> tuple[int, int] | None:
        """connect - register a connection; (count, rate) or None."""
        r = await self._request({"request": "connect", "ident": self.ident(service, addr)})
        return None if r is None else (r.get("count", 0), r.get("rate", 0))

    async def disconnect(self, service: str, addr: str) -> None:
        """disconnect - a connection registered with connect() has ended."""
        await self._request({"request": "disconnect", "ident": self.ident(service, addr)})

    async def _rate(self, what: str, service: str, addr: str) -> int | None:
        """_rate - count one event; the rate or None."""
        r = await self._request({"request": what, "ident": self.ident(service, addr)})
        return None if r is None else r.get("rate", 0)

    async def message(self, service: str, addr: str) -> int | None:
        """message - one MAIL FROM; the message rate."""
        return await self._rate("message", service, addr)

    async def recipient(self, service: str, addr: str) -> int | None:
        """recipient - one RCPT TO; the recipient rate."""
        return await self._rate("recipient", service, addr)

    async def newtls(self, service: str, addr: str) -> int | None:
        """newtls - one new TLS session; the rate."""
        return await self._rate("newtls", service, addr)

    async def auth(self, service: str, addr: str) -> int | None:
        """auth - one AUTH command; the rate."""
        return await self._rate("auth", service, addr)

    async def lookup(self, service: str, addr: str) -> dict[str, int] | None:
        """lookup - every counter for a client, without counting."""
        return await self._request({"request": "lookup", "ident": self.ident(service, addr)})

    async def close(self) -> None:
        """close - close the connection (anvil then forgets its connections)."""
        self._drop()
