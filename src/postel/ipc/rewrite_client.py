"""client - ask trivial-rewrite(8) to rewrite or resolve an address

SYNOPSIS
    from postel.ipc.rewrite_client import RewriteClient
    rw = RewriteClient(queue_directory)
    addr = await rw.rewrite("local", "user")            # "user@example.com"
    r = await rw.resolve("user@example.com", sender)   # Resolved
    r = await rw.verify("user@example.com", sender)    # with address_verify_* overrides

DESCRIPTION
    The one interface cleanup(8), smtpd(8), qmgr(8) and verify(8) use to
    reach trivial-rewrite on private/rewrite (Postfix's rewrite_clnt(3) and
    resolve_clnt(3)).  The connection is kept open between requests (see
    postel.ipc.client.ServiceClient).

    rewrite() takes and returns the external (quoted) form;
    rewrite_internal() converts from and to the internal form around it.
    resolve() and verify() take internal forms and return a Resolved
    record (transport, nexthop, recipient, flags).

    Like Postfix's clients, it remembers recent answers: up to cache_size
    results, each for at most cache_ttl seconds.  An answer with FLAG_FAIL
    is never cached.

DIAGNOSTICS
    ServiceUnavailable (from postel.ipc.client) when the service cannot be
    reached or does not answer; the caller treats that as a temporary
    failure, like FLAG_FAIL.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from postel.ipc.client import ServiceClient
from postel.mail.address import quote_local, unquote_local
from postel.mail.resolve_types import FLAG_FAIL, Resolved

ENDPOINT = "private/rewrite"


class RewriteClient:
    """A cached, connection-keeping client for private/rewrite."""

    def __init__(self, queue_directory: str, endpoint: str = ENDPOINT, *,
                 cache_size: int = 100, cache_ttl: float = 10.0, timeout: float = 60.0):
        self.service = ServiceClient(queue_directory, endpoint, timeout=timeout)
        self.cache_size = cache_size
        self.cache_ttl = cache_ttl
        self.requests = 0                    # requests sent to the service
        self._cache: OrderedDict[tuple, tuple[float, object]] = OrderedDict()

    def _cached(self, key: tuple):
        """_cached - a fresh cached answer, or None."""
        hit = self._cache.get(key)
        if hit is None:
            return None
        stamp, value = hit
        if time.monotonic() - stamp > self.cache_ttl:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return value

    def _remember(self, key: tuple, value: object) -> None:
        """_remember - cache an answer, dropping the oldest beyond cache_size."""
        self._cache[key] = (time.monotonic(), value)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def flush(self) -> None:
        """flush - forget every cached answer."""
        self._cache.clear()

    async def rewrite(self, rule: str, addr: str) -> str:
        """rewrite - rewrite an external-form address with rule "local" or "remote"."""
        key = ("rewrite", rule, addr)
        hit = self._cached(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        self.requests += 1
        reply = await self.service.request({"request": "rewrite", "rule": rule,
                                            "address": addr})
        result = reply.get("address", addr) or ""
        if not (reply.get_int("flags", 0) or 0) & FLAG_FAIL:
            self._remember(key, result)
        return result

    async def rewrite_internal(self, rule: str, addr: str) -> str:
        """rewrite_internal - as rewrite(), for internal-form addresses."""
        return unquote_local(await self.rewrite(rule, quote_local(addr)))

    async def _resolve(self, kind: str, addr: str, sender: str) -> Resolved:
        """_resolve - one resolve or verify request, through the cache."""
        key = (kind, addr, sender)
        hit = self._cached(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        self.requests += 1
        reply = await self.service.request({"request": kind, "sender": sender,
                                            "address": addr})
        result = Resolved(reply.get("transport", "") or "", reply.get("nexthop", "") or "",
                          reply.get("recipient", "") or "", reply.get_int("flags", 0) or 0)
        if not result.flags & FLAG_FAIL:
            self._remember(key, result)
        return result

    async def resolve(self, addr: str, sender: str = "") -> Resolved:
        """resolve - (transport, nexthop, recipient, flags) for an internal-form address."""
        return await self._resolve("resolve", addr, sender)

    async def verify(self, addr: str, sender: str = "") -> Resolved:
        """verify - resolve with the address_verify_* overrides (probes)."""
        return await self._resolve("verify", addr, sender)

    async def close(self) -> None:
        """close - close the connection to the service."""
        await self.service.close()
